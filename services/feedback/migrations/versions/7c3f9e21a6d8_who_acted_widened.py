"""columns naming who acted widened to a token subject's 255 characters

Revision ID: 7c3f9e21a6d8
Revises: 63306b5831b5
Create Date: 2026-12-06 08:30:00.000000
"""

from collections.abc import Sequence

from shared.migrations import widen_strings

revision: str = "7c3f9e21a6d8"
down_revision: str | None = "63306b5831b5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# They hold the caller's token subject, which OpenID Connect allows up to 255 characters
# (shared.auth.SUBJECT_MAX_LENGTH); a longer subject is refused at authentication.


def upgrade() -> None:
    widen_strings("responses", {"submitted_by": (100, 255)})
    widen_strings("complaints", {"opened_by": (100, 255)})


def downgrade() -> None:
    widen_strings("responses", {"submitted_by": (255, 100)})
    widen_strings("complaints", {"opened_by": (255, 100)})
