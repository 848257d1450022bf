"""Timer handlers of the churn/CLV part (scheduled re-scoring, refits)."""

from __future__ import annotations

from collections.abc import Mapping

from shared.config import ServiceSettings
from shared.timers import TimerHandler


def timer_handlers(_settings: ServiceSettings) -> Mapping[str, TimerHandler]:
    return {}
