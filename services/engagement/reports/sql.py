"""Dialect-aware SQL pieces the reports share (PostgreSQL and SQLite)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, and_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from services.engagement.churn.models import ChurnPurchase


class month_of(FunctionElement[int]):
    """The UTC month of a timestamp as ``year * 12 + month - 1``."""

    type = Integer()
    inherit_cache = True
    name = "month_of"


@compiles(month_of, "postgresql")
def _month_of_postgresql(element: month_of, compiler: Any, **kw: Any) -> str:
    ts = compiler.process(element.clauses, **kw)
    utc = f"(({ts}) AT TIME ZONE 'UTC')"
    year, month = f"EXTRACT(YEAR FROM {utc})", f"EXTRACT(MONTH FROM {utc})"
    return f"(CAST({year} AS INTEGER) * 12 + CAST({month} AS INTEGER) - 1)"


@compiles(month_of, "sqlite")
def _month_of_sqlite(element: month_of, compiler: Any, **kw: Any) -> str:
    # UtcDateTime stores UTC text: "YYYY-MM-DD HH:MM:SS[.ffffff]"
    ts = compiler.process(element.clauses, **kw)
    return f"(CAST(substr({ts}, 1, 4) AS INTEGER) * 12 + CAST(substr({ts}, 6, 2) AS INTEGER) - 1)"


def kept() -> ColumnElement[bool]:
    """A purchase still counts: not refunded in full."""
    return ChurnPurchase.refunded < ChurnPurchase.amount


def purchases_between(start: Any, end: Any) -> ColumnElement[bool]:
    return and_(ChurnPurchase.occurred_at >= start, ChurnPurchase.occurred_at < end, kept())
