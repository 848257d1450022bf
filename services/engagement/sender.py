"""The outreach sender: the background task that turns due messages into e-mails and
webhook calls (SMS, push, chat apps).

It runs continuously (``run``). A claimer keeps a queue of claims topped up. In one
short transaction it claims due messages (status ``sending``; ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so replicas take disjoint rows) whenever a local transaction
planned a message or changed a contact (``OUTREACH_FLAG``), when the queue runs low
after a full claim, or after a poll interval, without waiting for the sends in
flight. At most once per poll interval the same transaction first runs the sweeps:
put back claims that stalled, route or suppress messages by consent, staleness and
reachability (under each journey's current channel order and lateness), and read the
operators' stored templates. The claims in between check in SQL what the sweeps
would have decided (``delivery.Guard``) and leave such messages to them. With nothing
due it sleeps until a local commit, the earliest future due time it saw, or
``sender_idle_poll_ms``.

``sender_concurrency`` workers, each with one SMTP session kept open for as long as
the sender runs (reopened after an error or when the server closed it), take claims
from the queue and render and send them outside any transaction. While a worker sends
an e-mail it takes its next e-mail claim, so the session announces that message behind
the content before it (``_Ahead``: one round trip per message). Each outcome is
settled (``sent`` plus an ``outreach.sent`` event in the outbox, or a retry with
backoff, or ``failed``) while the worker sends its next ones (up to
``UNSETTLED_PER_WORKER`` awaiting their commit); outcomes that are ready together share
one transaction (group commit, ``settling``). A claim still
queued ``sending_timeout - smtp_timeout`` after it was made is handed back unsent. On
shutdown each worker finishes and settles the message in hand; the queue (and any
claim a worker took early) is handed back. ``run_once`` is one round of the same
parts (sweeps, one claim, its sends), with the same worker loop stopping when the queue
is empty.

Delivery is at-least-once where nothing is known, and once where the journal knows. A
crash after a message went out and before the commit that records it leaves the row in
``sending``, and the database alone cannot tell whether the server got it: it is sent
again after ``sending_timeout_seconds``, with the same ``Message-ID`` (derived from the
outreach id, so mail systems that de-duplicate on it drop the copy), and the history and
the ``outreach.sent`` event still say "sent" once (``attempts`` fences the late outcome).
A customer who gets a thank-you twice is a small embarrassment; one who never gets the
survey or the service-recovery offer is the failure this product exists to prevent.

The local journal (``journal``) knows more. Each message is noted the moment its last
byte is in the kernel's socket buffer and again when the server's reply is read; a
sender that starts, or whose settling failed, records what the journal holds as sent
before it claims anything, and a claim taken back while its commit waited (the database
away past the sending timeout) is recorded with the earlier attempt's reply instead of
being sent again. A message noted as handed over but with no reply read is recorded "in
doubt": once in the socket buffer the kernel delivers it after the process dies, so it
is lost only if the connection fails in that same moment, where sending again would
almost surely duplicate it. The same holds for a session that ends after the hand-over
without the server's reply (a timeout while the server is slow, a lost connection): that
message is recorded as sent "in doubt" too (``mailer.HandedInDoubt``), with a warning,
not retried. A reply refusing it is a failure as before. What stays at-least-once: a
journal lost with its machine, a webhook or a server without PIPELINING between the
request and its reply, and another replica taking over the claim of a sender that is not
restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from jinja2 import TemplateError
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import (
    catalog,
    delivery,
    journey_config,
    repository,
    sweeps,
    templates_store,
)
from services.engagement.composing import Composer, Mail
from services.engagement.config import EngagementSettings
from services.engagement.delivery import Claim, FrequencyCap, Guard, RetryPolicy
from services.engagement.journal import HANDED, SendJournal, default_path
from services.engagement.mailer import DeliveryFailed, HandedInDoubt, SmtpConnection, SmtpMailer
from services.engagement.models import PENDING, SENT
from services.engagement.rendering import RenderedMessage, Renderer, Stored
from services.engagement.repository import config as config_repo
from services.engagement.service import OUTREACH_FLAG, utc
from services.engagement.settling import GroupCommit, Outcome
from services.engagement.webhooks import WebhookChannel, webhook_channels
from shared.app import Runtime
from shared.db import Database

log = logging.getLogger(__name__)

T = TypeVar("T")

# The reply recorded for a message handed over in full when the session then ended
# without the server's reply (``mailer.HandedInDoubt``); the reason follows it.
IN_DOUBT_SESSION = "in doubt: handed to the server in full; the session ended before its reply"

# Journal leftovers recorded per transaction: after a crash the journal can hold thousands,
# and one short transaction each keeps the write lock (SQLite) free for the others.
LEFTOVERS_PER_TRANSACTION = 200

# Outcomes a worker may have awaiting their commit while it sends the next message. One
# was enough on PostgreSQL; on SQLite a commit waits its turn at the one write lock behind
# the consumer's poll transactions (tens of ms at 200 purchases/s), and a worker that
# waited for each commit sent one message per turn: 8 workers, about 130 e-mails/s.
UNSETTLED_PER_WORKER = 4


class _Queue:
    """Claims waiting for a worker, oldest first, each with the monotonic time after
    which it must be handed back unsent; and how many of its ``workers`` are ``busy``
    with a claim."""

    def __init__(self, workers: int) -> None:
        self._items: deque[tuple[Claim, float]] = deque()
        self._ready = asyncio.Event()
        self.workers = workers
        self.busy = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, claims: Sequence[Claim], *, deadline: float) -> None:
        self._items.extend((claim, deadline) for claim in claims)
        if self._items:
            self._ready.set()

    async def get(self) -> tuple[Claim, float]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def get_nowait(self) -> tuple[Claim, float] | None:
        return self._items.popleft() if self._items else None

    def put_back(self, item: tuple[Claim, float]) -> None:
        """Return a claim taken from the head to the head (its deadline is the earliest)."""
        self._items.appendleft(item)
        self._ready.set()

    def peek(self) -> tuple[Claim, float] | None:
        return self._items[0] if self._items else None

    def spare(self) -> int:
        """Claims beyond one for each idle worker: what a busy worker may take early
        without keeping a claim from a worker that would send it now."""
        return len(self._items) - (self.workers - self.busy)

    def expired(self, now: float) -> list[Claim]:
        """Take the claims at the head whose deadline has passed (deadlines only grow)."""
        taken: list[Claim] = []
        while self._items and self._items[0][1] <= now:
            taken.append(self._items.popleft()[0])
        return taken

    def drain(self) -> list[Claim]:
        claims = [claim for claim, _ in self._items]
        self._items.clear()
        return claims


class _Ahead:
    """A worker's next claim, taken from the queue while the one before it is sent, and
    its message composed: the SMTP session writes that message's MAIL, RCPT and DATA
    behind the content before it (``SmtpConnection.send``'s ``then``), so a message
    costs one round trip to the server instead of two."""

    def __init__(self, queue: _Queue) -> None:
        self.queue = queue
        self.item: tuple[Claim, float] | None = None
        self._mail: tuple[str, Mail] | None = None  # (outreach id, its composed message)

    def take(self) -> tuple[Claim, float] | None:
        """The claim taken early, now the worker's to send (or hand back)."""
        item, self.item = self.item, None
        return item

    def hold(self, claim: Claim, deadline: float, mail: Mail | None) -> None:
        self.item = (claim, deadline)
        self._mail = (claim.outreach_id, mail) if mail is not None else None

    def mail_for(self, claim: Claim) -> Mail | None:
        """The message composed for ``claim`` when it was taken early, if it was."""
        held, self._mail = self._mail, None
        return held[1] if held is not None and held[0] == claim.outreach_id else None


class _Backoff:
    """How long the claimer or a worker waits after a failure (as a rule, the database
    away): ``first`` for the first in a row, doubling with each, at most ``most``. A
    commit of this service's database after the failure ends the wait once ``least``
    has passed: the database is back, and what failed should be tried again now rather
    than after the longest backoff an outage has built up."""

    def __init__(self, *, first: float, least: float, most: float = 30.0) -> None:
        self.first = first
        self.least = least
        self.most = most
        self.commits = 0  # commits seen so far (``on_commit``)
        self._next: asyncio.Event | None = None  # set by the next commit, while awaited

    def committed(self) -> None:
        self.commits += 1
        if self._next is not None:
            self._next.set()
            self._next = None

    def seconds(self, failures: int) -> float:
        """The full backoff after ``failures`` in a row."""
        return min(self.most, self.first * 2.0 ** max(0, failures - 1))

    async def wait(self, failures: int, *, since: int | None = None) -> None:
        """Back off after ``failures`` in a row; ``since``: ``commits`` when the last of
        them happened (now if not given)."""
        seen = self.commits if since is None else since
        full = self.seconds(failures)
        await asyncio.sleep(min(self.least, full))
        if self.commits != seen or full <= self.least:
            return
        if self._next is None:
            self._next = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._next.wait(), full - self.least)


class Sender:
    def __init__(
        self,
        *,
        db: Database,
        settings: EngagementSettings,
        renderer: Renderer | None = None,
        mailer: SmtpMailer | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._policy = RetryPolicy.from_settings(settings)
        self._cap = FrequencyCap.from_settings(settings)
        self._renderer = renderer or Renderer()
        self._mailer = mailer or SmtpMailer(settings)
        self._composer = Composer(settings.mail_from)
        self._webhooks: dict[str, WebhookChannel] = webhook_channels(settings)
        self._channels = (catalog.EMAIL, *self._webhooks)
        self._stored: Stored = {}
        self._settler = GroupCommit(self._settle)
        self._wakeup = asyncio.Event()
        self._guard = Guard(max_lateness=self._policy.max_lateness)
        self._next_sweep = 0.0  # monotonic time from which a claim runs the sweeps again
        self._sweep_soon = False  # a local commit since the last sweep: sweep within a poll
        self._more_due = False  # the last claim was full: claim again when the queue runs low
        self.claims_made = 0  # claim transactions (for tests and benchmarks)
        self.sweeps_made = 0
        self._journal: SendJournal | None = None
        self._backoff = _Backoff(first=2 * self._poll_interval, least=self._poll_interval)
        db.on_commit(self._on_commit, when=OUTREACH_FLAG)
        db.on_commit(self._backoff.committed)

    async def run(self) -> None:
        """Until cancelled: the claimer fills the queue, ``sender_concurrency`` workers
        send from it; on the way out the queue is handed back."""
        queue = _Queue(self._settings.sender_concurrency)
        with self._journaling():
            try:
                async with asyncio.TaskGroup() as workers:
                    for _ in range(self._settings.sender_concurrency):
                        workers.create_task(self._worker(queue, until_empty=False))
                    await self._claimer(queue)
            finally:
                await _finish_even_if_cancelled(self._release(queue.drain()))
                await _finish_even_if_cancelled(self._close_webhooks())

    async def _close_webhooks(self) -> None:
        """Close each webhook channel's HTTP client (reopened by its next send)."""
        for webhook in self._webhooks.values():
            await webhook.aclose()

    @contextlib.contextmanager
    def _journaling(self) -> Iterator[None]:
        """The journal of accepted messages (``journal``) for one run, if it is on."""
        s = self._settings
        path = default_path(s.db_url(), s.sender_journal_dir) if s.sender_journal_enabled else None
        if path is None:
            yield
            return
        try:
            journal = SendJournal.open(path)
        except OSError:
            log.exception(
                "send journal unavailable: messages accepted before a crash will be sent "
                "again (set ENGAGEMENT_SENDER_JOURNAL_DIR to a writable directory)",
                extra={"path": str(path)},
            )
            yield
            return
        self._journal = journal
        try:
            yield
        finally:
            self._journal = None
            journal.close()

    @property
    def _poll_interval(self) -> float:
        return self._settings.sender_poll_interval_ms / 1000

    @property
    def _idle_poll(self) -> float:
        return max(self._settings.sender_idle_poll_ms / 1000, self._poll_interval)

    def _on_commit(self) -> None:
        self._sweep_soon = True
        self._wakeup.set()

    def _deadline(self) -> float:
        """For claims made now: a claim still queued this late could be taken over as
        stalled while we send it, so it is handed back instead (``sending_timeout``
        outlasts one SMTP exchange)."""
        s = self._settings
        return time.monotonic() + s.sending_timeout_seconds - s.smtp_timeout_seconds

    async def _claimer(self, queue: _Queue) -> None:
        failures = 0
        while True:
            self._wakeup.clear()
            try:
                delay = await self._refill(queue)
                failures = 0
            except Exception:
                failures += 1
                log.exception("outreach claim failed (%d in a row)", failures)
                await self._backoff.wait(failures)
                continue
            except asyncio.CancelledError:
                if _cancel_requested():
                    raise
                # A CancelledError nobody asked for (a library's internal timeout racing
                # its own cancellation) must not end the sender silently.
                failures += 1
                log.error("outreach claim ended by a stray cancellation (%d in a row)", failures)
                await self._backoff.wait(failures)
                continue
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), delay)

    async def _refill(self, queue: _Queue) -> float:
        """Top the queue up with what is due; returns how long to wait unless woken."""
        await self._settle_leftovers()
        room = self._settings.sender_batch_size - len(queue)
        if room <= 0:
            self._more_due = True
            return self._poll_interval
        sweep = time.monotonic() >= self._next_sweep
        claims, full, next_due = await self._claim(datetime.now(UTC), limit=room, sweep=sweep)
        queue.put(claims, deadline=self._deadline())
        self._more_due = full
        if claims or full:
            return self._poll_interval
        wait = self._idle_poll
        if next_due is not None:
            wait = min(wait, (next_due - datetime.now(UTC)).total_seconds())
        if self._sweep_soon:
            wait = min(wait, self._next_sweep - time.monotonic())
        return max(0.0, wait)

    async def run_once(self) -> int:
        """One round: the journal's leftovers, the sweeps, one claim, its sends; returns
        how many it claimed."""
        with self._journaling():
            await self._settle_leftovers()
            claims, _, _ = await self._claim(
                datetime.now(UTC), limit=self._settings.sender_batch_size, sweep=True
            )
            queue = _Queue(min(self._settings.sender_concurrency, len(claims)))
            queue.put(claims, deadline=self._deadline())
            try:
                async with asyncio.TaskGroup() as workers:
                    for _ in range(queue.workers):
                        workers.create_task(self._worker(queue, until_empty=True))
            except BaseException:
                await _finish_even_if_cancelled(self._release(queue.drain()))
                raise
            finally:
                await _finish_even_if_cancelled(self._close_webhooks())
            await self._release(queue.drain())
            return len(claims)

    async def _settle_leftovers(self) -> None:
        """Record as sent what the journal holds and no worker is settling: messages
        accepted before a crash, or whose settling transaction failed. Never sent again."""
        journal = self._journal
        if journal is None:
            return
        left = journal.leftovers()
        for start in range(0, len(left), LEFTOVERS_PER_TRANSACTION):
            chunk = left[start : start + LEFTOVERS_PER_TRANSACTION]
            outcomes = [Outcome(e.claim(), reply=e.recorded_reply) for e in chunk]
            statuses = await self._settle(outcomes)
            for o in outcomes:
                journal.settled(o.claim)
            recorded = [i for i, status in statuses.items() if status is not None]
            if doubtful := [e.outreach_id for e in chunk if e.state == HANDED]:
                log.warning(
                    "send journal: %d messages were handed to the server in full but this "
                    "sender stopped before its reply; recorded as sent, not sent again",
                    len(doubtful),
                    extra={"ids": doubtful},
                )
            log.info(
                "send journal: %d accepted messages recorded as sent, %d recorded already "
                "(or taken over)",
                len(recorded),
                len(outcomes) - len(recorded),
                extra={"ids": recorded},
            )

    async def _worker(self, queue: _Queue, *, until_empty: bool) -> None:
        """Send from the queue over one SMTP session. For ``run`` (``until_empty`` false)
        it waits for claims for as long as the sender runs, and a failure (the database
        gone while settling) is logged: the claim stays ``sending`` and is put back after
        ``sending_timeout``. For ``run_once`` it stops when the queue is empty, and a
        failure ends it."""
        connection = self._mailer.connection()
        ahead = _Ahead(queue)
        unsettled: list[asyncio.Task[None]] = []
        failures = 0
        try:
            while True:
                item = ahead.take()
                if item is None and until_empty:
                    if (item := queue.get_nowait()) is None:
                        return
                elif item is None:
                    item = await queue.get()
                if self._more_due and len(queue) < self._settings.sender_concurrency:
                    self._wakeup.set()  # the queue runs low and more is due
                queue.busy += 1
                try:
                    await self._take(ahead, *item, connection, unsettled)
                    failures = 0
                    continue
                except Exception:
                    if until_empty:
                        raise
                    failures += 1
                    log.exception("outreach send failed (%d in a row)", failures)
                except asyncio.CancelledError:
                    if until_empty or _cancel_requested():
                        raise
                    failures += 1
                    log.error("outreach send ended by a stray cancellation (%d)", failures)
                finally:
                    queue.busy -= 1
                seen = self._backoff.commits  # a commit from here on: the database is back
                await self._before_backoff(queue, ahead, unsettled)
                await self._backoff.wait(failures, since=seen)
        finally:
            try:
                await _finish_even_if_cancelled(_settled(unsettled))
            finally:
                try:
                    if (held := ahead.take()) is not None:
                        await _finish_even_if_cancelled(self._release([held[0]]))
                finally:
                    await _finish_even_if_cancelled(connection.close())

    async def _before_backoff(
        self, queue: _Queue, ahead: _Ahead, unsettled: list[asyncio.Task[None]]
    ) -> None:
        """After a failure, before the worker waits: the claim it took early goes back to
        the head of the queue, for a worker that can send it now; and its other outcomes'
        commits are awaited here, so that an outage costs the worker one backoff, not one
        for each outcome that was awaiting its commit when the database went away."""
        if (held := ahead.take()) is not None:
            queue.put_back(held)
        if not unsettled:
            return
        results = await asyncio.shield(asyncio.gather(*unsettled, return_exceptions=True))
        unsettled.clear()
        if failed := [r for r in results if isinstance(r, BaseException)]:
            log.warning(
                "%d more outcomes of this worker were not committed (%s: %s); the claimer "
                "records them from the send journal (without one they are sent again after "
                "the sending timeout)",
                len(failed),
                type(failed[0]).__name__,
                failed[0],
            )

    async def _take(
        self,
        ahead: _Ahead,
        claim: Claim,
        deadline: float,
        connection: SmtpConnection,
        unsettled: list[asyncio.Task[None]],
    ) -> None:
        """Send ``claim`` and have it settled, or hand it back (and any others expired) if
        its deadline has passed; finished even if the sender is cancelled meanwhile."""
        now = time.monotonic()
        if now >= deadline:
            await _finish_even_if_cancelled(self._release([claim, *ahead.queue.expired(now)]))
        else:
            await _finish_even_if_cancelled(self._deliver(claim, connection, unsettled, ahead))

    async def _claim(
        self, now: datetime, *, limit: int, sweep: bool
    ) -> tuple[list[Claim], bool, datetime | None]:
        """Claim up to ``limit`` due messages (per channel), after the sweeps if ``sweep``;
        also whether a batch came back full and, with none claimed, when the next pending
        message comes due."""
        retried: Sequence[str] = ()
        failed: Sequence[str] = ()
        suppressed: list[str] = []
        next_due: datetime | None = None
        # Not notifying keeps us from waking ourselves; the outreach.failed/suppressed
        # events the sweeps enqueue go out on the relay's next poll.
        async with self._db.unit_of_work(notify=False) as session:
            if sweep:
                retried, failed, suppressed = await self._sweep(session, now)
            claims, full = await delivery.claim_batch(
                session,
                now=now,
                limit=limit,
                cap=self._cap,
                channels=self._channels,
                guard=self._guard,
            )
            if sweep:
                # The operators' stored templates, for the claims until the next sweep.
                rows = await config_repo.list_templates(session)
                self._stored = {
                    (r.name, r.language, r.channel): templates_store.snapshot(r) for r in rows
                }
            if not claims and not full:
                next_due = await repository.next_due(session, after=utc(now))
        self.claims_made += 1
        if sweep:
            self.sweeps_made += 1
            self._next_sweep = time.monotonic() + self._poll_interval
            self._sweep_soon = False
        _log_sweep(retried, failed, suppressed)
        return claims, full, next_due

    async def _sweep(
        self, session: AsyncSession, now: datetime
    ) -> tuple[Sequence[str], Sequence[str], list[str]]:
        """The sweeps, under the journeys' current settings (which the guard of the claims
        until the next sweep also follows); (retried, failed, suppressed) ids."""
        journeys = await journey_config.all_effective(session, self._settings)
        orders = {
            name: tuple(c for c in j.channels if c in self._channels)
            for name, j in journeys.items()
        }
        lateness = {n: j.max_lateness for n, j in journeys.items() if j.max_lateness}
        self._guard = Guard(
            max_lateness=self._policy.max_lateness,
            lateness=lateness,
            unusable={
                c: tuple(n for n, order in orders.items() if c not in order) for c in self._channels
            },
        )
        retried, failed = await delivery.release_stalled(session, now=now, policy=self._policy)
        suppressed = [
            *await sweeps.suppress_stale(session, now=now, policy=self._policy, lateness=lateness),
            *await sweeps.suppress_opted_out(
                session,
                now=now,
                orders=orders,
                configured={n: j.channels for n, j in journeys.items()},
            ),
            *await sweeps.suppress_unreachable(
                session, now=now, policy=self._policy, channels=self._channels
            ),
        ]
        return retried, failed, suppressed

    async def _deliver(
        self,
        claim: Claim,
        connection: SmtpConnection,
        unsettled: list[asyncio.Task[None]],
        ahead: _Ahead,
    ) -> None:
        """Send, start settling the outcome, and wait for the worker's oldest outcomes
        until at most ``UNSETTLED_PER_WORKER`` of them await their commit
        (``unsettled``): commits overlap the sends, and a worker sends on while a
        commit waits its turn at the write lock."""
        try:
            if (earlier := self._handed_earlier(claim)) is not None:
                outcome = Outcome(claim, reply=earlier)
            else:
                # Take the next claim early only if no wait for a commit comes between:
                # one waiting behind this worker's window is kept from the idle workers.
                room = sum(not t.done() for t in unsettled) < UNSETTLED_PER_WORKER
                look = room and self._settings.smtp_announce_next
                reply = await self._hand_over(claim, connection, ahead, look_ahead=look)
                outcome = Outcome(claim, reply=reply)
        except HandedInDoubt as doubt:
            outcome = Outcome(claim, reply=f"{IN_DOUBT_SESSION}: {doubt.reason}")
            log.warning(
                "outreach %s was handed to the server in full, then the session ended "
                "before its reply (%s): recorded as sent, not sent again",
                claim.outreach_id,
                doubt.reason,
                extra={"outreach_id": claim.outreach_id, "attempt": claim.attempt},
            )
        except DeliveryFailed as failure:
            outcome = Outcome(claim, failure=failure)
        if outcome.failure is None:
            reply = outcome.reply or ""
            self._journal_step(claim, lambda journal: journal.accepted(claim, reply))
        else:
            self._journal_step(claim, lambda journal: journal.failed(claim))
        unsettled.append(asyncio.create_task(self._record(outcome)))
        if (excess := len(unsettled) - UNSETTLED_PER_WORKER) > 0:
            oldest = unsettled[:excess]
            del unsettled[:excess]
            await _settled(oldest)

    def _handed_earlier(self, claim: Claim) -> str | None:
        """The reply to record if an earlier attempt at ``claim``'s message was handed
        over and is not recorded yet (``SendJournal.earlier``); None to send it."""
        entry = self._journal.earlier(claim.outreach_id) if self._journal else None
        if entry is None or entry.attempt >= claim.attempt:
            return None
        log.warning(
            "outreach %s was handed over at attempt %d, not recorded yet: recorded as sent "
            "at attempt %d, not sent again",
            claim.outreach_id,
            entry.attempt,
            claim.attempt,
            extra={"outreach_id": claim.outreach_id},
        )
        return entry.recorded_reply

    def _journal_step(self, claim: Claim, step: Callable[[SendJournal], None]) -> None:
        """Note a step of ``claim``'s delivery in the journal, if there is one; never raises
        (it runs inside the SMTP exchange, ``mailer.SmtpConnection.send``)."""
        if self._journal is None:
            return
        try:
            step(self._journal)
        except OSError:
            log.exception(
                "send journal: write failed; if this sender dies before recording the "
                "outcome, the message is sent again",
                extra={"outreach_id": claim.outreach_id, "path": str(self._journal.path)},
            )

    async def _record(self, outcome: Outcome) -> None:
        claim = outcome.claim
        try:
            status = await self._settler.settle(outcome)
        except Exception:
            if self._journal is not None:
                self._journal.not_settled(claim)  # the claimer records it (_settle_leftovers)
            raise
        if self._journal is not None:
            self._journal.settled(claim)
        _log_outcome(claim, status, outcome.failure.reason if outcome.failure else None)
        if status == PENDING:
            self._wakeup.set()  # a retry is due later: the claimer learns when

    async def _settle(self, outcomes: Sequence[Outcome]) -> dict[str, str | None]:
        """One transaction for a group of outcomes (``settling``); each claim's new status."""
        now = datetime.now(UTC)
        sent = [(o.claim, o.reply) for o in outcomes if o.reply is not None]
        statuses: dict[str, str | None] = {}
        async with self._db.unit_of_work() as session:
            settled = await delivery.record_sent_many(session, sent=sent, now=now)
            for claim, _ in sent:
                statuses[claim.outreach_id] = SENT if claim.outreach_id in settled else None
            for o in outcomes:
                if o.failure is not None:
                    statuses[o.claim.outreach_id] = await delivery.record_failure(
                        session,
                        claim=o.claim,
                        error=o.failure.reason,
                        permanent=o.failure.permanent,
                        now=now,
                        policy=self._policy,
                    )
        return statuses

    async def _hand_over(
        self, claim: Claim, connection: SmtpConnection, ahead: _Ahead, *, look_ahead: bool
    ) -> str:
        """Give the message to its channel's provider; returns the provider's reply.
        With ``look_ahead``, the worker's next e-mail claim is taken early."""
        if claim.channel != catalog.EMAIL:
            webhook = self._webhooks.get(claim.channel)
            if webhook is None:
                raise DeliveryFailed(f"no {claim.channel} provider configured", permanent=False)
            text = self._render(claim).text
            return await webhook.send(message_id=claim.outreach_id, to=claim.address, text=text)
        mail = ahead.mail_for(claim) or self._compose(claim)
        return await connection.send(
            mail,
            recipient=claim.address,
            on_handed=lambda: self._journal_step(claim, lambda journal: journal.handed(claim)),
            then=self._look_ahead(ahead) if look_ahead else None,
        )

    def _look_ahead(self, ahead: _Ahead) -> tuple[Mail, str] | None:
        """Take the queue's next claim for this worker if it is an e-mail to send; its
        message and address, for the session to announce (None: nothing to announce)."""
        item = ahead.queue.peek()
        if item is None or ahead.item is not None or ahead.queue.spare() <= 0:
            return None
        claim, deadline = item
        if claim.channel != catalog.EMAIL or deadline <= time.monotonic():
            return None
        if self._journal is not None and self._journal.earlier(claim.outreach_id) is not None:
            return None  # recorded, not sent (``_handed_earlier``)
        ahead.queue.get_nowait()
        try:
            mail = self._compose(claim)
        except DeliveryFailed:
            # Its own turn composes it again and records why it cannot go.
            ahead.hold(claim, deadline, None)
            return None
        ahead.hold(claim, deadline, mail)
        return mail, claim.address

    def _render(self, claim: Claim) -> RenderedMessage:
        try:
            return self._renderer.render(
                claim.template,
                language=claim.language,
                context={**claim.context, "name": claim.name},
                channel=claim.channel,
                stored=self._stored,
            )
        except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
            reason = f"cannot compose the message: {type(exc).__name__}: {exc}"
            raise DeliveryFailed(reason, permanent=True) from exc

    def _compose(self, claim: Claim) -> Mail:
        rendered = self._render(claim)
        try:
            return self._composer.compose(
                rendered,
                to_email=claim.address,
                to_name=claim.name,
                message_id=self._composer.message_id(claim.outreach_id),
                now=datetime.now(UTC),
            )
        except (TemplateError, ValueError, ArithmeticError, LookupError, TypeError) as exc:
            # Bad template or bad data: sending it again would fail the same way.
            reason = f"cannot compose the message: {type(exc).__name__}: {exc}"
            raise DeliveryFailed(reason, permanent=True) from exc

    async def _release(self, claims: Sequence[Claim]) -> None:
        if claims:
            async with self._db.unit_of_work(notify=False) as session:
                await delivery.release_unsent(session, claims=claims)


async def _settled(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Wait for each (settling) task; the first failure is raised once all have ended."""
    if tasks:
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result


def _cancel_requested() -> bool:
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


async def _finish_even_if_cancelled(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end even if the caller is cancelled meanwhile, then re-raise.

    On shutdown the message in hand is sent and its outcome recorded, rather than
    left in ``sending`` to be sent again after the timeout.
    """
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def _log_outcome(claim: Claim, status: str | None, reason: str | None = None) -> None:
    extra = {"outreach_id": claim.outreach_id, "attempt": claim.attempt, "status": status}
    if status is None:
        log.warning(
            "outcome not recorded: the claim was taken over (stalled too long)", extra=extra
        )
    elif status == "sent":
        log.info("outreach sent", extra=extra)
    else:
        log.warning("outreach not sent: %s", reason, extra=extra)


def _log_sweep(retried: Sequence[str], failed: Sequence[str], suppressed: Sequence[str]) -> None:
    if retried or failed:
        log.warning(
            "stalled sends put back", extra={"retried": list(retried), "failed": list(failed)}
        )
    if suppressed:
        log.info(
            "outreach suppressed (stale, opted out, or no address)", extra={"ids": list(suppressed)}
        )


def outreach_sender(runtime: Runtime) -> Coroutine[Any, Any, None]:
    """``extra_tasks`` entry: the sender for this service's runtime."""
    assert isinstance(runtime.settings, EngagementSettings)
    return Sender(db=runtime.db, settings=runtime.settings).run()
