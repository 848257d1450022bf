"""processed events indexed by age for pruning

Revision ID: ab35028836ab
Revises: c989ea757fa7
Create Date: 2026-12-04 22:32:27.991458
"""

from collections.abc import Sequence

from shared.migrations import index_inbox_by_age, unindex_inbox_by_age

revision: str = "ab35028836ab"
down_revision: str | None = "c989ea757fa7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    index_inbox_by_age()


def downgrade() -> None:
    unindex_inbox_by_age()
