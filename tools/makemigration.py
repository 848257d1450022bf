"""Autogenerate a migration for one service: python -m tools.makemigration loyalty "message"."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command

from shared.migrations import alembic_config, upgrade
from tools.stack import migrations_dir


def main() -> None:
    service, message = sys.argv[1], sys.argv[2]
    migrations = migrations_dir(service)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/scratch.db"
        upgrade(migrations, url)
        script = command.revision(
            alembic_config(migrations, url), message=message, autogenerate=True
        )
    paths = [s.path for s in (script if isinstance(script, list) else [script]) if s is not None]
    for path in paths:
        text = Path(path).read_text()
        Path(path).write_text("\n".join(line.rstrip() for line in text.splitlines()) + "\n")
    ruff = Path(sys.executable).with_name("ruff")
    subprocess.run([str(ruff), "check", "--fix", "-q", *paths], check=True)
    subprocess.run([str(ruff), "format", "-q", *paths], check=True)


if __name__ == "__main__":
    main()
