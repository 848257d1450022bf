"""sale keys widened to 400

Revision ID: f497e040e67b
Revises: 4c1e7a9b2d60
Create Date: 2026-12-05 03:24:00.000000
"""

from collections.abc import Sequence

from shared.migrations import widen_strings

revision: str = "f497e040e67b"
down_revision: str | None = "4c1e7a9b2d60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A sale's key is "{source}:{purchase_id}": up to 256 + 1 + 128 = 385 characters under
# the event contract, more than the 300 these columns held (counted_purchases has 400).


def upgrade() -> None:
    widen_strings("last_baskets", {"purchase_key": (300, 400)})
    widen_strings("conversions", {"purchase_key": (300, 400)})


def downgrade() -> None:
    widen_strings("last_baskets", {"purchase_key": (400, 300)})
    widen_strings("conversions", {"purchase_key": (400, 300)})
