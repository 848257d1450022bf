"""Bearer-token access control: 401 without a valid credential, 403 without the scope."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Annotated

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI

from shared import auth
from shared.auth import Principal, TokenVerifier, Unauthenticated, issue_token, require
from shared.config import ServiceSettings
from shared.http import install
from tests.helpers import TEST_SECRET, auth_headers


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hand_made_token(header: dict[str, str], hmac_key: bytes, claims: dict | None = None) -> str:
    """Build a JWT by hand, as an attacker would, bypassing the library's safety checks."""
    claims = claims or {
        "sub": "x",
        "scope": "admin",
        "aud": "keepwell",
        "exp": int(time.time()) + 60,
    }
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if not hmac_key:
        return signing_input + "."
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def make_app(settings: ServiceSettings) -> FastAPI:
    app = FastAPI()
    install(app, service="t", checks={})
    app.state.verifier = TokenVerifier(settings)

    @app.get("/points")
    async def read_points(
        who: Annotated[Principal, Depends(require("loyalty:read"))],
    ) -> dict[str, str]:
        return {"subject": who.subject}

    return app


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = make_app(ServiceSettings(auth_secret=TEST_SECRET))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_no_credential_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/points")
    assert response.status_code == 401
    assert "missing bearer token" in response.json()["error"]["message"]


async def test_the_right_scope_is_allowed_and_admin_is_allowed_everything(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/points", headers=auth_headers("loyalty:read"))).status_code == 200
    admin = await client.get("/points", headers=auth_headers("admin", subject="ops"))
    assert admin.json() == {"subject": "ops"}


async def test_a_credential_without_the_scope_is_403(client: httpx.AsyncClient) -> None:
    response = await client.get("/points", headers=auth_headers("events:write"))
    assert response.status_code == 403
    assert "loyalty:read" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "token",
    [
        issue_token(
            secret="someone-elses-secret-of-at-least-32-bytes", subject="x", scopes=["admin"]
        ),
        issue_token(secret=TEST_SECRET, subject="x", scopes=["admin"], ttl_seconds=-120),
        issue_token(secret=TEST_SECRET, subject="x", scopes=["admin"], audience="other-app"),
        "not-a-jwt",
        jwt.encode(
            {"sub": "x", "scope": "admin", "aud": "keepwell", "exp": time.time() + 60},
            key="",
            algorithm="none",
        )
        if False
        else "e30.e30.",
    ],
    ids=["wrong-key", "expired", "wrong-audience", "garbage", "unsigned"],
)
async def test_invalid_tokens_are_401(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/points", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


@pytest.mark.parametrize("length", [0, auth.SUBJECT_MAX_LENGTH + 1])
async def test_a_subject_outside_1_to_255_characters_is_401(
    client: httpx.AsyncClient, length: int
) -> None:
    """The columns that record who acted hold 255 characters, OpenID Connect's limit."""
    headers = auth_headers("loyalty:read", subject="u" * length)
    response = await client.get("/points", headers=headers)
    assert response.status_code == 401
    assert "subject must have 1 to 255 characters" in response.json()["error"]["message"]


async def test_a_subject_of_255_characters_gets_in(client: httpx.AsyncClient) -> None:
    subject = "u" * auth.SUBJECT_MAX_LENGTH
    response = await client.get("/points", headers=auth_headers("loyalty:read", subject=subject))
    assert response.json() == {"subject": subject}


async def test_with_no_key_configured_nothing_gets_in() -> None:
    app = make_app(ServiceSettings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get("/points", headers=auth_headers("admin"))
    assert response.status_code == 401


async def test_a_public_key_cannot_be_abused_as_an_hmac_secret() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    app = make_app(ServiceSettings(auth_public_key=pem))
    claims = {"sub": "x", "scope": "admin", "aud": "keepwell", "exp": int(time.time()) + 60}
    good = jwt.encode(claims, private, algorithm="RS256")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        ok = await c.get("/points", headers={"Authorization": f"Bearer {good}"})
        assert ok.status_code == 200
        # An attacker signs with HS256 using the (public) PEM text as the secret.
        forged = hand_made_token({"alg": "HS256", "typ": "JWT"}, pem.encode(), claims)
        bad = await c.get("/points", headers={"Authorization": f"Bearer {forged}"})
        assert bad.status_code == 401


# --- remembered tokens ---------------------------------------------------------------------

OTHER_SECRET = "another-secret-of-at-least-32-bytes-long"


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token ``jwt.decode`` is asked to verify."""
    seen: list[str] = []
    real = jwt.decode

    def counted(token: str, *args: object, **kwargs: object) -> object:
        seen.append(token)
        return real(token, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt, "decode", counted)
    return seen


def test_a_token_is_verified_once_and_then_remembered(decodes: list[str]) -> None:
    verifier = TokenVerifier(ServiceSettings(auth_secret=TEST_SECRET))
    token = issue_token(secret=TEST_SECRET, subject="pos", scopes=["customers:read"], staff=True)
    first = verifier.verify(token)
    assert verifier.verify(token) == first == Principal("pos", frozenset({"customers:read"}), True)
    assert decodes == [token]


def test_a_remembered_token_is_verified_again_once_it_has_expired(
    decodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = TokenVerifier(ServiceSettings(auth_secret=TEST_SECRET))
    token = issue_token(secret=TEST_SECRET, subject="pos", scopes=["admin"], ttl_seconds=60)
    verifier.verify(token)
    exp = jwt.PyJWT().decode(token, options={"verify_signature": False})["exp"]
    monkeypatch.setattr(time, "time", lambda: exp + auth.LEEWAY_SECONDS - 1)
    verifier.verify(token)
    assert len(decodes) == 1  # still within exp + leeway: remembered
    monkeypatch.setattr(time, "time", lambda: exp + auth.LEEWAY_SECONDS)
    verifier.verify(token)  # (PyJWT's own clock still finds it valid)
    assert len(decodes) == 2


def test_a_remembered_token_counts_only_under_the_key_that_verified_it() -> None:
    class Rotating(TokenVerifier):
        """As with a JWKS: the key a token resolves to can change between calls."""

        key = TEST_SECRET

        def _key(self, token: str) -> tuple[object, list[str]]:
            return self.key, ["HS256"]

    verifier = Rotating(ServiceSettings(auth_secret=TEST_SECRET))
    token = issue_token(secret=TEST_SECRET, subject="pos", scopes=["admin"])
    verifier.verify(token)
    verifier.key = OTHER_SECRET
    with pytest.raises(Unauthenticated, match="invalid token"):
        verifier.verify(token)
    verifier.key = TEST_SECRET
    assert verifier.verify(token).subject == "pos"


def test_the_verifier_remembers_a_bounded_number_of_tokens(decodes: list[str]) -> None:
    verifier = TokenVerifier(ServiceSettings(auth_secret=TEST_SECRET), cache_size=2)
    a, b, c = (issue_token(secret=TEST_SECRET, subject=s, scopes=["admin"]) for s in "abc")
    for token in (a, b, a, c, a, b):  # c pushes out b (a was used since), then b pushes out c
        verifier.verify(token)
    assert decodes == [a, b, c, b]
