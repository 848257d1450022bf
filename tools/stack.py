"""Start Keepwell's services as real processes: used by `make run`, e2e tests and bench."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Self

import httpx

from shared.config import ServiceSettings
from shared.migrations import upgrade

ROOT = Path(__file__).resolve().parent.parent
SERVICE_NAMES = ("profile", "loyalty", "engagement", "feedback")


def settings_for(service: str, **overrides: Any) -> ServiceSettings:
    """The service's own settings, read from its environment (e.g. LOYALTY_…)."""
    module = import_module(f"services.{service}.config")
    cls: type[ServiceSettings] = getattr(module, f"{service.capitalize()}Settings")
    return cls(**overrides)


def migrations_dir(service: str) -> Path:
    return Path(import_module(f"services.{service}.main").MIGRATIONS)


def migrate(service: str, url: str) -> None:
    upgrade(migrations_dir(service), url)


@dataclass
class ServiceProcess:
    """One service under uvicorn in its own process, configured by environment."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """What runs in the process: the service under uvicorn."""
        return [
            sys.executable,
            "-m",
            "uvicorn",
            f"services.{self.name}.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "20",
        ]

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env={**os.environ, **self.env},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def answers_ready(self) -> bool:
        """Whether the started process says it is ready: the service's ``/readyz``."""
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False  # not listening yet: the caller polls until its deadline

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(f"{self.name} exited ({code}); see {self.log_path}")
            if self.answers_ready():
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no offset commit, no goodbye to the group."""
        if self.proc is not None and self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, grace: float = 25.0) -> int | None:
        if self.proc is None:
            return None
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def service_env(
    name: str,
    *,
    bootstrap: str,
    prefix: str,
    database_url: str | None = None,
    smtp_port: int | None = None,
    auth_secret: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    p = name.upper() + "_"
    env = {
        f"{p}KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        f"{p}TOPIC_PREFIX": prefix,
        f"{p}RELAY_POLL_INTERVAL_MS": "100",
        f"{p}GC_FREEZE_AFTER_START": "true",  # the default, whatever the caller's environment
    }
    if database_url:
        env[f"{p}DATABASE_URL"] = database_url
    if auth_secret:
        env[f"{p}AUTH_SECRET"] = auth_secret
        if name == "feedback":  # survey links signed with a key derived for this stack
            env["FEEDBACK_SURVEY_TOKEN_SECRET"] = hashlib.sha256(
                f"survey:{auth_secret}".encode()
            ).hexdigest()
    if smtp_port is not None and name == "engagement":
        env["ENGAGEMENT_SMTP_PORT"] = str(smtp_port)
    return {**env, **(extra or {})}
