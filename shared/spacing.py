"""When the next batch of a steady stream may start: consumer batches and relay batches."""

from __future__ import annotations

import time
from collections.abc import Callable


class Spacing:
    """Keeps the batches of a steady stream at least ``seconds`` apart.

    The stream is steady once ``STREAM`` batches in a row have each started within
    twice the spacing of the one before; while it is, the next batch waits until
    ``seconds`` after the last one began, and what arrives meanwhile joins it. After a
    quiet spell (or with a spacing of 0) nothing waits: a lone event, and the few that
    follow it straight after (a purchase, then what other services publish about it),
    go at once.
    """

    STREAM = 2

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._last = float("-inf")
        self._close = 0  # batches in a row that started soon after the one before

    def wait(self) -> float:
        """Seconds to wait before the next batch starts (0: start now)."""
        if self._close < self.STREAM:
            return 0.0
        return max(0.0, self._last + self.seconds - self._clock())

    def started(self, at: float | None = None) -> None:
        """A batch starts now, or started at ``at`` (a reading of the clock)."""
        now = self._clock() if at is None else at
        self._close = self._close + 1 if now - self._last < 2 * self.seconds else 0
        self._last = now
