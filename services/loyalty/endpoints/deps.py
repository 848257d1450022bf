"""Dependencies the loyalty routes share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends

from services.loyalty.config import LoyaltySettings
from shared.app import RuntimeDep
from shared.auth import Forbidden, Principal, current_principal


async def get_settings(runtime: RuntimeDep) -> LoyaltySettings:
    """A coroutine, so FastAPI calls it on the event loop rather than in its thread pool."""
    assert isinstance(runtime.settings, LoyaltySettings)
    return runtime.settings


SettingsDep = Annotated[LoyaltySettings, Depends(get_settings)]


def require_any(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """Let the call through with any one of ``scopes`` (or ``admin``)."""

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not any(principal.allows(s) for s in scopes):
            raise Forbidden(f"this credential needs one of the scopes {', '.join(scopes)}")
        return principal

    return check
