"""A local SMTP server that accepts every message and shows it.

Each message is printed as a one-line summary and saved as an .eml file, so a
developer can see what the platform sends without a real mail server.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import threading
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


class SinkHandler:
    def __init__(self, *, out_dir: Path | None = None, echo: bool = False) -> None:
        self.messages: list[ReceivedMail] = []
        self._out_dir = out_dir
        self._echo = echo
        self._lock = threading.Lock()
        self.arrived = threading.Condition(self._lock)

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--out", type=Path, default=Path("var/mail"))
    args = parser.parse_args()
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
