"""Fixtures for the manifest tests: each overlay, rendered once."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import OVERLAYS, Rendered, rendered


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> Rendered:
    return rendered(f"overlays/{request.param}")
