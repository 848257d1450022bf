"""`make run`: the whole platform on one machine with embedded defaults.

Starts the local broker (unless KEEPWELL_KAFKA_BOOTSTRAP points at another one),
creates the topics, migrates each service's database, starts an SMTP sink and the
four services as separate processes, and prints where everything is. Ctrl-C (or
SIGTERM) stops every process it started.

Environment knobs: KEEPWELL_PORT_BASE (8000: services on 8001-8004),
KEEPWELL_BROKER_PORT (9092), KEEPWELL_SMTP_PORT (1025), KEEPWELL_TOPIC_PREFIX,
KEEPWELL_PARTITIONS (4). Any service setting can be set directly with its own
prefix, e.g. LOYALTY_DATABASE_URL=postgresql+asyncpg://… .
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared.auth import issue_token
from shared.config import ServiceSettings
from shared.events import all_topics
from shared.kafka import create_topics
from tools import broker
from tools.stack import ROOT, SERVICE_NAMES, ServiceProcess, migrate, service_env, settings_for

VAR = ROOT / "var"


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def start_broker(children: list[subprocess.Popen[bytes]]) -> str:
    bootstrap = os.environ.get("KEEPWELL_KAFKA_BOOTSTRAP", "")
    if bootstrap:
        print(f"  kafka       external broker at {bootstrap}", flush=True)
        return bootstrap
    port = int(os.environ.get("KEEPWELL_BROKER_PORT", "9092"))
    children.append(broker.start(port, log_path=VAR / "logs" / "broker.log"))
    print(f"  kafka       local Tansu broker (memory storage) on 127.0.0.1:{port}", flush=True)
    return f"127.0.0.1:{port}"


def prepare(bootstrap: str, prefix: str) -> None:
    partitions = int(os.environ.get("KEEPWELL_PARTITIONS", "4"))
    admin = ServiceSettings(kafka_bootstrap_servers=bootstrap)
    created = asyncio.run(create_topics(admin, all_topics(prefix), partitions=partitions))
    print(f"  topics      {len(created)} created, {partitions} partitions each", flush=True)
    for name in SERVICE_NAMES:
        url = settings_for(name).db_url()
        migrate(name, url)
        print(f"  database    {name:<11} {url}", flush=True)


def start_smtp_sink(children: list[subprocess.Popen[bytes]], port: int) -> None:
    args = [sys.executable, "-m", "tools.smtp_sink", "--port", str(port), "--out", "var/mail"]
    children.append(subprocess.Popen(args, cwd=ROOT))
    broker.wait_for_port(port)


def dev_secret() -> str:
    """The token signing secret for this checkout: KEEPWELL_AUTH_SECRET or var/dev-secret."""
    if secret := os.environ.get("KEEPWELL_AUTH_SECRET"):
        return secret
    path = VAR / "dev-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def write_dev_token(secret: str) -> Path:
    """An admin token for trying the APIs locally (valid 30 days)."""
    token = issue_token(
        secret=secret, subject="developer", scopes=["admin"], staff=True, ttl_seconds=30 * 24 * 3600
    )
    path = VAR / "dev-token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def start_services(
    bootstrap: str, prefix: str, smtp_port: int, secret: str
) -> list[ServiceProcess]:
    base = int(os.environ.get("KEEPWELL_PORT_BASE", "8000"))
    ports = {name: base + i + 1 for i, name in enumerate(SERVICE_NAMES)}
    # The dashboard (in engagement) reads the other services' reports where they run.
    upstreams = {
        f"ENGAGEMENT_{name.upper()}_URL": f"http://127.0.0.1:{ports[name]}"
        for name in ("profile", "loyalty", "feedback")
    }
    services = [
        ServiceProcess(
            name=name,
            port=ports[name],
            env=service_env(
                name,
                bootstrap=bootstrap,
                prefix=prefix,
                smtp_port=smtp_port,
                auth_secret=secret,
                extra=upstreams if name == "engagement" else None,
            ),
            log_path=VAR / "logs" / f"{name}.log",
        ).start()
        for name in SERVICE_NAMES
    ]
    for service in services:
        service.wait_ready()
    return services


def print_banner(services: list[ServiceProcess], bootstrap: str, smtp_port: int) -> None:
    print("\nKeepwell is running:\n")
    for s in services:
        log = s.log_path.relative_to(ROOT)
        print(f"  {s.name:<11} {s.url:<23} API docs {s.url}/docs   logs {log}")
    print(f"  {'kafka':<11} {bootstrap}")
    sink = f"127.0.0.1:{smtp_port}"
    print(f"  {'smtp sink':<11} {sink:<23} each e-mail is shown here and saved in var/mail/")
    print("\nPress Ctrl-C to stop everything.\n", flush=True)


def main() -> None:
    os.chdir(ROOT)
    (VAR / "logs").mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)
    prefix = os.environ.get("KEEPWELL_TOPIC_PREFIX", "")
    smtp_port = int(os.environ.get("KEEPWELL_SMTP_PORT", "1025"))
    children: list[subprocess.Popen[bytes]] = []
    services: list[ServiceProcess] = []
    try:
        bootstrap = start_broker(children)
        prepare(bootstrap, prefix)
        start_smtp_sink(children, smtp_port)
        secret = dev_secret()
        services = start_services(bootstrap, prefix, smtp_port, secret)
        print_banner(services, bootstrap, smtp_port)
        token = write_dev_token(secret).relative_to(ROOT)
        print(f"An admin token for the APIs is in {token}:")
        print(
            f'  curl -H "Authorization: Bearer $(cat {token})" {services[1].url}/v1/members/<id>\n',
            flush=True,
        )
        while all(s.alive for s in services) and all(c.poll() is None for c in children):
            time.sleep(0.5)
        print("a Keepwell process stopped unexpectedly; shutting down", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
    finally:
        shutdown(services, children)


def shutdown(services: list[ServiceProcess], children: list[subprocess.Popen[bytes]]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan anything
    for service in services:
        if service.alive and service.proc is not None:
            service.proc.send_signal(signal.SIGTERM)
    for service in services:
        service.stop()
    for child in reversed(children):
        broker.stop(child)
    print("all Keepwell processes stopped", flush=True)


if __name__ == "__main__":
    main()
