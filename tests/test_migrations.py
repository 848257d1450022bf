"""Each service's Alembic history builds exactly the schema its models declare."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shared.db import create_engine
from shared.migrations import upgrade_async
from shared.plumbing import plumbing_metadata
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.db

SERVICES = ("profile", "loyalty", "engagement", "feedback")


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_match_the_models(service: str, database_url: DatabaseFactory) -> None:
    migrations = Path(import_module(f"services.{service}.main").MIGRATIONS)
    metadata = import_module(f"services.{service}.models").Base.metadata
    url = await database_url(service)
    await upgrade_async(migrations, url)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff, [metadata, plumbing_metadata])
    finally:
        await engine.dispose()
    assert diff == []


def _diff(conn: Any, metadata: list[Any]) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))  # type: ignore[arg-type]  # a list is accepted
