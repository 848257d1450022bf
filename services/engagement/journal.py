"""The sender's journal: messages handed to the provider that are not recorded yet.

Without it delivery is at-least-once (see ``sender``): a crash after the message went
out and before the commit that records it leaves the claim in ``sending``, and after
``sending_timeout_seconds`` it is sent again. The journal closes that window. Each step
is appended to a local file as one JSON line, with a plain ``write`` that a killed
process cannot leave half done (the data is in the kernel's page cache when it returns;
a lost machine loses it, a killed process does not):

- ``handed``: the whole message, final dot included, is in the kernel's socket buffer
  (written just after it, with no ``await`` between). From there the kernel delivers it
  even if the process is killed: on exit the socket's pending data is sent before the
  FIN, and the server's reply can only arrive once it has all of it;
- ``accepted``: the server's 250, with its reply;
- ``failed``: the server refused it or the session broke first; the failure is
  recorded (retried later) like any other.

A sender that starts, or whose settling transaction failed, records what the journal
holds as sent before it claims anything, instead of sending those messages again. A
message only ``handed`` is recorded as sent with ``IN_DOUBT`` as its reply: it is
at-most-once for that moment, as a second thank-you is what the journey promises not
to send. Only messages written over a pipelined session (``mailer._pipelined``, which
every common server offers) get the ``handed`` step; webhooks and one-command-at-a-time
sessions are journaled from their acceptance.

Entries are fenced as any outcome is (``attempts``): if another replica took the claim
over and sent it meanwhile, settling the entry changes nothing. The file holds no
address or message, only the ids needed to record the outcome and its
``outreach.sent`` event. It is emptied whenever nothing in it awaits a commit,
rewritten with only what does once it grows past ``MAX_BYTES``, and removed on a clean
stop with nothing left in it.

Each running sender holds an exclusive ``flock`` on its file, so two processes sharing
a directory never use one file: the second takes ``<name>.1.jsonl`` and so on. The lock
goes with the process, so a sender restarted after a crash takes the file over. The
journal protects only while its directory outlives the process: under Kubernetes an
``emptyDir`` volume (kept across container restarts, not pod moves).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from services.engagement.delivery import Claim

log = logging.getLogger(__name__)

MAX_BYTES = 1 << 20
MAX_FILES = 64  # senders sharing one directory for the same database

HANDED, ACCEPTED, FAILED = "handed", "accepted", "failed"
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
IN_DOUBT = "in doubt: handed to the server in full; the sender stopped before its reply"


@dataclass(frozen=True, slots=True)
class Entry:
    """What settling an accepted message needs (``delivery.record_sent_many``)."""

    outreach_id: str
    attempt: int
    customer_id: str
    journey: str
    channel: str
    template: str
    trigger_event_id: str | None
    reply: str
    state: str = ACCEPTED

    @classmethod
    def of(cls, claim: Claim, reply: str, state: str = ACCEPTED) -> Entry:
        return cls(
            outreach_id=claim.outreach_id,
            attempt=claim.attempt,
            customer_id=claim.customer_id,
            journey=claim.journey,
            channel=claim.channel,
            template=claim.template,
            trigger_event_id=claim.trigger_event_id,
            reply=reply,
            state=state,
        )

    @property
    def recorded_reply(self) -> str:
        """The reply to record it with: the server's, or ``IN_DOUBT`` if never read."""
        return self.reply if self.state == ACCEPTED else IN_DOUBT

    def claim(self) -> Claim:
        """The claim as far as settling reads it (nothing to render or address)."""
        return Claim(
            outreach_id=self.outreach_id,
            customer_id=self.customer_id,
            journey=self.journey,
            channel=self.channel,
            template=self.template,
            trigger_event_id=self.trigger_event_id,
            attempt=self.attempt,
            context={},
            address="",
            name=None,
            language=None,
        )

    def line(self) -> bytes:
        fields = {
            "outreach_id": self.outreach_id,
            "attempt": self.attempt,
            "customer_id": self.customer_id,
            "journey": self.journey,
            "channel": self.channel,
            "template": self.template,
            "trigger_event_id": self.trigger_event_id,
            "reply": self.reply,
            "state": self.state,
        }  # not dataclasses.asdict, which deep-copies: two lines per e-mail
        return _ENCODE(fields).encode() + b"\n"


Key = tuple[str, int]  # outreach id, attempt


def default_path(database_url: str, directory: str) -> Path | None:
    """Where a sender of this database keeps its journal: in ``directory`` if given, else
    beside a SQLite database's file, else under ``var/``; None for an in-memory SQLite
    database (nothing outlives the process). The name carries a digest of the URL, so
    stacks of different databases on one host never share a file."""
    url = make_url(database_url)
    digest = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:12]
    name = f"engagement-sent-{digest}.jsonl"
    if directory:
        return Path(directory) / name
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return None
        return Path(url.database).with_name(f"{Path(url.database).name}-sent.jsonl")
    return Path("var") / name


class SendJournal:
    """One sender's journal file (``open``); every method is synchronous and quick."""

    def __init__(self, path: Path, fd: int, found: list[Entry]) -> None:
        self.path = path
        self._fd = fd
        self._size = os.fstat(fd).st_size
        self._awaiting: dict[Key, Entry] = {}  # being settled by a worker
        self._left: dict[Key, Entry] = {(e.outreach_id, e.attempt): e for e in found}
        self._by_id: dict[str, Entry] = {e.outreach_id: e for e in found}

    @classmethod
    def open(cls, path: Path) -> SendJournal:
        """Take the first file of ``path``'s series no running sender holds, and read
        what a sender before this one left in it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        for n in range(MAX_FILES):
            candidate = path if n == 0 else path.with_name(f"{path.stem}.{n}{path.suffix}")
            fd = os.open(candidate, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            found = _read(fd, candidate)
            if found:
                log.info(
                    "send journal: %d accepted messages to record as sent",
                    len(found),
                    extra={"path": str(candidate)},
                )
            return cls(candidate, fd, found)
        raise RuntimeError(f"{MAX_FILES} senders hold journals beside {path}")

    def handed(self, claim: Claim) -> None:
        """``claim``'s message is in the kernel's hands, final dot and all."""
        self._append(Entry.of(claim, "", HANDED))

    def accepted(self, claim: Claim, reply: str) -> None:
        """The provider accepted ``claim``'s message: written before anything else runs."""
        self._append(Entry.of(claim, reply))

    def failed(self, claim: Claim) -> None:
        """The message handed over was refused, or its session broke before the reply:
        its failure is recorded as any other, and retried."""
        entry = self._awaiting.pop((claim.outreach_id, claim.attempt), None)
        if entry is not None:
            self._forget(entry)
            self._write(Entry.of(claim, "", FAILED))
            self._tidy()

    def settled(self, claim: Claim) -> None:
        """Its outcome committed (or the claim was lost to another sender)."""
        key = (claim.outreach_id, claim.attempt)
        for entry in (self._awaiting.pop(key, None), self._left.pop(key, None)):
            if entry is not None:
                self._forget(entry)
        self._tidy()

    def earlier(self, outreach_id: str) -> Entry | None:
        """The entry of an earlier attempt at this message that was handed over and is
        not recorded yet: its claim was taken back while its commit waited (the database
        away for longer than ``sending_timeout_seconds``), or it is a leftover whose
        settling failed. Such a message is recorded, not sent again."""
        return self._by_id.get(outreach_id)

    def not_settled(self, claim: Claim) -> None:
        """Its settling transaction failed: left for ``leftovers``."""
        entry = self._awaiting.pop((claim.outreach_id, claim.attempt), None)
        if entry is not None:
            self._left[(entry.outreach_id, entry.attempt)] = entry

    def leftovers(self) -> list[Entry]:
        """Accepted messages no worker is settling: found at start, or whose commit failed."""
        return list(self._left.values())

    def _append(self, entry: Entry) -> None:
        """Write ``entry`` and keep it until its outcome commits."""
        self._write(entry)
        self._awaiting[(entry.outreach_id, entry.attempt)] = entry
        self._by_id[entry.outreach_id] = entry

    def _write(self, entry: Entry) -> None:
        line = entry.line()
        _write_all(self._fd, line)
        self._size += len(line)

    def _forget(self, entry: Entry) -> None:
        if self._by_id.get(entry.outreach_id) is entry:
            del self._by_id[entry.outreach_id]

    def close(self) -> None:
        """Release the file; removed if nothing in it awaits a commit."""
        if not self._awaiting and not self._left:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._fd)

    def _tidy(self) -> None:
        if not self._awaiting and not self._left:
            if self._size:
                os.ftruncate(self._fd, 0)
                self._size = 0
        elif self._size > MAX_BYTES:
            self._rewrite()

    def _rewrite(self) -> None:
        """Replace the file by one holding only what still awaits a commit."""
        lines = b"".join(e.line() for e in (*self._awaiting.values(), *self._left.values()))
        spare = self.path.with_name(self.path.name + ".new")
        fd = os.open(spare, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a fresh file: nobody else can hold it
        _write_all(fd, lines)
        os.replace(spare, self.path)
        os.close(self._fd)
        self._fd, self._size = fd, len(lines)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read(fd: int, path: Path) -> list[Entry]:
    """Each message's last step in the file, unless it ``failed``; a line that does not
    parse (a torn last write after a power loss) is logged and skipped."""
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 16, offset):
        chunks.append(chunk)
        offset += len(chunk)
    entries: dict[Key, Entry] = {}
    for number, raw in enumerate(b"".join(chunks).splitlines(), start=1):
        try:
            entry = Entry(**json.loads(raw))
            entries[(entry.outreach_id, entry.attempt)] = entry
        except (ValueError, TypeError) as exc:
            log.warning(
                "send journal: line %d unreadable, skipped (%s)",
                number,
                exc,
                extra={"path": str(path)},
            )
    return [e for e in entries.values() if e.state != FAILED]
