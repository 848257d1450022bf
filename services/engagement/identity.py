"""Profile's identity events: ``customer.merged``, ``customer.unmerged`` and ``customer.erased``.

* Merged: the merged customer's messages, conversions, consents and latest basket
  move to the survivor (``subject``), so the history, the frequency cap and the
  exits see one person. The survivor's contact details win; the merged customer's
  are adopted only if the survivor had none. Per channel the strictest consent
  wins (an opt-out on either side stays). Events that still name the merged id
  afterwards act for the survivor (``repository.identity.MERGES``).
* Erased: pending messages are cancelled (``outreach.suppressed``, reason
  ``customer erased``), then contact details, consents and the latest basket are
  deleted and every message row is stripped of its context, recipient and
  provider reply (error texts that may quote an address go too). The rows' bare
  journey, channel, status and times remain for statistics.
* Unmerged: the restored id's later events are its own again, and its contact details
  and consents are those profile sends with the undo; the messages, conversions and
  basket moved at the merge stay with the survivor (engagement cannot tell which were
  whose). The churn part gives back its purchase history (``churn.service.unmerge``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import service
from services.engagement.notices import publish_suppressed
from services.engagement.repository import identity as repo
from shared.events.profile import CustomerErased, CustomerMerged, CustomerUnmerged

ERASED = "customer erased"


async def merge(session: AsyncSession, event: CustomerMerged) -> None:
    old, new = event.data.merged_id, event.subject
    if old == new:
        return
    await repo.MERGES.record(session, old=old, new=new, at=event.time)
    await repo.rekey_history(session, old=old, new=new)
    await repo.merge_contact(session, old=old, new=new)
    await repo.merge_consents(session, old=old, new=new)
    await repo.merge_last_basket(session, old=old, new=new)


async def unmerge(session: AsyncSession, event: CustomerUnmerged) -> None:
    """The restored id speaks for itself again, with the contact details and consents
    profile gave it back (they were folded into the survivor's at the merge)."""
    restored = event.data.restored_id
    await repo.MERGES.forget(session, restored)
    if event.data.restored is not None:
        await service.record_details(
            session, customer_id=restored, details=event.data.restored, at=event.time
        )


async def erase(session: AsyncSession, event: CustomerErased, *, now: datetime) -> int:
    cancelled = await repo.cancel_pending(session, event.subject, ERASED)
    for outreach_id in cancelled:
        await publish_suppressed(session, outreach_id, now=now)
    await repo.erase(session, event.subject)
    return len(cancelled)
