"""columns naming who acted widened to a token subject's 255 characters

Revision ID: 9b2d4f6e1a37
Revises: f497e040e67b
Create Date: 2026-12-06 08:30:00.000000
"""

from collections.abc import Sequence

from shared.migrations import widen_strings

revision: str = "9b2d4f6e1a37"
down_revision: str | None = "f497e040e67b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# They hold the caller's token subject, which OpenID Connect allows up to 255 characters
# (shared.auth.SUBJECT_MAX_LENGTH); a longer subject is refused at authentication.


def upgrade() -> None:
    widen_strings("journey_configs", {"updated_by": (200, 255)})
    widen_strings("message_templates", {"updated_by": (200, 255)})
    widen_strings("config_changes", {"changed_by": (200, 255)})


def downgrade() -> None:
    widen_strings("journey_configs", {"updated_by": (255, 200)})
    widen_strings("message_templates", {"updated_by": (255, 200)})
    widen_strings("config_changes", {"changed_by": (255, 200)})
