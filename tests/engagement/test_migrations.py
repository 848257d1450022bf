"""The migration history builds exactly the tables the models describe."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from services.engagement.models import Base
from shared.db import Database
from shared.plumbing import plumbing_metadata

pytestmark = pytest.mark.db


def _differences(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, [Base.metadata, plumbing_metadata]))  # type: ignore[arg-type]


async def test_migrations_match_the_models(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_differences) == []
