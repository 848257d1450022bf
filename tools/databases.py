"""Fresh throw-away databases for tests and benchmarks (SQLite files or PostgreSQL)."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


class DatabaseMaker:
    """Creates fresh databases and drops the PostgreSQL ones it created."""

    def __init__(self, folder: Path, *, backend: str = "sqlite", pg_url: str = DEFAULT_PG_URL):
        self._folder = folder
        self._backend = backend
        self._pg_url = pg_url
        self._created: list[str] = []

    async def __call__(self, service: str) -> str:
        if self._backend != "postgres":
            return f"sqlite+aiosqlite:///{self._folder}/{service}-{uuid.uuid4().hex[:6]}.db"
        name = f"kw_{service}_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(self._admin_dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self._created.append(name)
        return make_url(self._pg_url).set(database=name).render_as_string(hide_password=False)

    async def drop_all(self) -> None:
        if not self._created:
            return
        conn = await asyncpg.connect(self._admin_dsn())
        try:
            for name in self._created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self._created.clear()

    def _admin_dsn(self) -> str:
        url = make_url(self._pg_url).set(drivername="postgresql")
        return url.render_as_string(hide_password=False)
