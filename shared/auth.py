"""Access control: bearer JWTs carrying scopes, verified with PyJWT.

Clients (a storefront, a POS fleet, an app back end, staff tools, operators) get
tokens whose ``scope`` claim (space-separated, OAuth 2 style) lists what they may
do, e.g. ``events:write customers:read``. ``admin`` allows everything.

Keys: a shared secret (HS256) for small deployments and tests, a PEM public key
(RS256/ES256), or a JWKS URL of the organisation's identity provider. With none
configured every protected route answers 401: there is no open default.

Verified tokens are remembered (``TokenVerifier``), so a client sending the same token
on every request pays for its signature once, not on every call.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.config import ServiceSettings
from shared.http import AppError

SCOPES = (
    "events:write",
    "customers:read",
    "customers:write",
    "loyalty:read",
    "loyalty:redeem",
    "loyalty:admin",
    "engagement:read",
    "engagement:admin",
    "feedback:write",
    "feedback:read",
    "feedback:admin",
    "reports:read",
    "admin",
)


class Unauthenticated(AppError):
    status_code = 401
    code = "unauthenticated"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject, its scopes, and whether it is staff."""

    subject: str
    scopes: frozenset[str]
    staff: bool

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


LEEWAY_SECONDS = 30
# OpenID Connect Core 1.0, section 2: a subject "MUST NOT exceed 255 ASCII characters".
# Every column that records who acted (an operator, a staff member) holds that many.
SUBJECT_MAX_LENGTH = 255


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    until: float  # the token's exp plus the leeway: after it, decode would refuse it
    key: Any  # the key that verified it


class TokenVerifier:
    """Verifies bearer tokens and remembers the last ``cache_size`` it verified.

    A remembered token is answered without decoding or checking its signature again
    (about 40 µs of CPU with PyJWT, a tenth of a 360° view's) until its ``exp`` plus the
    leeway, the moment ``jwt.decode`` would start refusing it. What decode checks
    besides ``exp`` cannot turn false later for the same token: its bytes (the cache
    key is the whole token, signature included), the audience and issuer (fixed by the
    settings), ``nbf`` and ``iat`` (only ever refuse too early a use). The key is still
    looked up on every call, and a remembered token counts only if that is the key that
    verified it: with a JWKS, a key the identity provider has withdrawn stops its tokens
    as soon as PyJWKClient refreshes its copy of the set, as without the cache (any new
    copy of the set, even with the same keys, makes them verify afresh). There is no
    revocation of single tokens here, with or without the cache: a token is good until
    it expires.
    """

    def __init__(self, settings: ServiceSettings, *, cache_size: int = 1024) -> None:
        self._settings = settings
        self._jwks = jwt.PyJWKClient(settings.auth_jwks_url) if settings.auth_jwks_url else None
        self._cache_size = cache_size
        self._verified: OrderedDict[str, _Verified] = OrderedDict()

    def verify(self, token: str) -> Principal:
        key, algorithms = self._key(token)
        known = self._verified.get(token)
        if known is not None and known.key is key and time.time() < known.until:
            self._verified.move_to_end(token)
            return known.principal
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=algorithms,
                audience=self._settings.auth_audience,
                issuer=self._settings.auth_issuer,
                options={"require": ["exp", "sub"]},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.PyJWTError as exc:
            self._verified.pop(token, None)
            raise Unauthenticated(f"invalid token: {exc}") from exc
        subject = str(claims["sub"])
        if not subject or len(subject) > SUBJECT_MAX_LENGTH:
            raise Unauthenticated(
                f"invalid token: its subject must have 1 to {SUBJECT_MAX_LENGTH} characters"
            )
        principal = Principal(
            subject=subject,
            scopes=frozenset(str(claims.get("scope", "")).split()),
            staff=bool(claims.get("staff", False)),
        )
        self._remember(token, _Verified(principal, float(claims["exp"]) + LEEWAY_SECONDS, key))
        return principal

    def _remember(self, token: str, verified: _Verified) -> None:
        self._verified[token] = verified
        self._verified.move_to_end(token)
        while len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)

    def _key(self, token: str) -> tuple[Any, list[str]]:
        """The verification key and the algorithms it may be used with.

        A public key is never accepted for an HMAC algorithm (algorithm confusion).
        """
        asymmetric = [a for a in self._settings.auth_algorithms if not a.startswith("HS")]
        if self._jwks is not None:
            try:
                return self._jwks.get_signing_key_from_jwt(token).key, asymmetric
            except jwt.PyJWTError as exc:
                raise Unauthenticated(f"invalid token: {exc}") from exc
        if self._settings.auth_public_key:
            return self._settings.auth_public_key, asymmetric
        if self._settings.auth_secret is not None:
            return self._settings.auth_secret.get_secret_value(), ["HS256"]
        raise Unauthenticated("this service has no token key configured")


_bearer = HTTPBearer(auto_error=False)


def _verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.verifier
    return verifier


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
    principal = _verifier(request).verify(credentials.credentials)
    request.state.principal = principal
    return principal


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets the call through only with ``scope`` (or ``admin``)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.allows(scope):
            raise Forbidden(f"this credential lacks the {scope!r} scope")
        return principal

    check.__name__ = f"require_{scope.replace(':', '_')}"
    return check


def issue_token(
    *,
    secret: str,
    subject: str,
    scopes: list[str] | tuple[str, ...],
    staff: bool = False,
    ttl_seconds: int = 3600,
    audience: str = "keepwell",
    issuer: str | None = None,
) -> str:
    """Mint an HS256 token (development, tests, and deployments using a shared secret)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "scope": " ".join(scopes),
        "staff": staff,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
