"""`make run`: the whole platform on one machine with embedded defaults.

Starts the local broker (unless KEEPWELL_KAFKA_BOOTSTRAP points elsewhere), creates
the topics, migrates each service's database, starts an SMTP sink and the four
services as separate processes, and prints where everything is. Ctrl-C (or
SIGTERM) stops every process it started.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import httpx

from shared.config import ServiceSettings
from shared.events import all_topics
from shared.kafka import create_topics
from shared.migrations import upgrade
from tools import broker

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int

    @property
    def env_prefix(self) -> str:
        return self.name.upper() + "_"


def specs(base_port: int) -> list[ServiceSpec]:
    names = ("profile", "loyalty", "engagement", "feedback")
    return [ServiceSpec(n, base_port + i + 1) for i, n in enumerate(names)]


def service_env(
    spec: ServiceSpec, *, bootstrap: str, prefix: str, smtp_port: int
) -> dict[str, str]:
    p = spec.env_prefix
    env = {
        f"{p}KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        f"{p}TOPIC_PREFIX": prefix,
        f"{p}KAFKA_FETCH_MAX_WAIT_MS": os.environ.get("KEEPWELL_FETCH_MAX_WAIT_MS", "20"),
        f"{p}RELAY_POLL_INTERVAL_MS": "100",
    }
    if spec.name == "engagement":
        env["ENGAGEMENT_SMTP_PORT"] = str(smtp_port)
    return {**env, **os.environ}


def database_url(spec: ServiceSpec) -> str:
    settings_cls = _settings_class(spec)
    settings: ServiceSettings = settings_cls()
    return settings.db_url()


def _settings_class(spec: ServiceSpec) -> type[ServiceSettings]:
    module = import_module(f"services.{spec.name}.config")
    cls: type[ServiceSettings] = getattr(module, f"{spec.name.capitalize()}Settings")
    return cls


def migrate_all(services: list[ServiceSpec]) -> None:
    os.chdir(ROOT)
    for spec in services:
        migrations = Path(import_module(f"services.{spec.name}.main").MIGRATIONS)
        upgrade(migrations, database_url(spec))
        print(f"  migrated {spec.name:<10} {database_url(spec)}", flush=True)


def spawn(
    args: list[str], *, env: dict[str, str], log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log else None  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT if out else None
    )


def wait_ready(spec: ServiceSpec, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{spec.port}/readyz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{spec.name} exited with status {proc.returncode}; see var/logs/")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    raise TimeoutError(f"{spec.name} not ready after {timeout}s ({url})")


def stop_all(procs: list[subprocess.Popen[bytes]], grace: float = 25.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    base = int(os.environ.get("KEEPWELL_PORT_BASE", "8000"))
    smtp_port = int(os.environ.get("KEEPWELL_SMTP_PORT", "1025"))
    prefix = os.environ.get("KEEPWELL_TOPIC_PREFIX", "")
    bootstrap = os.environ.get("KEEPWELL_KAFKA_BOOTSTRAP", "")
    services = specs(base)
    (VAR / "logs").mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if not bootstrap:
            port = int(os.environ.get("KEEPWELL_BROKER_PORT", "9092"))
            procs.append(broker.start(port, log_path=VAR / "logs" / "broker.log"))
            bootstrap = f"127.0.0.1:{port}"
            print(f"  broker     Tansu (memory storage) on {bootstrap}", flush=True)
        created = asyncio.run(
            create_topics(
                ServiceSettings(kafka_bootstrap_servers=bootstrap),
                all_topics(prefix),
                partitions=int(os.environ.get("KEEPWELL_PARTITIONS", "4")),
            )
        )
        print(f"  topics     {len(created)} created ({prefix or 'no'} prefix)", flush=True)
        migrate_all(services)
        procs.append(
            spawn(
                [
                    sys.executable,
                    "-m",
                    "tools.smtp_sink",
                    "--port",
                    str(smtp_port),
                    "--out",
                    str(VAR / "mail"),
                ],
                env=dict(os.environ),
            )
        )
        broker.wait_for_port(smtp_port)
        started = []
        for spec in services:
            env = service_env(spec, bootstrap=bootstrap, prefix=prefix, smtp_port=smtp_port)
            args = [
                sys.executable,
                "-m",
                "uvicorn",
                f"services.{spec.name}.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(spec.port),
                "--no-access-log",
            ]
            proc = spawn(args, env=env, log=VAR / "logs" / f"{spec.name}.log")
            procs.append(proc)
            started.append((spec, proc))
        for spec, proc in started:
            wait_ready(spec, proc)
        print_banner(services, bootstrap, smtp_port)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        dead = [p.args for p in procs if p.poll() is not None]
        print(f"a process stopped unexpectedly: {dead}; shutting down", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
    finally:
        stop_all(list(reversed(procs)))
        print("all Keepwell processes stopped", flush=True)


def print_banner(services: list[ServiceSpec], bootstrap: str, smtp_port: int) -> None:
    print("\nKeepwell is running:\n", flush=True)
    for spec in services:
        url = f"http://127.0.0.1:{spec.port}"
        print(f"  {spec.name:<11} {url:<24} API docs {url}/docs   logs var/logs/{spec.name}.log")
    print(f"  {'kafka':<11} {bootstrap}")
    print(f"  {'smtp sink':<11} 127.0.0.1:{smtp_port}   (mail shown here and saved in var/mail/)")
    print("\nPress Ctrl-C to stop everything.\n", flush=True)


if __name__ == "__main__":
    main()
