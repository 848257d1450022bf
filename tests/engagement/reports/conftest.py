from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from shared.db import Database
from tests.engagement.reports.support import report_client


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async for c in report_client(db):
        yield c
