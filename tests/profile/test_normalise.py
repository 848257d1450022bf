"""Identity normalisation: one spelling per person, or a clear refusal."""

from __future__ import annotations

import pytest

from services.profile.service.normalise import IdentityKind, InvalidIdentity, normalise

PHONES = [
    ("0901234567", "VN", "+84901234567"),
    ("090 123 4567", "VN", "+84901234567"),
    ("090-123-4567", "VN", "+84901234567"),
    ("(090) 123.4567", "VN", "+84901234567"),
    ("+84 90 123 4567", "VN", "+84901234567"),
    ("+84 (0)90 123 4567", "VN", "+84901234567"),
    ("0084901234567", "VN", "+84901234567"),
    ("901234567", "VN", "+84901234567"),
    ("  +84901234567  ", "US", "+84901234567"),
    ("(415) 555-0100", "US", "+14155550100"),
    ("020 7946 0018", "GB", "+442079460018"),
    ("+33 6 12 34 56 78", "VN", "+33612345678"),
]
BAD_PHONES = ["12345", "+0901234567", "090123456789012345", "call me", "0901-ABC-567", "", "+"]

OTHERS: list[tuple[IdentityKind, str, str]] = [
    ("email", "  Lan.Nguyen@Example.COM ", "lan.nguyen@example.com"),
    ("email", "a+tag@shop.vn", "a+tag@shop.vn"),
    ("loyalty_card", "kw-1234 5678", "KW12345678"),
    ("device_id", " 3F2504E0-4F89-11D3 ", "3F2504E0-4F89-11D3"),
    ("pos_customer_id", "store12/4711", "store12/4711"),
    ("social_handle", "IG:@Lan.Ng", "ig:lan.ng"),
]
BAD_OTHERS: list[tuple[IdentityKind, str]] = [
    ("email", "not-an-email"),
    ("email", "two@@example.com"),
    ("email", "spaces in@example.com"),
    ("loyalty_card", "12"),
    ("loyalty_card", "card#1!"),
    ("device_id", "has space"),
    ("device_id", ""),
    ("social_handle", "no-network"),
    ("social_handle", "ig:"),
]


@pytest.mark.parametrize(("raw", "region", "expected"), PHONES)
def test_phone_numbers_normalise_to_e164(raw: str, region: str, expected: str) -> None:
    assert normalise("phone", raw, region=region) == expected


@pytest.mark.parametrize("raw", BAD_PHONES)
def test_malformed_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidIdentity, match="phone number"):
        normalise("phone", raw, region="VN")


def test_a_national_number_needs_a_known_default_region() -> None:
    with pytest.raises(InvalidIdentity, match="no country code known for default region 'ZZ'"):
        normalise("phone", "0901234567", region="ZZ")


@pytest.mark.parametrize(("kind", "raw", "expected"), OTHERS)
def test_other_identities_normalise(kind: IdentityKind, raw: str, expected: str) -> None:
    assert normalise(kind, raw) == expected


@pytest.mark.parametrize(("kind", "raw"), BAD_OTHERS)
def test_malformed_identities_are_refused(kind: IdentityKind, raw: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalise(kind, raw)
