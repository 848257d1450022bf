"""Redemption codes: used at the till, or expired unused with the points given back once.

With ``redemption_code_days`` set, each redemption gets a durable timer at its
``expires_at``. When it fires and the code is still ``issued``, the redemption turns
``expired`` and its points go back exactly as a cancellation would put them
(``cancel`` entry keyed by the redemption, ``redemption.cancelled`` with reason
``code_expired``). The member lock serialises this with using or cancelling the
code, so the points come back at most once and never for a used code.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import repository
from services.loyalty.config import LoyaltySettings
from services.loyalty.models import Redemption
from services.loyalty.service.common import maybe_utc, utc
from services.loyalty.service.errors import RedemptionClosed, RedemptionNotFound
from services.loyalty.service.ledger import Why
from services.loyalty.service.redemption import give_back, member_locked
from shared.timers import Timer


async def use(
    session: AsyncSession, *, customer_id: str, redemption_id: str, now: datetime
) -> Redemption:
    """Mark the code used at the till; using it twice is harmless."""
    member = await member_locked(session, customer_id)
    redemption = await repository.get_redemption(session, redemption_id)
    if redemption is None or redemption.customer_id != member.customer_id:
        raise RedemptionNotFound(f"no redemption {redemption_id!r} for {customer_id!r}")
    if redemption.status == "used":
        return redemption
    expires = maybe_utc(redemption.expires_at)
    if redemption.status == "expired" or (expires is not None and now >= expires):
        when = f" at {expires.isoformat()}" if expires is not None else ""
        raise RedemptionClosed(
            f"the code of redemption {redemption.id!r} expired{when}; "
            "its points go back to the member"
        )
    if redemption.status != "issued":
        raise RedemptionClosed(f"redemption {redemption.id!r} is {redemption.status}")
    redemption.status, redemption.used_at = "used", now
    return redemption


async def expire_code(session: AsyncSession, timer: Timer, *, settings: LoyaltySettings) -> None:
    redemption = await repository.get_redemption(session, timer.payload["redemption_id"])
    if redemption is None or redemption.status != "issued":
        return
    member = await repository.lock_member(session, redemption.customer_id, create=False)
    redemption = await repository.get_redemption(session, redemption.id)  # re-read under lock
    if redemption is None or redemption.status != "issued":
        return
    why = Why(
        reason=f"code of redemption {redemption.id} expired unused",
        key=f"code-expired:{redemption.id}",
        rule_id=f"reward:{redemption.reward_id}",
        reference=redemption.id,
    )
    due = utc(timer.due_at)
    await give_back(
        session, member, redemption, why=why, now=due, settings=settings, status="expired"
    )
