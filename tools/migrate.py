"""Migrate one service's database to the latest schema: python -m tools.migrate <service>.

Reads the database URL from the service's own settings (e.g. LOYALTY_DATABASE_URL),
so the Kubernetes migration Job and a developer use the same command.
"""

from __future__ import annotations

import argparse
from importlib import import_module

from shared.config import ServiceSettings
from tools.stack import SERVICE_NAMES, migrate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", choices=SERVICE_NAMES)
    args = parser.parse_args()
    module = import_module(f"services.{args.service}.config")
    settings: ServiceSettings = getattr(module, f"{args.service.capitalize()}Settings")()
    migrate(args.service, settings.db_url())
    print(f"{args.service}: database at head")


if __name__ == "__main__":
    main()
