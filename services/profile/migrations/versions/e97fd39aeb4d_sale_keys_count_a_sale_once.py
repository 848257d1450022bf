"""sale keys: count a purchase or refund once per producer id

Purchases already on a timeline are recorded as counted (by ``ref``, their
``purchase_id``; one key however many copies a re-sent sale left). Refund entries
never stored their ``refund_id``, so refunds counted before this revision are not
recognised if re-sent; nor are purchases of erased customers (their timeline is
gone). A rebuild from the topics records every key.

Revision ID: e97fd39aeb4d
Revises: 8bb7de5ab7c0
Create Date: 2026-12-04 23:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e97fd39aeb4d"
down_revision: str | None = "8bb7de5ab7c0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sale_keys",
        sa.Column("event_source", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column(
            "business_id",
            sa.String(length=128),
            nullable=False,
            comment="purchase_id of a purchase, refund_id of a refund",
        ),
        sa.Column(
            "event_id", sa.String(length=128), nullable=False, comment="The event that counted it"
        ),
        sa.PrimaryKeyConstraint("event_source", "kind", "business_id", name=op.f("pk_sale_keys")),
    )
    op.execute(
        "INSERT INTO sale_keys (event_source, kind, business_id, event_id) "
        "SELECT event_source, kind, ref, MIN(event_id) FROM timeline "
        "WHERE kind = 'purchase.completed' AND ref IS NOT NULL "
        "GROUP BY event_source, kind, ref"
    )


def downgrade() -> None:
    op.drop_table("sale_keys")
