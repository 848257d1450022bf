"""Service recovery end to end: a detractor's answer in feedback becomes an apology to the
customer and an alert to support; resolving the complaint brings the follow-up survey."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Stack
from tests.helpers import produce, purchase, wait_until
from tools.smtp_sink import ReceivedMail

pytestmark = pytest.mark.e2e

SUPPORT = "support@keepwell.local"  # engagement's default support_email
# Follow up as soon as the case is resolved (feedback's default waits three days).
ENV = {"FEEDBACK_FOLLOW_UP_DELAY_HOURS": "0"}


@pytest.fixture(scope="module", autouse=True)
def _prompt_follow_up() -> Iterator[None]:
    """Set before the module's stack starts (autouse fixtures come first in their scope)."""
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _question(kind: str) -> dict[str, object]:
    return {"id": "score", "kind": kind, "text": {"en": "How likely?", "vi": "Bạn có sẵn lòng?"}}


async def _survey(stack: Stack, audience: str) -> str:
    survey_id = f"{audience.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    body = {
        "id": survey_id,
        "name": f"{audience} survey",
        "kind": "nps",
        "audience": audience,
        "questions": [_question("nps")],
    }
    response = await stack.client.post(stack.services["feedback"].url + "/v1/surveys", json=body)
    assert response.status_code == 201, response.text
    return survey_id


async def test_a_detractor_gets_an_apology_support_an_alert_and_then_a_follow_up(
    stack: Stack,
) -> None:
    cid = f"rec-{uuid.uuid4().hex[:8]}"
    email = f"{cid}@example.com"
    feedback = stack.services["feedback"].url
    await _survey(stack, "follow_up")
    manual = await _survey(stack, "manual")
    event = purchase(cid, "30.00", name="Hoa", email=email)
    await produce(
        stack.bootstrap, stack.topic("commerce.purchases"), (cid.encode(), event.to_json())
    )
    await wait_until(lambda: _async(stack.mails_to(email)))  # the thank-you: contact known

    answer = {"customer_id": cid, "survey_id": manual, "answers": {"score": 2}, "channel": "phone"}
    recorded = await stack.client.post(feedback + "/v1/responses/staff", json=answer)
    assert recorded.status_code == 201, recorded.text

    async def apology() -> list[ReceivedMail]:
        return [m for m in stack.mails_to(email) if m.subject == "We are sorry, Hoa"]

    await wait_until(apology)

    async def alert() -> list[ReceivedMail]:
        return [m for m in stack.mails_to(SUPPORT) if cid in m.subject]

    [support_mail] = await wait_until(alert)
    assert cid in support_mail.text()

    cases = (
        await stack.client.get(feedback + "/v1/complaints", params={"customer_id": cid})
    ).json()
    [case] = cases
    resolved = await stack.client.post(
        feedback + f"/v1/complaints/{case['id']}/status", json={"status": "resolved"}
    )
    assert resolved.status_code == 200, resolved.text

    async def follow_up() -> list[ReceivedMail]:
        return [m for m in stack.mails_to(email) if m.subject == "Did we put things right, Hoa?"]

    [survey_mail] = await wait_until(follow_up, timeout=45)
    assert "token=" in survey_mail.text()
    apologies = await apology()
    assert len(apologies) == 1  # the response and the case it opened are one incident


async def _async(value: object) -> object:
    return value
