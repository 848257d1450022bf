"""churn purchases, refunds and complaints remember the customer id they came from

Revision ID: 5e8c2a7f3b41
Revises: 9b2d4f6e1a37
Create Date: 2026-12-07 13:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e8c2a7f3b41"
down_revision: str | None = "9b2d4f6e1a37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("churn_purchases", "churn_refunds", "churn_complaints")
COMMENT = (
    "The customer id the event named, when the row is kept under another one "
    "(a merge moved it, or it named an id merged away); NULL: customer_id's own"
)
# Rows that merges moved before this column existed stay NULL: nothing recorded whose they
# were, so undoing those merges gives them nothing back.


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("origin_id", sa.String(length=64), comment=COMMENT))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("origin_id")
