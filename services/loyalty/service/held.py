"""Rows a consumer batch's purchases hold until commit: one cached insert per table.

A purchase's ledger entries, lot and purchase row are plain rows nobody reads back in
the batch (``earning.award_purchase`` reads nothing pending), so instead of ORM objects
and their unit of work they are kept on the session and inserted with one executemany
of one cached single-row ``INSERT`` per table: at commit, or before anything reads
these tables (``flush``; every flush of the session also writes them first). A
rolled-back transaction writes none. The members they change stay ORM objects.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Insert, Table, event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.loyalty.models import LedgerEntry, Lot, Purchase

_KEY = "loyalty.held_rows"
_HOOKED = "loyalty.held_hooked"

ENTRIES: Table = LedgerEntry.__table__  # type: ignore[assignment]
LOTS: Table = Lot.__table__  # type: ignore[assignment]
PURCHASES: Table = Purchase.__table__  # type: ignore[assignment]

# Built once: a statement object caches its cache key, and its compiled form is cached
# by SQLAlchemy for every number of rows.
_INSERTS: dict[Table, Insert] = {t: insert(t) for t in (ENTRIES, LOTS, PURCHASES)}


M = TypeVar("M", LedgerEntry, Lot)


def place(session: AsyncSession, model: type[M], row: dict[str, Any], *, held: bool) -> M:
    """``model(**row)``, written as a held row (``held``) or added to the session."""
    instance = model(**row)
    if held:
        hold(session, model.__table__, row)  # type: ignore[arg-type]
    else:
        session.add(instance)
    return instance


def hold(session: AsyncSession, table: Table, row: dict[str, Any]) -> None:
    """Insert ``row`` into ``table`` at commit (or at the next flush)."""
    sync = session.sync_session
    held: dict[Table, list[dict[str, Any]]] | None = sync.info.get(_KEY)
    if held is None:
        held = sync.info[_KEY] = {}
        if not sync.info.get(_HOOKED):
            sync.info[_HOOKED] = True
            event.listen(sync, "before_flush", _write_before_flush)
            event.listen(sync, "before_commit", _write)
            event.listen(sync, "after_rollback", _drop)
    held.setdefault(table, []).append(row)


async def flush(session: AsyncSession) -> None:
    """Write the held rows, then flush the session: before a query reads these tables."""
    await session.run_sync(_write)
    await session.flush()


def _write(session: Session) -> None:
    held: dict[Table, list[dict[str, Any]]] | None = session.info.pop(_KEY, None)
    if not held:
        return
    connection = session.connection()
    for table, rows in held.items():
        connection.execute(_INSERTS[table], rows)


def _write_before_flush(session: Session, *_: Any) -> None:
    _write(session)


def _drop(session: Session, *_: Any) -> None:
    session.info.pop(_KEY, None)
