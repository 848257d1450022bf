"""Optional tracing: one purchase followed across services through Kafka headers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select

from services.loyalty.config import LoyaltySettings
from services.loyalty.main import create_app as loyalty_app
from services.profile.config import ProfileSettings
from services.profile.main import create_app as profile_app
from shared import outbox, tracing
from shared.config import ServiceSettings
from shared.db import Database
from shared.plumbing import outbox as outbox_table
from tests.conftest import DatabaseFactory
from tests.helpers import TEST_SECRET, auth_headers, purchase, read_topic, wait_until
from tools.stack import migrate

pytestmark = [pytest.mark.db, pytest.mark.kafka]


class _Recorder(InMemorySpanExporter):
    """Keeps spans only while a test here runs: the provider outlives the test, and
    FastAPI's own telemetry would otherwise record every later test's requests."""

    active = False

    def export(self, spans: Any) -> Any:
        return super().export(spans) if self.active else SpanExportResult.SUCCESS


_EXPORTER = _Recorder()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The SDK's in-memory exporter on the process's tracer provider; tracing off after."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    _EXPORTER.clear()
    _EXPORTER.active = True
    yield _EXPORTER
    _EXPORTER.active = False
    _EXPORTER.clear()
    tracing.configure(ServiceSettings(tracing_enabled=False))


async def test_off_by_default_no_header_and_no_span(
    spans: InMemorySpanExporter, database_url: DatabaseFactory
) -> None:
    assert ServiceSettings().tracing_enabled is False
    tracing.configure(ServiceSettings())
    headers = await _enqueue_one(await database_url("profile"))
    assert [h[0] for h in headers] == ["content-type"]
    assert spans.get_finished_spans() == ()


async def test_an_enqueued_event_carries_the_current_trace(
    spans: InMemorySpanExporter, database_url: DatabaseFactory
) -> None:
    tracing.configure(ServiceSettings(tracing_enabled=True, tracing_exporter="none"))
    with trace.get_tracer("test").start_as_current_span("request") as span:
        headers = dict(await _enqueue_one(await database_url("profile")))
    context = span.get_span_context()
    assert headers["traceparent"].startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")


async def _enqueue_one(url: str) -> list[list[str]]:
    await asyncio.to_thread(migrate, "profile", url)
    db = Database(url)
    try:
        async with db.unit_of_work() as session:
            await outbox.enqueue(session, purchase("c-1"))
        async with db.unit_of_work() as session:
            found: list[list[str]] = (
                await session.execute(select(outbox_table.c.headers))
            ).scalar_one()
    finally:
        await db.dispose()
    return found


async def test_a_purchase_posted_to_profile_is_followed_into_loyalty_and_beyond(
    spans: InMemorySpanExporter, broker: str, topics: str, database_url: DatabaseFactory
) -> None:
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": broker,
        "topic_prefix": topics,
        "auth_secret": TEST_SECRET,
        "tracing_enabled": True,
        "tracing_exporter": "none",
        "relay_poll_interval_ms": 50,
        "kafka_fetch_max_wait_ms": 20,
    }
    urls = {s: await database_url(s) for s in ("profile", "loyalty")}
    for service, url in urls.items():
        await asyncio.to_thread(migrate, service, url)
    profile = profile_app(
        ProfileSettings(database_url=urls["profile"], consumer_enabled=False, **common)
    )
    loyalty = loyalty_app(LoyaltySettings(database_url=urls["loyalty"], **common))
    event = purchase("c-traced", "12.00")
    async with _running(profile, loyalty) as (till, members):
        posted = await till.post("/v1/events", content=event.to_json())
        assert posted.status_code == 202, posted.text
        await wait_until(lambda: _member(members, "c-traced"), timeout=30)
        earned = await read_topic(broker, topics + "loyalty.events", expect=1)

    request = _one(spans, "POST /v1/events")
    consumed = _one(spans, f"consume {topics}commerce.purchases")
    assert consumed.attributes is not None
    assert consumed.attributes["keepwell.service"] == "loyalty"
    assert consumed.kind == trace.SpanKind.CONSUMER
    assert consumed.context.trace_id == request.context.trace_id
    # Its parent is the request's endpoint span (FastAPI's own child of the request span).
    assert request.context.span_id in _ancestors(spans, consumed)
    # What loyalty published while handling it continues the same trace.
    parents = [dict(r.headers).get("traceparent", b"").decode().rsplit("-", 1)[0] for r in earned]
    assert f"00-{request.context.trace_id:032x}-{consumed.context.span_id:016x}" in parents


def _ancestors(spans: InMemorySpanExporter, span: ReadableSpan) -> list[int]:
    by_id = {s.context.span_id: s for s in spans.get_finished_spans()}
    chain, parent = [], span.parent
    while parent is not None:
        chain.append(parent.span_id)
        parent = by_id[parent.span_id].parent if parent.span_id in by_id else None
    return chain


def _one(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [s for s in spans.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in spans.get_finished_spans()]
    return found[0]


async def _member(client: httpx.AsyncClient, cid: str) -> bool:
    return (await client.get(f"/v1/members/{cid}")).status_code == 200


class _running:
    """Both apps' lifespans, and a client for each."""

    def __init__(self, *apps: FastAPI) -> None:
        self._apps = apps
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> tuple[httpx.AsyncClient, ...]:
        clients = []
        for app in self._apps:
            await self._stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://t",
                headers=auth_headers("admin"),
            )
            clients.append(await self._stack.enter_async_context(client))
        return tuple(clients)

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
