"""Identities, resolve, merge and its undo.

A customer owns many identities (normalised ``(kind, value)``, unique). ``resolve``
returns the one customer a set of identities belongs to, creating it if none
does and merging when they belong to several (the oldest survives).

Contact hints on purchases add the hint's e-mail and phone to the purchase's
customer when nobody owns them yet, but never merge: a till may type someone
else's details (a gift, a family member), so a hint matching another customer's
identity is left with its owner.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.profile import repository
from services.profile.models import Customer, Merge
from services.profile.service import batching, merging, segments
from services.profile.service.customers import announce, set_contact
from services.profile.service.normalise import IdentityKind, InvalidIdentity, normalise
from shared.events.common import ContactHint
from shared.events.profile import CustomerRegistered, CustomerUpdated
from shared.http import AppError

MAX_IDENTITIES = 20


class IdentityRejected(AppError):
    status_code = 422
    code = "invalid_identity"


@dataclass(frozen=True, slots=True)
class IdentityIn:
    kind: IdentityKind
    value: str


@dataclass(frozen=True, slots=True)
class Resolved:
    customer: Customer
    created: bool
    merges: list[Merge]


def normalised(given: Sequence[IdentityIn], region: str) -> list[tuple[str, str]]:
    if not given:
        raise IdentityRejected("give at least one identity")
    if len(given) > MAX_IDENTITIES:
        raise IdentityRejected(f"at most {MAX_IDENTITIES} identities per request")
    pairs: list[tuple[str, str]] = []
    for index, identity in enumerate(given):
        try:
            pair = (identity.kind, normalise(identity.kind, identity.value, region=region))
        except InvalidIdentity as exc:
            raise IdentityRejected(f"identities.{index}: {exc}") from exc
        if pair not in pairs:
            pairs.append(pair)
    return pairs


async def resolve(
    session: AsyncSession, *, identities: Sequence[IdentityIn], region: str, now: datetime
) -> Resolved:
    """The customer these identities belong to; created if new, merged if several."""
    pairs = normalised(identities, region)
    owners = await repository.live_owners(session, pairs)
    created = not owners
    if created:
        survivor = await _register(session, now)
    else:
        survivor = owners[0]
    merges = [await merging.merge(session, survivor, other, now=now) for other in owners[1:]]
    await _claim(session, survivor, pairs, now)
    if await _fill_contact(session, survivor, pairs) and not created:
        await announce(session, CustomerUpdated, survivor, event_id=str(uuid.uuid4()), at=now)
    elif created:
        await announce(session, CustomerRegistered, survivor, event_id=str(uuid.uuid4()), at=now)
    await segments.reevaluate(session, survivor, now=now)
    return Resolved(survivor, created, merges)


async def _register(session: AsyncSession, now: datetime) -> Customer:
    customer, _ = await repository.get_customer_for_update(session, uuid.uuid4().hex)
    customer.created_at = now
    return customer


async def _claim(
    session: AsyncSession, customer: Customer, pairs: list[tuple[str, str]], now: datetime
) -> None:
    for kind, value in pairs:
        await repository.claim_identity(session, customer.customer_id, kind, value, now)


async def _fill_contact(
    session: AsyncSession, customer: Customer, pairs: list[tuple[str, str]]
) -> bool:
    """Fill an unknown e-mail or phone from the identities just resolved."""
    changed = False
    for kind, value in pairs:
        if kind in ("email", "phone") and getattr(customer, kind) is None:
            set_contact(customer, kind, value)
            changed = True
    return changed


async def claim_hint(
    session: AsyncSession,
    customer: Customer,
    hint: ContactHint | None,
    *,
    at: datetime,
    region: str,
) -> None:
    """Add a purchase hint's e-mail and phone as identities nobody owns yet (no merge)."""
    if hint is None or customer.erased_at is not None:
        return
    for kind, value in (("email", hint.email), ("phone", hint.phone)):
        if value is None:
            continue
        try:
            folded = normalise(kind, value, region=region)  # type: ignore[arg-type]
        except InvalidIdentity:
            continue  # a hint is advisory: an unusable phone is not an identity
        await batching.claim_identity(session, customer.customer_id, kind, folded, at)


async def undo_merge(session: AsyncSession, *, merge_id: str, now: datetime | None = None) -> Merge:
    return await merging.undo(session, merge_id=merge_id, now=now or datetime.now(UTC))
