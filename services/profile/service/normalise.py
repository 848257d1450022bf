"""Identity normalisation: the same person must not become two customers because a
till typed ``090 123 4567`` and an app sent ``+84901234567``.

Phone numbers (E.164, without the ``phonenumbers`` library) — the cases handled:

* separators are dropped: spaces, ``-``, ``.``, ``/``, parentheses;
* a trunk ``(0)`` after a country code is dropped: ``+84 (0)90 123 4567``;
* ``+`` or ``00`` starts an international number: ``0084901234567`` → ``+84901234567``;
* otherwise the number is national in the default region (setting
  ``PROFILE_DEFAULT_PHONE_REGION``, e.g. VN → 84): one leading trunk ``0`` is
  dropped and the country code prefixed: ``0901234567`` → ``+84901234567``
  (NANP regions such as US have no trunk 0: ``(415) 555-0100`` → ``+14155550100``);
* the result must be ``+`` and 8 to 15 digits, not starting with 0; anything with
  letters, or too short or long, is rejected. Number-plan validity (is this a
  real mobile range?) is not checked.
"""

from __future__ import annotations

import re
from typing import Literal

IdentityKind = Literal[
    "email", "phone", "loyalty_card", "device_id", "pos_customer_id", "social_handle"
]

COUNTRY_CODES = {
    "VN": "84", "TH": "66", "SG": "65", "MY": "60", "ID": "62", "PH": "63",
    "US": "1", "CA": "1", "GB": "44", "FR": "33", "DE": "49", "AU": "61", "JP": "81",
}  # fmt: skip
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
SEPARATORS = re.compile(r"[\s\-./()]")
CARD = re.compile(r"^[A-Z0-9]{4,32}$")
TOKEN = re.compile(r"^[^\s]{1,128}$")
HANDLE = re.compile(r"^[a-z0-9_]{1,20}:[a-z0-9_.\-]{1,100}$")


class InvalidIdentity(ValueError):
    """A value that cannot be an identity of its kind; the message says why."""


def normalise(kind: IdentityKind, value: str, *, region: str = "VN") -> str:
    return NORMALISERS[kind](value.strip(), region)


def email(value: str, _region: str = "") -> str:
    """Trimmed and case-folded whole (providers treat addresses case-insensitively)."""
    folded = value.strip().lower()
    if len(folded) > 254 or not EMAIL.match(folded):
        raise InvalidIdentity(f"{value!r} is not an e-mail address")
    return folded


def phone(value: str, region: str = "VN") -> str:
    raw = value.strip()
    digits = SEPARATORS.sub("", raw.replace("(0)", ""))
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if not digits.startswith("+"):
        digits = "+" + _country_code(region) + (digits[1:] if digits.startswith("0") else digits)
    if not E164.match(digits):
        raise InvalidIdentity(f"{value!r} is not a phone number (E.164 needs 8-15 digits)")
    return digits


def _country_code(region: str) -> str:
    try:
        return COUNTRY_CODES[region.upper()]
    except KeyError:
        raise InvalidIdentity(f"no country code known for default region {region!r}") from None


def loyalty_card(value: str, _region: str = "") -> str:
    """Upper case, without spaces or dashes: ``kw-1234 5678`` → ``KW12345678``."""
    card = SEPARATORS.sub("", value).upper()
    if not CARD.match(card):
        raise InvalidIdentity(f"{value!r} is not a loyalty card number (4-32 letters/digits)")
    return card


def token(value: str, _region: str = "") -> str:
    """Device and POS ids are opaque: trimmed, case kept, no inner whitespace."""
    if not TOKEN.match(value):
        raise InvalidIdentity(f"{value!r} is not an id (1-128 characters, no spaces)")
    return value


def social_handle(value: str, _region: str = "") -> str:
    """``network:handle``, lower case, without a leading ``@``: ``IG:@Lan.Ng`` → ``ig:lan.ng``."""
    network, _, handle = value.strip().lower().partition(":")
    folded = f"{network}:{handle.removeprefix('@')}"
    if not HANDLE.match(folded):
        raise InvalidIdentity(f"{value!r} is not a social handle (network:handle)")
    return folded


NORMALISERS = {
    "email": email,
    "phone": phone,
    "loyalty_card": loyalty_card,
    "device_id": token,
    "pos_customer_id": token,
    "social_handle": social_handle,
}
