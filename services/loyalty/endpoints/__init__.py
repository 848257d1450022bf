"""Thin routes: parse, call one service function, return."""

from __future__ import annotations

from fastapi import APIRouter

from services.loyalty.endpoints import members, reports, rewards, rules

ROUTERS: list[APIRouter] = [members.router, rules.router, rewards.router, reports.router]
