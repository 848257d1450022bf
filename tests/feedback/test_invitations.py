"""After-purchase invitations: the active survey, survey fatigue, the signed link."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from services.feedback.config import FeedbackSettings
from services.feedback.service import tokens
from shared.db import Database
from tests.feedback.conftest import T0
from tests.feedback.support import create_survey, invite, token_of

pytestmark = pytest.mark.db


async def test_a_purchase_invites_to_the_active_after_purchase_survey(
    db: Database, settings: FeedbackSettings
) -> None:
    await create_survey(db)
    invitation = await invite(db, settings, "c-1", T0)
    assert invitation is not None
    assert (invitation.subject, invitation.data.survey_id, invitation.data.reason) == (
        "c-1",
        "after-buy",
        "after_purchase",
    )
    assert invitation.data.url.startswith("https://answer.test/s?token=")
    assert invitation.data.expires_at == T0 + timedelta(days=settings.invitation_ttl_days)
    claims = tokens.verify(token_of(invitation), secret=b"test-survey-secret", now=T0)
    assert (claims.customer_id, claims.survey_id, claims.version) == ("c-1", "after-buy", 1)


async def test_no_active_survey_means_no_invitation(
    db: Database, settings: FeedbackSettings
) -> None:
    await create_survey(db, audience="manual")
    assert await invite(db, settings, "c-1", T0) is None


async def test_a_customer_is_not_invited_again_within_the_fatigue_window(
    db: Database, settings: FeedbackSettings
) -> None:
    await create_survey(db)
    assert await invite(db, settings, "c-1", T0) is not None
    assert await invite(db, settings, "c-1", T0 + timedelta(days=29)) is None
    assert await invite(db, settings, "c-2", T0 + timedelta(days=29)) is not None
    assert await invite(db, settings, "c-1", T0 + timedelta(days=31)) is not None


async def test_event_times_with_an_offset_are_compared_in_utc(
    db: Database, settings: FeedbackSettings
) -> None:
    await create_survey(db)
    hanoi = timezone(timedelta(hours=7))
    first = await invite(db, settings, "c-1", T0.astimezone(hanoi))
    assert first is not None
    assert first.data.expires_at == T0 + timedelta(days=settings.invitation_ttl_days)
    assert await invite(db, settings, "c-1", T0 + timedelta(days=30, hours=1)) is not None
