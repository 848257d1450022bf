"""Personal data never reaches the logs: the real services' output over a full purchase.

A customer with an e-mail and a phone number is resolved at a till, buys, earns
points, gets a thank-you e-mail and is read back by a staff member. Two malformed
messages whose event type *is* the e-mail and the phone make every consumer
quote them in a dead-letter log line, so personal data certainly reaches the
loggers: the test then finds only their masked forms in the captured output of
all four services, and never the raw e-mail or phone in any spelling.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from shared.events.common import ContactHint
from shared.logs import mask_personal_data
from tests.e2e.conftest import Stack
from tests.helpers import auth_headers, produce, purchase, wait_until

pytestmark = pytest.mark.e2e

PHONE_AS_TYPED = "+84 901 234 567"
PHONE_SPELLINGS = ("+84 901 234 567", "+84901234567", "0901234567", "0901 234 567", "901234567")
CONSUMERS = ("profile", "loyalty", "engagement", "feedback")


def log_text(stack: Stack) -> dict[str, str]:
    return {n: Path(s.log_path).read_text(errors="replace") for n, s in stack.services.items()}


async def test_a_full_purchase_flow_logs_no_raw_email_or_phone(stack: Stack) -> None:
    email = f"lan.nguyen+{uuid.uuid4().hex[:6]}@example.com"
    resolved = await stack.client.post(
        stack.services["profile"].url + "/v1/customers/resolve",
        json={
            "identities": [
                {"kind": "email", "value": email.upper()},
                {"kind": "phone", "value": "0901 234 567"},
            ]
        },
    )
    assert resolved.status_code == 200, resolved.text
    cid = resolved.json()["customer_id"]
    template = purchase(cid, "42.00")
    hint = ContactHint(name="Lan Nguyen", email=email, phone=PHONE_AS_TYPED)
    bought = template.model_copy(
        update={"data": template.data.model_copy(update={"customer": hint})}
    )
    poison = [_with_type(bought.to_json(), email), _with_type(bought.to_json(), PHONE_AS_TYPED)]
    topic = stack.topic("commerce.purchases")
    await produce(stack.bootstrap, topic, (cid.encode(), bought.to_json()))
    await produce(stack.bootstrap, topic, *[(cid.encode(), p) for p in poison])

    member = await wait_until(lambda: stack.get_json_if_ok("loyalty", f"/v1/members/{cid}"))
    assert member["balance"] == 42
    await wait_until(lambda: _now(stack.mails_to(email)))
    staff = auth_headers("customers:read", subject="agent-1", staff=True)
    view = await stack.client.get(
        stack.services["profile"].url + f"/v1/customers/{cid}", headers=staff
    )
    assert view.json()["email"] == email

    def every_consumer_dead_lettered_both() -> bool:
        logs = log_text(stack)
        return all(logs[n].count("dead-lettered message") >= 2 for n in CONSUMERS)

    await wait_until(lambda: _now(every_consumer_dead_lettered_both()), timeout=30)
    logs = log_text(stack)
    for name, text in logs.items():
        for raw in (email, email.upper(), email.split("@")[0], *PHONE_SPELLINGS):
            assert raw not in text, f"{name} logged {raw!r}"
    masked_email, masked_phone = mask_personal_data(email), mask_personal_data(PHONE_AS_TYPED)
    assert (masked_email, masked_phone) == ("l***@***", "***67")
    for name in CONSUMERS:  # the personal data did reach each logger, masked
        assert f"unknown event type: '{masked_email}'" in logs[name], name
        assert f"unknown event type: '{masked_phone}'" in logs[name], name


def _with_type(raw: bytes, event_type: str) -> bytes:
    doc = json.loads(raw)
    return json.dumps({**doc, "id": str(uuid.uuid4()), "type": event_type}).encode()


async def _now(value: object) -> object:
    return value
