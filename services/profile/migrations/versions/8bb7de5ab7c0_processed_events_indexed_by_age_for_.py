"""processed events indexed by age for pruning

Revision ID: 8bb7de5ab7c0
Revises: 5ff2d814bdcc
Create Date: 2026-12-04 22:32:23.071328
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8bb7de5ab7c0"
down_revision: str | None = "5ff2d814bdcc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


INDEX = "ix_processed_events_processed_at"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # The inbox is every service's largest table: build the index without blocking the
        # consumers' inserts meanwhile. CONCURRENTLY cannot run inside a transaction; if it
        # fails it leaves an INVALID index behind: DROP INDEX it and migrate again.
        with op.get_context().autocommit_block():
            op.create_index(
                INDEX, "processed_events", ["processed_at"], postgresql_concurrently=True
            )
        return
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.create_index(INDEX, ["processed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.drop_index(INDEX)
