"""Feedback domain logic, one module per concern. Takes the caller's session; never commits."""

from __future__ import annotations

from shared.db import as_utc as as_utc

SOURCE = "keepwell/feedback"
