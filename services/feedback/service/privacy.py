"""Merge, its undo and erasure, honoured like every service."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback import repository
from shared.events.profile import CustomerErased, CustomerMerged, CustomerUnmerged


async def merge_customer(session: AsyncSession, *, event: CustomerMerged) -> None:
    """The merged id's invitations, responses and cases now belong to the survivor, and
    its later events act for the survivor (``repository.MERGES``)."""
    old, new = event.data.merged_id, event.subject
    if old == new:
        return
    await repository.MERGES.record(session, old=old, new=new, at=event.time)
    await repository.rekey_customer(session, old, new)


async def unmerge_customer(session: AsyncSession, *, event: CustomerUnmerged) -> None:
    """The restored id's later events are its own again; what moved stays moved."""
    await repository.MERGES.forget(session, event.data.restored_id)


async def erase_customer(session: AsyncSession, *, event: CustomerErased) -> None:
    """Links, verbatims and case texts go; anonymised scores stay for analytics."""
    await repository.MERGES.forget_everywhere(session, event.subject)
    await repository.erase_customer(session, event.subject)
