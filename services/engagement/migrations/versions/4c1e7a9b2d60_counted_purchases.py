"""counted purchases: a sale counts into item pairs and sequences once

Revision ID: 4c1e7a9b2d60
Revises: 2e9b0a2e3509
Create Date: 2026-12-04 23:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4c1e7a9b2d60"
down_revision: str | None = "2e9b0a2e3509"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The sales counted before this table existed, as far as they left a key behind: every
# purchase handled planned its thank-you (unless the journey was off), replaced its
# customer's latest basket (unless an older one arrived late) and may have converted.
# "WHERE 1 = 1" lets SQLite tell the SELECT from the ON CONFLICT clause.
BACKFILL = (
    "INSERT INTO counted_purchases (purchase_key, purchased_at) SELECT {key}, {at} "
    "FROM {table} WHERE {where} ON CONFLICT (purchase_key) DO NOTHING"
)
SOURCES = (
    ("substr(dedupe_key, 11)", "coalesce(trigger_at, created_at)", "outreach",
     "journey = 'thank_you' AND dedupe_key LIKE 'thank\\_you:%' ESCAPE '\\'"),
    ("purchase_key", "purchased_at", "last_baskets", "1 = 1"),
    ("purchase_key", "purchased_at", "conversions", "1 = 1"),
)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "counted_purchases",
        sa.Column("purchase_key", sa.String(length=400), nullable=False),
        sa.Column("purchased_at", sa.DateTime(timezone=True), nullable=False, comment="Event time"),
        sa.PrimaryKeyConstraint("purchase_key", name=op.f("pk_counted_purchases")),
    )
    for key, at, table, where in SOURCES:
        op.execute(BACKFILL.format(key=key, at=at, table=table, where=where))


def downgrade() -> None:
    op.drop_table("counted_purchases")
