"""Input types shared by the request models and the route parameters.

``Text`` is a string every database can store: PostgreSQL's text types refuse NUL
(``\\u0000``) and neither backend can encode an unpaired surrogate (``"\\ud800"`` is
valid JSON but not UTF-8). ``Instant`` is an aware datetime turned into UTC when the
request is read, so an offset that pushes it past year 1 or 9999 is a 422 here rather
than an overflow in a query.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime


def storable(value: str) -> str:
    """``value`` unchanged, or ValueError if a database could not store it."""
    if "\x00" in value:
        raise ValueError("text must not contain NUL (\\u0000) characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no unpaired surrogates)") from None
    return value


def in_utc(value: datetime) -> datetime:
    """The same instant in UTC, or ValueError if it falls outside years 1 to 9999 there."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"{value.isoformat()} is out of range: in UTC it must fall within years 1 to 9999"
        ) from None


Text = Annotated[str, AfterValidator(storable)]
Instant = Annotated[AwareDatetime, AfterValidator(in_utc)]
