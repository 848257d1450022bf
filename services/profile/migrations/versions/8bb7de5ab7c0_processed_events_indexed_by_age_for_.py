"""processed events indexed by age for pruning

Revision ID: 8bb7de5ab7c0
Revises: 5ff2d814bdcc
Create Date: 2026-12-04 22:32:23.071328
"""

from collections.abc import Sequence

from shared.migrations import index_inbox_by_age, unindex_inbox_by_age

revision: str = "8bb7de5ab7c0"
down_revision: str | None = "5ff2d814bdcc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    index_inbox_by_age()


def downgrade() -> None:
    unindex_inbox_by_age()
