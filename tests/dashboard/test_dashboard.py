"""The dashboard in a real headless browser, on the real services seeded by the demo."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from shared.auth import issue_token
from tests.dashboard.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, Dashboard, needs_chromium
from tests.helpers import TEST_SECRET

pytestmark = [pytest.mark.e2e, needs_chromium]

# What a customer-care or marketing user holds: the reports, and read access to the 360° view.
VIEWER_SCOPES = ["reports:read", "customers:read", "loyalty:read"]
CHARTS = ["cohorts", "churn", "active", "nps", "points", "funnel", "clv"]
LOADED = "body[data-loaded=true]"
# Per chart: how many points its traces hold (x, y or z values that are not null).
POINTS = """ids => ids.map(id => {
  const div = document.getElementById(id);
  if (!div || !div.data) return [id, 0];
  const count = v => (v || []).flat().filter(p => p !== null && p !== undefined).length;
  return [id, div.data.reduce((n, t) => n + Math.max(count(t.x), count(t.y), count(t.z)), 0)];
})"""


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


class Watched:
    """A page whose console errors and uncaught exceptions are collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Watched]:
    context = await browser.new_context(viewport={"width": 1400, "height": 1800})
    yield Watched(await context.new_page())
    await context.close()


def viewer_url(dashboard: Dashboard) -> str:
    token = issue_token(secret=TEST_SECRET, subject="care-agent", scopes=VIEWER_SCOPES)
    return f"{dashboard.services['engagement'].url}/dashboard#token={token}"


async def chart_points(page: Page) -> dict[str, int]:
    pairs: list[list[Any]] = await page.evaluate(POINTS, CHARTS)
    return {str(k): int(v) for k, v in pairs}


async def test_every_chart_has_data_and_at_risk_links_open_the_360_view(
    dashboard: Dashboard, page: Watched
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.page.goto(viewer_url(dashboard))
    await page.page.wait_for_selector(LOADED, timeout=30_000)
    assert "#token" not in page.page.url  # the token left the address bar for sessionStorage
    points = await chart_points(page.page)
    await page.page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)
    assert await page.page.locator(".unavailable").all_inner_texts() == []
    assert all(n > 0 for n in points.values()), points
    links = page.page.locator("#at-risk a.customer")
    assert await links.count() > 0
    customer_id = await links.first.inner_text()
    await links.first.click()
    await page.page.wait_for_url(f"**/dashboard/customers/{customer_id}")
    await page.page.wait_for_selector(LOADED, timeout=30_000)
    await page.page.screenshot(path=ARTIFACTS / "customer-360.png", full_page=True)
    profile = await page.page.inner_text("#profile")
    assert customer_id in profile
    assert f"{customer_id}@example.com" in profile
    assert "orders" in profile
    assert "high" in await page.page.inner_text("#scores")
    assert await page.page.locator(".unavailable").all_inner_texts() == []
    assert page.errors == []


async def test_without_a_token_the_page_asks_for_one(dashboard: Dashboard, page: Watched) -> None:
    await page.page.goto(f"{dashboard.services['engagement'].url}/dashboard")
    form = page.page.locator("#login")
    await form.wait_for(state="visible")
    assert await page.page.locator("#board").is_hidden()
    token = issue_token(secret=TEST_SECRET, subject="care-agent", scopes=VIEWER_SCOPES)
    await form.locator("input[name=token]").fill(token)
    await form.locator("button").click()
    await page.page.wait_for_selector(LOADED, timeout=30_000)
    assert (await chart_points(page.page))["cohorts"] > 0


async def test_a_stopped_service_shows_its_panel_as_unavailable(
    dashboard: Dashboard, page: Watched
) -> None:
    loyalty = dashboard.services["loyalty"]
    await asyncio.to_thread(loyalty.stop)
    try:
        await page.page.goto(viewer_url(dashboard))
        await page.page.wait_for_selector(LOADED, timeout=30_000)
        assert "loyalty report is unavailable" in await page.page.inner_text("#points")
        points = await chart_points(page.page)
        assert points["points"] == 0
        assert all(n > 0 for chart, n in points.items() if chart != "points"), points
        assert page.errors == []
    finally:
        loyalty.start()
        await asyncio.to_thread(loyalty.wait_ready)
