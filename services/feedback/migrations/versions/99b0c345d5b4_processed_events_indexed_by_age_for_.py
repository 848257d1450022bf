"""processed events indexed by age for pruning

Revision ID: 99b0c345d5b4
Revises: f0a37cfcde5d
Create Date: 2026-12-04 22:32:43.443636
"""

from collections.abc import Sequence

from shared.migrations import index_inbox_by_age, unindex_inbox_by_age

revision: str = "99b0c345d5b4"
down_revision: str | None = "f0a37cfcde5d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    index_inbox_by_age()


def downgrade() -> None:
    unindex_inbox_by_age()
