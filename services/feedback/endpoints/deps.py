"""Dependencies the feedback routes share."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends

from services.feedback.config import FeedbackSettings
from shared.app import RuntimeDep
from shared.auth import Forbidden, Principal, current_principal
from shared.timers import wall_clock


def get_settings(runtime: RuntimeDep) -> FeedbackSettings:
    settings = runtime.settings
    if not isinstance(settings, FeedbackSettings):
        raise TypeError("the feedback service needs FeedbackSettings")
    return settings


async def require_report_reader(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    """Analytics are open to ``feedback:read`` or ``reports:read``."""
    if not (principal.allows("feedback:read") or principal.allows("reports:read")):
        raise Forbidden("this credential lacks the 'feedback:read' or 'reports:read' scope")
    return principal


SettingsDep = Annotated[FeedbackSettings, Depends(get_settings)]
NowDep = Annotated[datetime, Depends(wall_clock)]
