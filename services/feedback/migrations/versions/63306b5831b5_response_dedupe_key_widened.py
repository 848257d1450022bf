"""response dedupe key widened to 400

Revision ID: 63306b5831b5
Revises: 99b0c345d5b4
Create Date: 2026-12-05 03:24:00.000000
"""

from collections.abc import Sequence

from shared.migrations import widen_strings

revision: str = "63306b5831b5"
down_revision: str | None = "99b0c345d5b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# An answer from an event without an invitation is keyed "event:{source}:{id}": up to
# 6 + 256 + 1 + 128 = 391 characters under the event contract, more than 300.


def upgrade() -> None:
    widen_strings("responses", {"dedupe_key": (300, 400)})


def downgrade() -> None:
    widen_strings("responses", {"dedupe_key": (400, 300)})
