"""Autogenerate a migration for one service: python -m tools.makemigration loyalty "message"."""

from __future__ import annotations

import sys
import tempfile
from importlib import import_module
from pathlib import Path

from alembic import command

from shared.migrations import alembic_config, upgrade


def main() -> None:
    service, message = sys.argv[1], sys.argv[2]
    migrations = Path(import_module(f"services.{service}.main").MIGRATIONS)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/scratch.db"
        upgrade(migrations, url)
        command.revision(alembic_config(migrations, url), message=message, autogenerate=True)


if __name__ == "__main__":
    main()
