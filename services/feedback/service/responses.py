"""Responses from every channel: the token form, staff entry and Kafka events.

Every path resolves to one ``dedupe_key``: the invitation when there is one (so the
same answer arriving by REST and by Kafka is one response), otherwise the source's
own idempotency key. A repeat with the same answers changes nothing; a repeat with
different answers updates the response in place (one response, the latest answer
by event time: an answer older than the stored one is ignored).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback import repository
from services.feedback.config import FeedbackSettings
from services.feedback.models import Invitation, Response
from services.feedback.repository import reports
from services.feedback.repository.reports import ScoreCounts
from services.feedback.schemas import ResponseSubmit, StaffResponseCreate
from services.feedback.service import SOURCE, answers, as_utc, complaints, surveys, tokens
from services.feedback.service.errors import InvalidToken, InvitationNotFound, WrongCustomer
from shared import outbox
from shared.events import derived_id
from shared.events.feedback import ResponseRecorded, ResponseRecordedData
from shared.events.interactions import FeedbackSubmitted


@dataclass(frozen=True)
class Origin:
    """Where an answer came from and what it rates."""

    key: str
    customer_id: str
    survey_id: str
    version: int
    source: str
    channel: str
    store_id: str | None = None
    product_category: str | None = None
    language: str | None = None
    submitted_by: str | None = None
    invitation_id: str | None = None
    case_id: str | None = None


async def submit_with_token(
    session: AsyncSession, *, body: ResponseSubmit, settings: FeedbackSettings, now: datetime
) -> Response:
    secret = settings.survey_token_secret.get_secret_value().encode()
    claims = tokens.verify(body.token, secret=secret, now=now)
    if body.customer_id is not None and body.customer_id != claims.customer_id:
        raise WrongCustomer("this survey link was issued to another customer")
    invitation = await repository.get_invitation(session, claims.invitation_id)
    if invitation is None:
        raise InvitationNotFound("this survey invitation no longer exists")
    if (invitation.signed_customer_id, invitation.survey_id, invitation.survey_version) != (
        claims.customer_id,
        claims.survey_id,
        claims.version,
    ):
        raise InvalidToken("the survey token does not match its invitation")
    origin = _from_invitation(invitation, source="token", channel=body.channel)
    return await record(
        session, origin, body.answers, at=now, settings=settings, lang=body.language
    )


async def submit_by_staff(
    session: AsyncSession,
    *,
    body: StaffResponseCreate,
    staff: str,
    settings: FeedbackSettings,
    now: datetime,
) -> Response:
    fallback = f"staff:{body.idempotency_key or uuid.uuid4()}"
    origin = await _resolve(
        session, body.customer_id, body.survey_id, now, fallback, "staff", body.channel
    )
    origin = _with(origin, store_id=body.store_id, submitted_by=staff)
    return await record(
        session, origin, body.answers, at=now, settings=settings, lang=body.language
    )


async def record_submitted(
    session: AsyncSession, *, event: FeedbackSubmitted, settings: FeedbackSettings
) -> Response:
    data, at = event.data, as_utc(event.time)
    fallback = f"event:{event.source}:{event.id}"
    origin = await _resolve(
        session, event.subject, data.survey_id, at, fallback, "event", data.channel
    )
    origin = _with(origin, store_id=data.store_id, submitted_by=data.submitted_by)
    return await record(session, origin, data.answers, at=at, settings=settings)


async def record(
    session: AsyncSession,
    origin: Origin,
    given: dict[str, int | str | list[str]],
    *,
    at: datetime,
    settings: FeedbackSettings,
    lang: str | None = None,
) -> Response:
    version = await surveys.get_version(session, survey_id=origin.survey_id, version=origin.version)
    scored = answers.score(version.questions, dict(given))
    response, changed = await _store(session, origin, scored, at, lang)
    if not changed:
        return response
    await outbox.enqueue(session, _recorded(response, origin, scored, at))
    if scored.category == "detractor":
        await complaints.open_for_detractor(session, response=response, at=at, settings=settings)
    return response


async def _store(
    session: AsyncSession, origin: Origin, scored: answers.Scored, at: datetime, lang: str | None
) -> tuple[Response, bool]:
    """Insert or update the response under ``origin.key``: (the row, whether it changed).

    The stored row is locked before it is compared, so concurrent deliveries of one
    answer (REST and Kafka at once) count once, in the response and in its day.
    """
    existing = await repository.get_response_by_key(session, origin.key, for_update=True)
    if existing is None:
        row = _row(derived_id("response", origin.key), origin, scored, at, lang)
        if await repository.insert_response(session, row):
            return await _counted(session, str(row["id"]), ScoreCounts()), True
        # another transaction stored it first: carry on from what it stored
        existing = await repository.get_response_by_key(session, origin.key, for_update=True)
        assert existing is not None
    if _keeps(existing, scored, at):
        return existing, False
    before = ScoreCounts.of(existing.nps_score, existing.csat_score)
    await repository.upsert_response(session, _row(existing.id, origin, scored, at, lang))
    return await _counted(session, existing.id, before), True


async def _counted(session: AsyncSession, response_id: str, before: ScoreCounts) -> Response:
    """The row as written, with the daily roll-up (``response_days``) moved in step."""
    response = await session.get(Response, response_id, populate_existing=True)
    assert response is not None
    after = ScoreCounts.of(response.nps_score, response.csat_score)
    await reports.shift_day(
        session,
        day=as_utc(response.submitted_at).date(),
        shard=reports.shard_of(response.id),
        delta=after.minus(before),
    )
    return response


def _keeps(existing: Response, scored: answers.Scored, at: datetime) -> bool:
    """The stored answer stands if it is the same, or newer than this one (event time)."""
    return existing.answers == scored.answers or as_utc(existing.updated_at) > at


async def _resolve(
    session: AsyncSession,
    customer_id: str,
    survey_id: str,
    at: datetime,
    fallback_key: str,
    source: str,
    channel: str,
) -> Origin:
    invitation = await repository.get_open_invitation(session, customer_id, survey_id, at)
    if invitation is not None:
        return _from_invitation(invitation, source=source, channel=channel)
    survey = await surveys.get_survey(session, survey_id=survey_id)
    return Origin(fallback_key, customer_id, survey.id, survey.version, source, channel)


def _from_invitation(invitation: Invitation, *, source: str, channel: str) -> Origin:
    return Origin(
        key=f"invitation:{invitation.id}",
        customer_id=invitation.customer_id,
        survey_id=invitation.survey_id,
        version=invitation.survey_version,
        source=source,
        channel=invitation.channel or channel,
        store_id=invitation.store_id,
        product_category=invitation.product_category,
        invitation_id=invitation.id,
        case_id=invitation.case_id,
    )


def _with(origin: Origin, *, store_id: str | None, submitted_by: str | None) -> Origin:
    return Origin(
        **{
            **origin.__dict__,
            "store_id": origin.store_id or store_id,
            "submitted_by": submitted_by,
        }
    )


def _row(
    response_id: str, origin: Origin, scored: answers.Scored, at: datetime, lang: str | None
) -> dict[str, object]:
    return {
        "id": response_id,
        "dedupe_key": origin.key,
        "invitation_id": origin.invitation_id,
        "survey_id": origin.survey_id,
        "survey_version": origin.version,
        "customer_id": origin.customer_id,
        "source": origin.source,
        "channel": origin.channel,
        "store_id": origin.store_id,
        "product_category": origin.product_category,
        "language": lang or origin.language,
        "nps_score": scored.nps_score,
        "csat_score": scored.csat_score,
        "category": scored.category,
        "answers": scored.answers,
        "comment": scored.comment,
        "submitted_by": origin.submitted_by,
        "submitted_at": at,
        "updated_at": at,
    }


def _recorded(
    response: Response, origin: Origin, scored: answers.Scored, at: datetime
) -> ResponseRecorded:
    digest = hashlib.sha256(json.dumps(scored.answers, sort_keys=True).encode()).hexdigest()
    return ResponseRecorded.create(
        id=derived_id("response.recorded", response.id, digest),
        subject=origin.customer_id,
        source=SOURCE,
        time=at,
        data=ResponseRecordedData(
            response_id=response.id,
            survey_id=response.survey_id,
            kind=scored.kind,
            score=scored.nps_score if scored.nps_score is not None else scored.csat_score,
            category=scored.category,
            channel=response.channel,
            store_id=response.store_id,
            comment=scored.comment[:2000] if scored.comment else None,
            case_id=origin.case_id,
        ),
    )
