"""Merge and erasure, honoured like every service."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback import repository
from shared.events.profile import CustomerErased, CustomerMerged


async def merge_customer(session: AsyncSession, *, event: CustomerMerged) -> None:
    """The merged id's invitations, responses and cases now belong to the survivor."""
    await repository.rekey_customer(session, event.data.merged_id, event.subject)


async def erase_customer(session: AsyncSession, *, event: CustomerErased) -> None:
    """Links, verbatims and case texts go; anonymised scores stay for analytics."""
    await repository.erase_customer(session, event.subject)
