"""Invitation tokens: signed, expiring, tamper-evident."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from services.feedback.service import tokens
from services.feedback.service.errors import InvalidToken, TokenExpired
from tests.feedback.conftest import T0

SECRET = b"s3cret"
CLAIMS = tokens.TokenClaims("inv-1", "c-1", "after-buy", 2, T0 + timedelta(days=1))


def test_a_signed_token_verifies_to_its_claims() -> None:
    token = tokens.sign(CLAIMS, secret=SECRET)
    assert tokens.verify(token, secret=SECRET, now=T0) == CLAIMS


def test_an_expired_token_is_refused() -> None:
    token = tokens.sign(CLAIMS, secret=SECRET)
    with pytest.raises(TokenExpired):
        tokens.verify(token, secret=SECRET, now=T0 + timedelta(days=1))


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = tokens.sign(CLAIMS, secret=b"other")
    with pytest.raises(InvalidToken, match="altered"):
        tokens.verify(token, secret=SECRET, now=T0)


def test_changing_the_customer_in_the_payload_breaks_the_signature() -> None:
    payload, signature = tokens.sign(CLAIMS, secret=SECRET).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["c"] = "c-2"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        tokens.verify(f"{forged}.{signature}", secret=SECRET, now=T0)


@pytest.mark.parametrize(
    "garbage", ["", "abc", "abc.", ".abc", "a.b.c", "%%%.!!!", "\ud800bc.AAAA", "é.AAAA"]
)
def test_malformed_tokens_are_refused(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        tokens.verify(garbage, secret=SECRET, now=T0)
