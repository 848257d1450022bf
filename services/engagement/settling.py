"""Group commit of send outcomes: the sender's workers settle together, not one by one.

A worker that has handed a message over (or failed to) starts settling its
outcome and sends its next messages meanwhile; with more than
``sender.UNSETTLED_PER_WORKER`` outcomes awaiting their commit, it waits for the
oldest. So a crash can leave no more than that many unsettled messages per worker,
plus the one being sent. Outcomes which
arrive while a transaction is being written wait for the next one, and then go in
together: one fenced ``UPDATE`` for the sent ones and one outbox insert, instead of
a transaction (and on SQLite, a turn at the single write lock) per message. The
first waiting outcome starts the writer; if a transaction fails, every outcome in
it fails with the same error, as a transaction of its own would have.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from services.engagement.delivery import Claim
from services.engagement.mailer import DeliveryFailed


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one claim: the provider's reply, or why it was not accepted."""

    claim: Claim
    reply: str | None = None
    failure: DeliveryFailed | None = None


# Writes a group in one transaction; returns each claim's new status (None: claim lost).
Write = Callable[[Sequence[Outcome]], Awaitable[dict[str, str | None]]]


class GroupCommit:
    def __init__(self, write: Write) -> None:
        self._write = write
        self._waiting: list[tuple[Outcome, asyncio.Future[str | None]]] = []
        self._writer: asyncio.Task[None] | None = None
        # sizes of the latest groups written (for tests and benchmarks)
        self.groups: deque[int] = deque(maxlen=1000)

    async def settle(self, outcome: Outcome) -> str | None:
        """Commit ``outcome`` (with whatever else is waiting); returns its new status."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((outcome, future))
        if self._writer is None or self._writer.done():
            # Its own task: a worker cancelled while waiting must not stop the others' commit.
            self._writer = asyncio.create_task(self._write_all())
        return await asyncio.shield(future)

    async def _write_all(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            self.groups.append(len(group))
            try:
                statuses = await self._write([o for o, _ in group])
            except BaseException as exc:
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for outcome, future in group:
                if not future.done():
                    future.set_result(statuses.get(outcome.claim.outreach_id))
