"""tier and folded name widened

Revision ID: eb5c70072d3c
Revises: e97fd39aeb4d
Create Date: 2026-12-05 03:24:00.000000
"""

from collections.abc import Sequence

from shared.migrations import widen_strings

revision: str = "eb5c70072d3c"
down_revision: str | None = "e97fd39aeb4d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Loyalty names tiers with up to 64 characters (its rules), and a name of 200 characters
# (the event contract's limit) can case-fold to three times as many (U+FB03 folds to "ffi").


def upgrade() -> None:
    widen_strings("customers", {"tier": (32, 64), "name_folded": (200, 600)})


def downgrade() -> None:
    widen_strings("customers", {"tier": (64, 32), "name_folded": (600, 200)})
