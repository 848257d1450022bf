"""The chaos stack for the whole module: started once, torn down even on failure."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.chaos.harness import ChaosStack, chaos_stack
from tests.conftest import PG_URL, TEST_DB


@pytest.fixture(scope="module")
async def chaos(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChaosStack]:
    async with chaos_stack(tmp_path_factory.mktemp("chaos"), TEST_DB, PG_URL) as stack:
        yield stack
