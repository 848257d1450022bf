"""Event handlers of the churn/CLV part; merged into engagement's handler map."""

from __future__ import annotations

from shared.config import ServiceSettings
from shared.consumer import Handlers

INPUT_TOPICS: tuple[str, ...] = ()


def handlers(_settings: ServiceSettings) -> Handlers:
    return {}
