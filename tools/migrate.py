"""Migrate one service's database to the latest schema: python -m tools.migrate <service>.

Reads the database URL from the service's own settings (e.g. LOYALTY_DATABASE_URL),
so the Kubernetes migration Job and a developer use the same command.
"""

from __future__ import annotations

import argparse

from tools.stack import SERVICE_NAMES, migrate, settings_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", choices=SERVICE_NAMES)
    args = parser.parse_args()
    migrate(args.service, settings_for(args.service).db_url())
    print(f"{args.service}: database at head")


if __name__ == "__main__":
    main()
