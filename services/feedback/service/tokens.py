"""Signed invitation tokens: HMAC-SHA256 over what the invitation is for and until when.

A token is ``<payload>.<signature>``, both base64url without padding. The payload is
JSON ``{"i": invitation, "c": customer, "s": survey, "v": version, "e": expiry}``;
the signature covers those exact bytes. Verification is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.feedback.service.errors import InvalidToken, TokenExpired


@dataclass(frozen=True)
class TokenClaims:
    invitation_id: str
    customer_id: str
    survey_id: str
    version: int
    expires_at: datetime


def sign(claims: TokenClaims, *, secret: bytes) -> str:
    body = {
        "i": claims.invitation_id,
        "c": claims.customer_id,
        "s": claims.survey_id,
        "v": claims.version,
        "e": int(claims.expires_at.timestamp()),
    }
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_b64(_mac(payload, secret))}"


def verify(token: str, *, secret: bytes, now: datetime) -> TokenClaims:
    """The token's claims, or InvalidToken (tampered, malformed) / TokenExpired."""
    payload, _, signature = token.partition(".")
    if not token.isascii() or not payload or not signature:
        raise InvalidToken("malformed survey token")
    if not hmac.compare_digest(_unb64(signature), _mac(payload, secret)):
        raise InvalidToken("the survey token's signature does not match; it was altered")
    claims = _claims(_unb64(payload))
    if claims.expires_at <= now:
        raise TokenExpired(f"this survey link expired at {claims.expires_at.isoformat()}")
    return claims


def _claims(raw: bytes) -> TokenClaims:
    try:
        body: Any = json.loads(raw)
        return TokenClaims(
            invitation_id=str(body["i"]),
            customer_id=str(body["c"]),
            survey_id=str(body["s"]),
            version=int(body["v"]),
            expires_at=datetime.fromtimestamp(int(body["e"]), UTC),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidToken("malformed survey token") from exc


def _mac(payload: str, secret: bytes) -> bytes:
    return hmac.new(secret, payload.encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("malformed survey token") from exc
