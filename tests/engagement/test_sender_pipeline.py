"""The continuous sender (``Sender.run``): claims made while sends are in flight, SMTP
sessions kept across claims, per-claim hand-back, sweeps at most once per poll, and
waiting only for what it knows is due."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from services.engagement.delivery import Claim
from services.engagement.sender import UNSETTLED_PER_WORKER, Sender
from services.engagement.settling import Outcome
from shared.db import Database
from shared.events.profile import QuietHours
from tests.engagement.conftest import SlowHandler
from tests.engagement.support import (
    Chunked,
    customer,
    handle,
    now,
    only_outreach,
    outreach_rows,
    published,
    purchase,
    set_outreach,
    settings,
)
from tests.engagement.test_policy import OPTED_OUT, consent
from tests.helpers import wait_until
from tools import broker as tansu

pytestmark = pytest.mark.db


class GatedHandler:
    """Accepts every message and records (recipient, client peer). A message to a
    recipient in ``held`` stays in DATA until ``gate`` is set; with ``hang_up`` the
    server closes the connection after each reply."""

    def __init__(self, held: tuple[str, ...] = (), *, hang_up: bool = False) -> None:
        self.held = set(held)
        self.hang_up = hang_up
        self.gate = threading.Event()
        self.holding = threading.Event()
        self.accepted: list[tuple[str, object]] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        [recipient] = envelope.rcpt_tos
        if recipient in self.held:
            self.holding.set()
            await asyncio.to_thread(self.gate.wait, 10)
        self.accepted.append((recipient, session.peer))
        if self.hang_up:
            # after the reply is written: the session ends as an idle timeout would end it
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 accepted"

    def recipients(self) -> list[str]:
        return [r for r, _ in self.accepted]


@pytest.fixture
def gated() -> Iterator[Callable[..., tuple[int, GatedHandler]]]:
    controllers: list[Controller] = []

    def start(*held: str, hang_up: bool = False) -> tuple[int, GatedHandler]:
        port = tansu.free_port()
        handler = GatedHandler(held, hang_up=hang_up)
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        return port, handler

    yield start
    for controller in controllers:
        controller.stop()


@contextlib.asynccontextmanager
async def running(sender: Sender) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sender.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _set(flag: threading.Event) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return flag.is_set()

    return check


def _got(server: GatedHandler, *recipients: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return set(recipients) <= set(server.recipients())

    return check


def _all_sent(db: Database, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        rows = await outreach_rows(db)
        return len(rows) == count and {r.status for r in rows} == {"sent"}

    return check


async def test_a_message_due_during_a_slow_send_goes_out_before_that_send_ends(
    db: Database, gated: Callable[..., tuple[int, GatedHandler]]
) -> None:
    port, server = gated("slow@example.com")
    config = settings(smtp_port=port, sender_concurrency=2, sender_poll_interval_ms=60_000)
    await handle(db, customer("c-slow", email="slow@example.com"), purchase("c-slow"))
    async with running(Sender(db=db, settings=config)):
        await wait_until(_set(server.holding), timeout=5)
        await handle(db, customer("c-fast", email="fast@example.com"), purchase("c-fast"))
        await wait_until(_got(server, "fast@example.com"), timeout=5)
        assert server.recipients() == ["fast@example.com"]  # the slow send is still in DATA
        server.gate.set()
        await wait_until(_all_sent(db, 2), timeout=5)
    assert sorted(server.recipients()) == ["fast@example.com", "slow@example.com"]


async def test_a_worker_keeps_its_smtp_session_across_claims(
    db: Database, gated: Callable[..., tuple[int, GatedHandler]]
) -> None:
    port, server = gated()
    config = settings(smtp_port=port, sender_concurrency=1, sender_poll_interval_ms=60_000)
    sender = Sender(db=db, settings=config)
    async with running(sender):
        for n in range(3):
            await handle(db, customer(f"c-{n}", email=f"c{n}@example.com"), purchase(f"c-{n}"))
            await wait_until(_all_sent(db, n + 1), timeout=5)
    assert server.recipients() == ["c0@example.com", "c1@example.com", "c2@example.com"]
    assert len({peer for _, peer in server.accepted}) == 1  # one session for all three
    assert sender.claims_made >= 4  # the first (empty) claim, then one per purchase


@pytest.mark.parametrize("announce", [True, False])
async def test_a_worker_announces_its_next_message_behind_the_content_before_it(
    db: Database, announce: bool
) -> None:
    server = Chunked()
    for n in range(3):
        await handle(db, customer(f"c-{n}", email=f"c{n}@example.com"), purchase(f"c-{n}"))
    async with server.listening() as port:
        config = settings(smtp_port=port, sender_concurrency=1, smtp_announce_next=announce)
        assert await Sender(db=db, settings=config).run_once() == 3
    assert server.sessions == 1
    assert len(server.contents) == 3
    # one round trip each after the first; none saved when the setting is off
    assert server.together(b".", b"MAIL FROM") == (2 if announce else 0)
    assert [(r.status, r.attempts) for r in await outreach_rows(db)] == [("sent", 1)] * 3


async def test_a_busy_worker_leaves_the_next_claim_to_an_idle_one(
    db: Database, gated: Callable[..., tuple[int, GatedHandler]]
) -> None:
    port, server = gated("c0@example.com")
    for n in range(2):
        await handle(db, customer(f"c-{n}", email=f"c{n}@example.com"), purchase(f"c-{n}"))
    config = settings(smtp_port=port, sender_concurrency=2, sender_poll_interval_ms=60_000)
    async with running(Sender(db=db, settings=config)):
        await wait_until(_set(server.holding), timeout=5)
        # c1 goes on the other session while c0 is held, not behind c0 on its session
        await wait_until(_got(server, "c1@example.com"), timeout=5)
        server.gate.set()
        await wait_until(_all_sent(db, 2), timeout=5)
    assert len({peer for _, peer in server.accepted}) == 2


async def test_a_session_the_server_closed_is_reopened(
    db: Database, gated: Callable[..., tuple[int, GatedHandler]]
) -> None:
    port, server = gated(hang_up=True)
    config = settings(smtp_port=port, sender_concurrency=1, sender_poll_interval_ms=60_000)
    async with running(Sender(db=db, settings=config)):
        for n in range(2):
            await handle(db, customer(f"c-{n}", email=f"c{n}@example.com"), purchase(f"c-{n}"))
            await wait_until(_all_sent(db, n + 1), timeout=5)
    assert server.recipients() == ["c0@example.com", "c1@example.com"]
    assert len({peer for _, peer in server.accepted}) == 2


async def test_a_claim_queued_past_its_deadline_is_handed_back_then_sent_once(
    db: Database, slow_smtp: tuple[int, SlowHandler]
) -> None:
    port, server = slow_smtp  # 0.5 s per message; a claim may wait 0.4 s in the queue
    for n in range(3):
        await handle(db, customer(f"c-{n}", email=f"c{n}@example.com"), purchase(f"c-{n}"))
    config = settings(
        smtp_port=port, sender_concurrency=1, smtp_timeout_seconds=0.7, sending_timeout_seconds=1.1
    )
    sender = Sender(db=db, settings=config)
    handed_back: list[str] = []
    release = sender._release

    async def spy(claims: Sequence[Claim]) -> None:
        handed_back.extend(c.outreach_id for c in claims)
        await release(claims)

    sender._release = spy  # type: ignore[method-assign]
    async with running(sender):
        await wait_until(_all_sent(db, 3), timeout=15)
    assert sorted(server.accepted) == [(f"c{n}@example.com",) for n in range(3)]
    assert handed_back  # queued too long while the first was being sent
    # a hand-back is not an attempt, and nothing was sent twice
    assert [(r.status, r.attempts) for r in await outreach_rows(db)] == [("sent", 1)] * 3
    assert len([e for e in await published(db) if e.type == "outreach.sent"]) == 3


async def test_stopping_settles_the_message_in_hand_and_hands_back_the_queue(
    db: Database, gated: Callable[..., tuple[int, GatedHandler]]
) -> None:
    port, server = gated("c0@example.com")
    for n in range(4):
        await handle(db, customer(f"c-{n}", email=f"c{n}@example.com"), purchase(f"c-{n}"))
    config = settings(smtp_port=port, sender_concurrency=1)
    task = asyncio.create_task(Sender(db=db, settings=config).run())
    await wait_until(_set(server.holding), timeout=5)
    task.cancel()
    server.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.recipients() == ["c0@example.com"]
    rows = {r.customer_id: (r.status, r.attempts) for r in await outreach_rows(db)}
    assert rows == {"c-0": ("sent", 1), **{f"c-{n}": ("pending", 0) for n in (1, 2, 3)}}


async def test_between_sweeps_a_claim_leaves_what_the_sweeps_would_suppress(
    db: Database,
) -> None:
    sender = Sender(db=db, settings=settings(smtp_port=tansu.free_port()))
    assert await sender._claim(now(), limit=10, sweep=True) == ([], False, None)
    await handle(db, customer("c-ok", email="ok@example.com"), purchase("c-ok"))
    await handle(db, customer("c-out", email="out@example.com"), purchase("c-out"))
    await handle(db, consent("c-out", "opt_out", at=now()))  # after the last sweep
    await handle(db, customer("c-old", email="old@example.com"), purchase("c-old"))
    await set_outreach(db, "c-old", due_at=now() - timedelta(days=2))  # past max lateness
    claims, _, _ = await sender._claim(now(), limit=10, sweep=False)
    assert [c.customer_id for c in claims] == ["c-ok"]
    assert (await only_outreach(db, "c-out")).status == "pending"
    assert (await only_outreach(db, "c-old")).status == "pending"
    assert await sender._claim(now(), limit=10, sweep=True) == ([], False, None)
    out, old = await only_outreach(db, "c-out"), await only_outreach(db, "c-old")
    assert (out.status, out.last_error) == ("suppressed", OPTED_OUT)
    assert (old.status, old.last_error) == ("suppressed", "stale")


async def test_the_sweeps_run_at_most_once_per_poll_interval(
    db: Database, gated: Callable[..., tuple[int, GatedHandler]]
) -> None:
    port, _server = gated()
    sender = Sender(db=db, settings=settings(smtp_port=port, sender_poll_interval_ms=60_000))
    async with running(sender):
        for n in range(3):
            await handle(db, customer(f"c-{n}", email=f"c{n}@example.com"), purchase(f"c-{n}"))
            await wait_until(_all_sent(db, n + 1), timeout=5)
    assert sender.claims_made >= 4
    assert sender.sweeps_made == 1


async def test_with_nothing_due_it_sleeps_until_the_next_due_time(
    db: Database, gated: Callable[..., tuple[int, GatedHandler]]
) -> None:
    port, server = gated()
    await handle(db, customer("c-1", email="c1@example.com"), purchase("c-1"))
    await set_outreach(db, "c-1", due_at=now() + timedelta(seconds=0.5))  # no commit wakes it
    config = settings(smtp_port=port, sender_poll_interval_ms=10, sender_idle_poll_ms=60_000)
    sender = Sender(db=db, settings=config)
    async with running(sender):
        await wait_until(_all_sent(db, 1), timeout=5)
        await asyncio.sleep(0.3)  # 30 poll intervals with nothing due
    assert server.recipients() == ["c1@example.com"]
    # the first claim, one at the due time (perhaps a few if the timer fired early), one
    # after it: not one every 10 ms
    assert sender.claims_made < 10


class RefuseOnceHandler:
    """Refuses the first message with a transient 451, then accepts."""

    def __init__(self) -> None:
        self.refused = 0
        self.accepted: list[str] = []

    async def handle_DATA(self, _server: Any, _session: Session, envelope: Envelope) -> str:
        if not self.refused:
            self.refused += 1
            return "451 4.3.0 try again later"
        self.accepted.extend(envelope.rcpt_tos)
        return "250 accepted"


async def test_a_retry_goes_out_after_its_backoff_without_a_poll(db: Database) -> None:
    port = tansu.free_port()
    server = RefuseOnceHandler()
    controller = Controller(server, hostname="127.0.0.1", port=port)
    controller.start()
    config = settings(smtp_port=port, sender_poll_interval_ms=10, sender_idle_poll_ms=60_000)
    try:
        await handle(db, customer("c-1", email="c1@example.com"), purchase("c-1"))
        async with running(Sender(db=db, settings=config)):
            await wait_until(_all_sent(db, 1), timeout=5)
    finally:
        controller.stop()
    assert (server.refused, server.accepted) == (1, ["c1@example.com"])
    assert (await only_outreach(db, "c-1")).attempts == 2


async def _held_commits(
    db: Database, port: int, *, messages: int, workers: int
) -> tuple[Sender, asyncio.Event, Callable[[], Awaitable[int]]]:
    """A sender of ``messages`` thank-yous to the SMTP server on ``port`` whose settling
    commits wait for the returned gate, and a count of the outcomes sent but not yet
    committed."""
    for n in range(messages):
        await handle(db, customer(f"c-{n}", email=f"c{n}@example.com"), purchase(f"c-{n}"))
    sender = Sender(db=db, settings=settings(smtp_port=port, sender_concurrency=workers))
    settler = sender._settler
    write, gate = settler._write, asyncio.Event()
    writing: list[int] = []

    async def held_write(outcomes: Sequence[Outcome]) -> dict[str, str | None]:
        writing.append(len(outcomes))
        await gate.wait()
        return await write(outcomes)

    settler._write = held_write

    async def unsettled() -> int:
        return sum(writing) + len(settler._waiting)

    return sender, gate, unsettled


async def test_a_worker_sends_on_while_its_outcome_commits(
    db: Database, gated: Callable[..., tuple[int, GatedHandler]]
) -> None:
    sender, gate, unsettled = await _held_commits(db, gated()[0], messages=6, workers=2)
    round_ = asyncio.create_task(sender.run_once())
    # The first commit is held. Each worker sends one more message meanwhile, so four
    # outcomes (two per worker) await a commit, where waiting workers would leave two.
    assert await wait_until(lambda: _at_least(unsettled, 4), timeout=5)
    gate.set()
    assert await round_ == 6
    assert sum(sender._settler.groups) == 6
    assert max(sender._settler.groups) > 1
    rows = await outreach_rows(db)
    assert [(r.status, r.attempts) for r in rows] == [("sent", 1)] * 6


async def test_a_worker_sends_up_to_its_window_while_commits_wait_their_turn(
    db: Database, gated: Callable[..., tuple[int, GatedHandler]]
) -> None:
    """On SQLite a commit waits its turn at the write lock behind the consumer: a worker
    that waited for each outcome's commit sent one message per turn. It now keeps
    ``UNSETTLED_PER_WORKER`` outcomes waiting (plus the one it sends), then waits."""
    sender, gate, unsettled = await _held_commits(db, gated()[0], messages=8, workers=1)
    round_ = asyncio.create_task(sender.run_once())
    window = UNSETTLED_PER_WORKER + 1  # the first outcome's commit is held from the start
    assert await wait_until(lambda: _at_least(unsettled, window), timeout=5)
    assert await unsettled() == window  # the next send waits for the held commit
    gate.set()
    assert await round_ == 8
    rows = await outreach_rows(db)
    assert [(r.status, r.attempts) for r in rows] == [("sent", 1)] * 8


async def test_a_worker_waiting_for_its_window_has_taken_no_claim_early(db: Database) -> None:
    """While its window's commits wait, a worker would keep a claim it took early from
    the other workers; at a full window it announces nothing behind its last message."""
    server = Chunked()
    async with server.listening() as port:
        sender, gate, unsettled = await _held_commits(db, port, messages=8, workers=1)
        round_ = asyncio.create_task(sender.run_once())
        window = UNSETTLED_PER_WORKER + 1
        assert await wait_until(lambda: _at_least(unsettled, window), timeout=5)
        assert len(server.contents) == window
        assert server.lines_starting(b"MAIL FROM") == window  # none announced beyond
        gate.set()
        assert await round_ == 8
    assert server.together(b".", b"MAIL FROM") >= 1  # it announced while it had room
    rows = await outreach_rows(db)
    assert [(r.status, r.attempts) for r in rows] == [("sent", 1)] * 8


async def _at_least(count: Callable[[], Awaitable[int]], least: int) -> bool:
    return await count() >= least


async def test_a_full_batch_of_deferred_messages_does_not_send_the_claimer_idle(
    db: Database, gated: Callable[..., tuple[int, GatedHandler]]
) -> None:
    port, server = gated()
    hours = QuietHours(
        start=(now() - timedelta(hours=1)).strftime("%H:%M"),
        end=(now() + timedelta(hours=1)).strftime("%H:%M"),
    )
    quiet = customer("c-quiet", email="quiet@example.com", timezone="UTC", quiet_hours=hours)
    await handle(db, quiet, purchase("c-quiet"))  # due first, deferred when claimed
    await handle(db, customer("c-ok", email="ok@example.com"), purchase("c-ok"))
    config = settings(
        smtp_port=port,
        sender_batch_size=1,
        sender_poll_interval_ms=10,
        sender_idle_poll_ms=60_000,
    )
    async with running(Sender(db=db, settings=config)):
        await wait_until(_got(server, "ok@example.com"), timeout=5)
    assert server.recipients() == ["ok@example.com"]
    quiet_row = await only_outreach(db, "c-quiet")
    assert quiet_row.status == "pending"
    assert quiet_row.due_at > now()


def _failed_sends(caplog: pytest.LogCaptureFixture) -> int:
    return sum(r.getMessage().startswith("outreach send failed") for r in caplog.records)


async def test_once_the_database_is_back_a_commit_ends_the_backoff_it_built_up(
    db: Database,
    gated: Callable[..., tuple[int, GatedHandler]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Commits fail for a while (the database away), with each failure followed by a
    minute's backoff. Each worker fails once, for all the outcomes it had awaiting their
    commit, and the first commit after the database is back ends every wait: the
    messages are recorded from the journal, the next one is sent, and none twice."""
    port, server = gated()
    for n in range(12):
        await handle(db, customer(f"c-{n}", email=f"c{n}@example.com"), purchase(f"c-{n}"))
    sender = Sender(db=db, settings=settings(smtp_port=port, sender_concurrency=2))
    sender._backoff.first = sender._backoff.most = 60.0
    sender._backoff.least = 0.01
    write = sender._settler._write
    away = True

    async def write_unless_away(outcomes: Sequence[Outcome]) -> dict[str, str | None]:
        if away:
            raise ConnectionError("the database is away")
        return await write(outcomes)

    sender._settler._write = write_unless_away
    sender._settle = write_unless_away  # type: ignore[method-assign]  # the journal's too
    caplog.set_level("INFO", logger="services.engagement.sender")
    async with running(sender):
        # Each worker sends until an outcome's failed commit surfaces, then backs off.
        assert await wait_until(lambda: _now(_failed_sends(caplog) == 2), timeout=10)
        assert len(server.recipients()) >= 10
        away = False
        await handle(db, customer("c-late", email="late@example.com"), purchase("c-late"))
        assert await wait_until(_all_sent(db, 13), timeout=15)
    assert sorted(server.recipients()) == sorted(
        [f"c{n}@example.com" for n in range(12)] + ["late@example.com"]
    )
    assert _failed_sends(caplog) == 2  # no further failure for the outcomes left over


async def test_a_worker_backing_off_hands_the_claim_it_took_early_to_the_others(
    db: Database, gated: Callable[..., tuple[int, GatedHandler]]
) -> None:
    """One outcome's commit fails and its worker waits out a minute's backoff; the claim
    it had taken early goes back to the queue, and the other worker sends it."""
    port, server = gated()
    messages = 30
    for n in range(messages):
        await handle(db, customer(f"c-{n}", email=f"c{n}@example.com"), purchase(f"c-{n}"))
    sender = Sender(db=db, settings=settings(smtp_port=port, sender_concurrency=2))
    sender._backoff.first = sender._backoff.least = sender._backoff.most = 60.0
    settle = sender._settler.settle

    async def settle_unless_first(outcome: Outcome) -> str | None:
        if outcome.claim.address == "c0@example.com":
            raise ConnectionError("this commit failed")
        return await settle(outcome)

    sender._settler.settle = settle_unless_first  # type: ignore[method-assign]
    everyone = [f"c{n}@example.com" for n in range(messages)]
    async with running(sender):
        assert await wait_until(_got(server, *everyone), timeout=15)
        assert await wait_until(_all_sent(db, messages), timeout=5)  # c-0 from the journal
    assert sorted(server.recipients()) == sorted(everyone)


async def _now(value: bool) -> bool:
    return value
