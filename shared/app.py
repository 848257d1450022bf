"""The standard service skeleton: lifespan, resources, background tasks, probes.

Every service calls ``create_service_app``; resources (engine, producer,
consumer) are built inside the lifespan and reachable from requests through
``SessionDep`` and ``RuntimeDep``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncSession

from shared import (
    gc_tuning,
    http,
    logs,
    loop_lag,
    metrics,
    outbox,
    retention,
    taskdump,
    tracing,
)
from shared.auth import TokenVerifier
from shared.config import ServiceSettings
from shared.consumer import ConsumerRunner, Handlers
from shared.db import Database
from shared.kafka import make_consumer, make_producer
from shared.limits import BodySizeLimit, RateLimit
from shared.migrations import upgrade_async
from shared.timers import Scheduler, TimerHandler

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 20.0


@dataclass
class Runtime:
    settings: ServiceSettings
    db: Database
    producer: AIOKafkaProducer
    relay: outbox.Relay
    runner: ConsumerRunner | None = None
    scheduler: Scheduler | None = None
    producer_ready: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stopping: bool = False


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed before the response is sent."""
    async with get_runtime(request).db.unit_of_work() as session:
        yield session


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A read-only transaction per request (``Database.read_only``): on SQLite it does not
    wait for the write lock. Any write in it fails; a GET that must write (the staff
    access log) writes in a unit of work of its own (``shared.access_log.audited_read``)."""
    async with get_runtime(request).db.read_only() as session:
        yield session


async def get_quick_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """``get_read_session`` for a route of a few short reads (by key, a bounded page):
    ``Database.read_only(quick=True)``, on SQLite without hand-offs to aiosqlite's thread."""
    async with get_runtime(request).db.read_only(quick=True) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
QuickReadSessionDep = Annotated[AsyncSession, Depends(get_quick_read_session, scope="function")]


async def _runtime_dependency(request: Request) -> Runtime:
    """``get_runtime`` as a coroutine: FastAPI runs a plain ``def`` dependency in its
    thread pool, a thread hop per request for a dictionary lookup."""
    return get_runtime(request)


RuntimeDep = Annotated[Runtime, Depends(_runtime_dependency)]


def create_service_app(
    *,
    settings: ServiceSettings,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    handlers: Callable[[ServiceSettings], Handlers] | None,
    input_topics: Sequence[str],
    migrations_dir: Path,
    migrate_on_start: bool = False,
    timer_handlers: Callable[[ServiceSettings], Mapping[str, TimerHandler]] | None = None,
    extra_tasks: Sequence[Callable[[Runtime], Any]] = (),
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logs.configure(
            settings.service_name, level=settings.log_level, json_format=settings.log_json
        )
        tracing.configure(settings)
        if migrate_on_start:
            await upgrade_async(migrations_dir, settings.db_url())
        runtime = _build_runtime(settings, handlers, input_topics)
        if timer_handlers is not None:
            runtime.scheduler = Scheduler(
                db=runtime.db,
                handlers=timer_handlers(settings),
                service=settings.service_name,
                poll_interval=settings.scheduler_poll_interval_ms / 1000,
            )
        app.state.runtime = runtime
        _start_tasks(runtime, extra_tasks)
        taskdump.install()
        log.info("started", extra={"consumer_group": settings.consumer_group()})
        try:
            with gc_tuning.tuned(
                service=settings.service_name,
                gen0_threshold=settings.gc_gen0_threshold,
                freeze=settings.gc_freeze_after_start,
            ):
                yield
        finally:
            await _shutdown(runtime)

    app = FastAPI(title=title, description=description, version="1.0", lifespan=lifespan)
    app.state.verifier = TokenVerifier(settings)
    app.add_middleware(RateLimit, per_minute=settings.http_rate_limit_per_minute)
    app.add_middleware(BodySizeLimit, max_bytes=settings.http_max_body_bytes)
    http.install(app, service=settings.service_name, checks=_checks(app))
    for router in routers:
        app.include_router(router)
    return app


def _build_runtime(
    settings: ServiceSettings,
    handlers: Callable[[ServiceSettings], Handlers] | None,
    input_topics: Sequence[str],
) -> Runtime:
    db = Database(settings.db_url(), pool_size=settings.database_pool_size)
    producer = make_producer(settings)
    relay = outbox.Relay(
        db=db,
        producer=producer,
        service=settings.service_name,
        topic_prefix=settings.topic_prefix,
        poll_interval=settings.relay_poll_interval_ms / 1000,
        batch_size=settings.relay_batch_size,
        max_backoff=settings.retry_backoff_max_ms / 1000,
        batch_spacing=settings.relay_batch_spacing_ms / 1000,
    )
    runtime = Runtime(settings=settings, db=db, producer=producer, relay=relay)
    if settings.consumer_enabled and handlers is not None and input_topics:
        consumer = make_consumer(settings, *(settings.topic(t) for t in input_topics))
        runtime.runner = ConsumerRunner(
            db=db,
            consumer=consumer,
            service=settings.service_name,
            topic_prefix=settings.topic_prefix,
            handlers=handlers(settings),
            backoff_initial=settings.retry_backoff_initial_ms / 1000,
            backoff_max=settings.retry_backoff_max_ms / 1000,
            commit_interval=settings.kafka_commit_interval_ms / 1000,
            batch_spacing=settings.consumer_batch_spacing_ms / 1000,
            max_batch=settings.kafka_max_poll_records,
        )
    return runtime


def _start_tasks(runtime: Runtime, extra: Sequence[Callable[[Runtime], Any]]) -> None:
    def spawn(coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(lambda done: _report_stop(runtime, done))
        runtime.tasks.append(task)

    if runtime.settings.relay_enabled:
        spawn(_run_relay(runtime), "outbox-relay")
    if runtime.runner is not None:
        spawn(runtime.runner.run(), "consumer")
    if runtime.scheduler is not None:
        spawn(runtime.scheduler.run(), "scheduler")
    spawn(_watch_backlog(runtime), "outbox-backlog")
    settings = runtime.settings
    if settings.loop_lag_interval_ms:
        lag = loop_lag.watch(settings.service_name, interval=settings.loop_lag_interval_ms / 1000)
        spawn(lag, "loop-lag")
    if settings.inbox_retention_days is not None:
        inbox = retention.keep_inbox(
            runtime.db,
            service=settings.service_name,
            retention_days=settings.inbox_retention_days,
            interval=settings.inbox_prune_interval_seconds,
        )
        spawn(inbox, "inbox-retention")
    else:
        log.info("inbox retention is off: processed_events keeps every row")
    for factory in extra:
        spawn(factory(runtime), getattr(factory, "__name__", "task"))


def _report_stop(runtime: Runtime, task: asyncio.Task[None]) -> None:
    """Every background task runs until shutdown: ending any other way is an error, and
    readiness says so (``_checks``), including a cancellation nobody asked for."""
    if runtime.stopping:
        return
    if task.cancelled():
        log.error("background task %s was cancelled while the service runs", task.get_name())
    elif task.exception() is not None:
        log.error("background task %s crashed", task.get_name(), exc_info=task.exception())
    else:
        log.error("background task %s returned while the service runs", task.get_name())


def stopped_tasks(runtime: Runtime) -> list[str]:
    """Background tasks that ended although the service is not shutting down."""
    if runtime.stopping:
        return []
    return [t.get_name() for t in runtime.tasks if t.done()]


async def _run_relay(runtime: Runtime) -> None:
    delay = 0.2
    while True:
        try:
            await runtime.producer.start()
            break
        except KafkaError as exc:
            log.warning("broker unreachable (%s); retrying producer start in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(10.0, delay * 2)
    runtime.producer_ready.set()
    await runtime.relay.run()


async def _watch_backlog(runtime: Runtime) -> None:
    service = runtime.settings.service_name
    while True:
        await asyncio.sleep(5)
        try:
            async with runtime.db.unit_of_work(notify=False) as session:
                count, age = await outbox.backlog(session)
        except Exception:
            log.exception("could not read outbox backlog")
            continue
        metrics.OUTBOX_BACKLOG.labels(service).set(count)
        metrics.OUTBOX_AGE.labels(service).set(age)


def _checks(app: FastAPI) -> dict[str, http.Check]:
    async def database() -> None:
        await app.state.runtime.db.ping()

    async def broker() -> None:
        runtime: Runtime = app.state.runtime
        if not runtime.producer_ready.is_set():
            raise RuntimeError("producer not connected yet")
        await asyncio.wait_for(runtime.producer.client.fetch_all_metadata(), 3.0)

    async def consumer() -> None:
        runner = app.state.runtime.runner
        if runner is not None and runner.finished.is_set() and not runner.stopping:
            raise RuntimeError("the event consumer has stopped")

    async def tasks() -> None:
        stopped = stopped_tasks(app.state.runtime)
        if stopped:
            raise RuntimeError(f"background task(s) stopped: {', '.join(sorted(stopped))}")

    return {"database": database, "broker": broker, "consumer": consumer, "tasks": tasks}


async def _shutdown(runtime: Runtime) -> None:
    """Finish the batch in hand and commit it, publish what is committed, then close.

    Extra tasks (senders, watchers) are cancelled first; then the consumer and the
    scheduler finish their current unit of work; the relay goes last so it drains
    what they committed.
    """
    runtime.stopping = True
    by_name = {t.get_name(): t for t in runtime.tasks}
    producers_of_work = [by_name[n] for n in ("consumer", "scheduler") if n in by_name]
    relay = [by_name["outbox-relay"]] if "outbox-relay" in by_name else []
    others = [t for t in runtime.tasks if t not in (*producers_of_work, *relay)]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    if runtime.runner is not None:
        runtime.runner.stop()
    if runtime.scheduler is not None:
        runtime.scheduler.stop()
    await _finish(producers_of_work)
    runtime.relay.stop()
    await _finish(relay)
    await runtime.producer.stop()
    await runtime.db.dispose()
    log.info("stopped")


async def _finish(tasks: list[asyncio.Task[None]]) -> None:
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_SECONDS)
    for task in pending:
        log.warning("task %s did not stop in time; cancelling", task.get_name())
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
