"""An event handed back after the inbox forgot it (``shared.retention``): what loyalty's
business keys still catch (docs/operations.md, "Inbox retention")."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc

from shared.consumer import is_transient
from tests.loyalty.support import Loyalty, interaction, purchase, refund

pytestmark = pytest.mark.db


async def test_a_purchase_and_a_refund_replayed_after_the_retention_count_once(
    loyalty: Loyalty,
) -> None:
    bought = purchase("c-1", "100.00", purchase_id="p-1")
    returned = refund("c-1", "p-1", "40.00", refund_id="r-1")
    await loyalty.handle(bought, returned)
    balance = await loyalty.balance("c-1")
    assert balance == 60
    await loyalty.handle(bought, returned)  # the same events, no inbox row any more
    assert await loyalty.balance("c-1") == balance
    await loyalty.check_invariants()


async def test_an_interaction_replayed_after_the_retention_is_refused_not_awarded_twice(
    loyalty: Loyalty,
) -> None:
    """Its ledger entry's key is unique: the replay fails for good (the runner dead-letters
    it after three attempts) instead of earning again."""
    await loyalty.publish_rules(interaction_points={"review": 15})
    review = interaction("c-1", "review")
    await loyalty.handle(review)
    with pytest.raises(sa_exc.IntegrityError) as failed:
        await loyalty.handle(review)
    assert not is_transient(failed.value)
    assert await loyalty.balance("c-1") == 15
    await loyalty.check_invariants()
