"""The outreach sender: the background task that turns due messages into e-mails and
webhook calls (SMS, push, chat apps).

Each round, in one short transaction: put back claims that stalled, route or
suppress messages by consent, staleness and reachability (under each journey's
current channel order and lateness), and claim a batch of due messages (status
``sending``; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas take disjoint
rows), with the operators' stored templates for them. Then, outside any
transaction, up to ``sender_concurrency`` workers render and send the batch,
each over one SMTP session it keeps open, and settle each outcome before
taking the next message (``sent`` plus an ``outreach.sent`` event in the outbox,
or a retry with backoff, or ``failed``); outcomes that are ready together share
one transaction (group commit, ``settling``). The sender wakes when a transaction
planned a message or changed a contact (``OUTREACH_FLAG``), else every poll.

Delivery is at-least-once, never at-most-once. Between the SMTP server's "250
accepted" and the commit that records it, a crash (or a hang past
``sending_timeout_seconds``) leaves the row in ``sending``, and nothing can tell
whether the server got the message. We then send again: a customer who gets a
thank-you twice is a small embarrassment; a customer who never gets the
survey or the service-recovery offer is the failure this product exists to
prevent. Every copy carries the same ``Message-ID`` (derived from the outreach
id), so mail systems that de-duplicate on it drop the second; a sender whose
claim was taken over can no longer settle the row (``attempts`` fences it), so
the history and the ``outreach.sent`` event still say "sent" once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from jinja2 import TemplateError

from services.engagement import catalog, delivery, journey_config, sweeps, templates_store
from services.engagement.composing import Composer, Mail
from services.engagement.config import EngagementSettings
from services.engagement.delivery import Claim, FrequencyCap, RetryPolicy
from services.engagement.mailer import DeliveryFailed, SmtpConnection, SmtpMailer
from services.engagement.models import SENT
from services.engagement.rendering import RenderedMessage, Renderer, Stored
from services.engagement.repository import config as config_repo
from services.engagement.service import OUTREACH_FLAG
from services.engagement.settling import GroupCommit, Outcome
from services.engagement.webhooks import WebhookChannel, webhook_channels
from shared.app import Runtime
from shared.db import Database

log = logging.getLogger(__name__)

T = TypeVar("T")


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
        db.on_commit(self._wakeup.set, when=OUTREACH_FLAG)

    async def run(self) -> None:
        """Rounds until cancelled: at once after a local commit, else every poll interval."""
        failures = 0
        while True:
            self._wakeup.clear()
            try:
                handled = await self.run_once()
                failures = 0
            except Exception:
                failures += 1
                log.exception("outreach round failed (%d in a row)", failures)
                await asyncio.sleep(min(30.0, self._poll_interval * 2**failures))
                continue
            except asyncio.CancelledError:
                if _cancel_requested():
                    raise
                # A CancelledError nobody asked for (a library's internal timeout racing
                # its own cancellation) must not end the sender silently.
                failures += 1
                log.error("outreach round ended by a stray cancellation (%d in a row)", failures)
                await asyncio.sleep(min(30.0, self._poll_interval * 2**failures))
                continue
            if handled < self._settings.sender_batch_size:
                await self._wait()

    @property
    def _poll_interval(self) -> float:
        return self._settings.sender_poll_interval_ms / 1000

    async def _wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)

    async def run_once(self) -> int:
        """One round; returns how many messages it claimed."""
        claims = await self._claim(datetime.now(UTC))
        queue = deque(claims)
        # A claim still queued this late could be taken over as stalled while we send it:
        # hand it back instead (``sending_timeout`` outlasts one SMTP exchange).
        s = self._settings
        deadline = time.monotonic() + s.sending_timeout_seconds - s.smtp_timeout_seconds
        try:
            async with asyncio.TaskGroup() as workers:
                for _ in range(min(s.sender_concurrency, len(claims))):
                    workers.create_task(self._work(queue, deadline))
        except BaseException:
            await _finish_even_if_cancelled(self._release(list(queue)))
            raise
        await self._release(list(queue))
        return len(claims)

    async def _work(self, queue: deque[Claim], deadline: float) -> None:
        """Send claims from the shared queue over one SMTP session, until none are left
        or the round's ``deadline`` (monotonic) has passed."""
        connection = self._mailer.connection()
        try:
            while queue and time.monotonic() < deadline:
                claim = queue.popleft()
                await _finish_even_if_cancelled(self._deliver(claim, connection))
        finally:
            await _finish_even_if_cancelled(connection.close())

    async def _claim(self, now: datetime) -> list[Claim]:
        # Not notifying keeps us from waking ourselves; the outreach.failed/suppressed
        # events the sweeps enqueue go out on the relay's next poll.
        async with self._db.unit_of_work(notify=False) as session:
            journeys = await journey_config.all_effective(session, self._settings)
            orders = {
                name: tuple(c for c in j.channels if c in self._channels)
                for name, j in journeys.items()
            }
            lateness = {n: j.max_lateness for n, j in journeys.items() if j.max_lateness}
            retried, failed = await delivery.release_stalled(session, now=now, policy=self._policy)
            suppressed = [
                *await sweeps.suppress_stale(
                    session, now=now, policy=self._policy, lateness=lateness
                ),
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
            claims = await delivery.claim_due(
                session,
                now=now,
                limit=self._settings.sender_batch_size,
                cap=self._cap,
                channels=self._channels,
            )
            if claims:
                names = sorted({c.template for c in claims})
                rows = await config_repo.list_templates(session, names=names)
                self._stored = {
                    (r.name, r.language, r.channel): templates_store.snapshot(r) for r in rows
                }
        _log_sweep(retried, failed, suppressed)
        return claims

    async def _deliver(self, claim: Claim, connection: SmtpConnection) -> None:
        try:
            outcome = Outcome(claim, reply=await self._hand_over(claim, connection))
        except DeliveryFailed as failure:
            outcome = Outcome(claim, failure=failure)
        status = await self._settler.settle(outcome)
        _log_outcome(claim, status, outcome.failure.reason if outcome.failure else None)

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

    async def _hand_over(self, claim: Claim, connection: SmtpConnection) -> str:
        """Give the message to its channel's provider; returns the provider's reply."""
        if claim.channel != catalog.EMAIL:
            webhook = self._webhooks.get(claim.channel)
            if webhook is None:
                raise DeliveryFailed(f"no {claim.channel} provider configured", permanent=False)
            text = self._render(claim).text
            return await webhook.send(message_id=claim.outreach_id, to=claim.address, text=text)
        return await connection.send(self._compose(claim), recipient=claim.address)

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
