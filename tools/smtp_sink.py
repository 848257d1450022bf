"""A local SMTP server that accepts every message and shows it.

Each message is printed as a one-line summary and saved as an .eml file, so a
developer can see what the platform sends without a real mail server.

``--arrivals`` runs it for a benchmark instead: nothing is parsed or saved, and each
accepted message is one ``<unix time> <recipient>`` line on stdout, which
``ArrivalSink`` reads from another process (so the sink's CPU is not the benchmark's).
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    received_at: datetime

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain", "html"))
        return part.get_content() if part is not None else ""


class OffersPipelining:
    """An aiosmtpd handler's EHLO hook that offers PIPELINING (RFC 2920), as real servers
    do, unless ``pipelining`` is false.

    aiosmtpd reads pipelined commands in order and answers each, but does not say so.
    A hook that answers EHLO must remember the client's name itself."""

    pipelining = True

    async def handle_EHLO(
        self,
        _server: Any,
        session: Session,
        _envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if not self.pipelining:
            return responses
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


class SinkHandler(OffersPipelining):
    def __init__(self, *, out_dir: Path | None = None, echo: bool = False) -> None:
        self.messages: list[ReceivedMail] = []
        self._out_dir = out_dir
        self._echo = echo
        self._lock = threading.Lock()
        self.arrived = threading.Condition(self._lock)
        self._stalled_until = 0.0  # time.monotonic()

    def stall(self, seconds: float) -> None:
        """For the next ``seconds``, hold the reply to each message's final dot until
        they are over (the message is stored at once): a relay too slow to answer."""
        self._stalled_until = time.monotonic() + seconds

    async def handle_DATA(self, _server: Any, _session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        assert isinstance(raw, bytes)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        mail = ReceivedMail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=message,
            received_at=datetime.now(UTC),
        )
        with self.arrived:
            self.messages.append(mail)
            index = len(self.messages)
            self.arrived.notify_all()
        if self._out_dir is not None:
            self._out_dir.mkdir(parents=True, exist_ok=True)
            (self._out_dir / f"{mail.received_at:%Y%m%dT%H%M%S}-{index:05d}.eml").write_bytes(raw)
        if self._echo:
            print(
                f"[smtp-sink] {mail.received_at:%H:%M:%S} to={','.join(mail.rcpt_tos)} "
                f"subject={mail.subject!r}",
                flush=True,
            )
        if (held := self._stalled_until - time.monotonic()) > 0:
            await asyncio.sleep(held)
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float) -> list[ReceivedMail]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)


def start(
    port: int, *, out_dir: Path | None = None, echo: bool = False
) -> tuple[Controller, SinkHandler]:
    handler = SinkHandler(out_dir=out_dir, echo=echo)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, handler


class _ArrivalPrinter(OffersPipelining):
    """Accepts every message; prints when and to whom, nothing else."""

    async def handle_DATA(self, _server: Any, _session: Session, envelope: Envelope) -> str:
        now = time.time()
        sys.stdout.write("".join(f"{now:.6f} {rcpt}\n" for rcpt in envelope.rcpt_tos))
        sys.stdout.flush()
        return "250 Message accepted for delivery"


@dataclass(frozen=True)
class Arrival:
    rcpt_tos: tuple[str, ...]
    received_at: datetime


class ArrivalSink:
    """An ``--arrivals`` sink in its own process, seen through what it prints.

    ``messages`` and ``wait_for`` answer as ``SinkHandler``'s do, with arrivals
    (recipient and time) in place of parsed messages.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[Arrival] = []
        self.arrived = threading.Condition()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tools.smtp_sink", "--arrivals", "--port", str(port)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the arrivals sink did not start")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            stamp, rcpt = line.split(maxsplit=1)
            arrival = Arrival((rcpt.strip(),), datetime.fromtimestamp(float(stamp), UTC))
            with self.arrived:
                self.messages.append(arrival)
                self.arrived.notify_all()

    def wait_for(self, count: int, timeout: float) -> list[Arrival]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)
        self._reader.join(10)


def _serve_arrivals(port: int) -> None:
    controller = Controller(_ArrivalPrinter(), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--out", type=Path, default=Path("var/mail"))
    parser.add_argument("--arrivals", action="store_true", help="benchmark mode (see above)")
    args = parser.parse_args()
    if args.arrivals:
        _serve_arrivals(args.port)
        return
    controller, _ = start(args.port, out_dir=args.out, echo=True)
    print(
        f"[smtp-sink] listening on 127.0.0.1:{args.port}; saving messages to {args.out}/",
        flush=True,
    )
    try:
        asyncio.run(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
