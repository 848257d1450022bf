"""processed events indexed by age for pruning

Revision ID: 2e9b0a2e3509
Revises: d9fb695f2dfa
Create Date: 2026-12-04 22:32:40.174744
"""

from collections.abc import Sequence

from shared.migrations import index_inbox_by_age, unindex_inbox_by_age

revision: str = "2e9b0a2e3509"
down_revision: str | None = "d9fb695f2dfa"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    index_inbox_by_age()


def downgrade() -> None:
    unindex_inbox_by_age()
