"""columns naming who acted widened to a token subject's 255 characters

Revision ID: 5a1e0c7d2b94
Revises: ab35028836ab
Create Date: 2026-12-06 08:30:00.000000
"""

from collections.abc import Sequence

from shared.migrations import widen_strings

revision: str = "5a1e0c7d2b94"
down_revision: str | None = "ab35028836ab"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# They hold the caller's token subject, which OpenID Connect allows up to 255 characters
# (shared.auth.SUBJECT_MAX_LENGTH); a longer subject is refused at authentication.


def upgrade() -> None:
    widen_strings("ledger_entries", {"operator": (128, 255)})
    widen_strings("rule_sets", {"created_by": (128, 255)})


def downgrade() -> None:
    widen_strings("ledger_entries", {"operator": (255, 128)})
    widen_strings("rule_sets", {"created_by": (255, 128)})
