"""An e-mail's bytes written straight from a rendered message.

The sender used to build an ``email.message.EmailMessage`` (default policy) and
let aiosmtplib's ``send_message`` flatten it. Every header went through the
header registry's parser and refolder, and that was most of the sender's CPU per
message. ``Composer`` writes the same message directly: the same headers in the
same order (From, To, Subject, Date, Message-ID, then the MIME headers), the same
part layout (``text/plain``, or ``multipart/alternative`` with ``text/html``
when there is HTML), and the same transfer-encoding choice per part as
``EmailMessage.set_content`` (7bit, 8bit, quoted-printable or base64, and 8bit
turned into base64 for a server without 8BITMIME, as the generator did).

A header is written here only in shapes that are simple to get right: an ASCII
subject of single-spaced printable words (folded at spaces), a display name of
such words (quoted if it holds specials), a non-ASCII subject or name as RFC 2047
base64 encoded-words, a dot-atom address, a plain Message-ID. Anything else (a
control character, text that looks like an encoded-word, a word too long to
fold, a name too long for one encoded-word, a non-ASCII address needing
SMTPUTF8) goes through the standard library's header classes for that one
header, so its bytes, and the ``ValueError`` for a header that cannot be
written, are the library's own.
"""

from __future__ import annotations

import binascii
import random
import re
import sys
from base64 import b64encode
from dataclasses import dataclass
from datetime import datetime
from email import policy as policies
from email import quoprimime
from email.headerregistry import Address
from email.utils import format_datetime, parseaddr
from functools import cache

from services.engagement.rendering import RenderedMessage

CRLF = b"\r\n"
MAX_LINE = 78  # email.policy.SMTP.max_line_length: where the generator folded
_ENCODED_WORD = 75  # RFC 2047's limit for one encoded-word
_EW_OPEN, _EW_CLOSE = "=?utf-8?b?", "?="

_PLAUSIBLE_ADDRESS = re.compile(r"[^@\s\"<>,;]+@[^@\s\"<>,;]+\.[^@\s\"<>,;]+")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_DOMAIN = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
# Printable ASCII words, one space apart, no space at either end.
_WORDS = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Words of any script, one space apart (a name the library would not trim or squeeze).
_NAME = re.compile(r"[^\s\x00-\x1f\x7f]+(?: [^\s\x00-\x1f\x7f]+)*")
_SPECIALS = frozenset('()<>@,:;.\\"[]')
_MESSAGE_ID = re.compile(r"<[A-Za-z0-9._-]+@[A-Za-z0-9.-]+>")
# The generator's boundary: fifteen '=', a 19-digit random number, '=='.
_BOUNDARY_DIGITS = len(repr(sys.maxsize - 1))


@dataclass(frozen=True, slots=True)
class Part:
    """One text part, encoded as for a server with 8BITMIME."""

    subtype: str  # "plain" or "html"
    encoding: str  # Content-Transfer-Encoding
    body: bytes  # CRLF line ends
    raw: bytes  # the text in UTF-8 with LF line ends, for re-encoding an 8bit body


@dataclass(frozen=True, slots=True)
class Mail:
    """A composed message: its headers and parts, flattened for a given server."""

    head: bytes  # From to Message-ID, each line ending in CRLF
    parts: tuple[Part, ...]
    utf8: bool  # an address is not ASCII: the server must offer SMTPUTF8

    def as_bytes(self, *, eight_bit: bool) -> bytes:
        """The message as sent; ``eight_bit``: the server offered 8BITMIME."""
        parts = [_for_server(p, eight_bit) for p in self.parts]
        if len(parts) == 1:
            (part,) = parts
            return b"".join((self.head, _part_head(part, mime_version=True), CRLF, part.body))
        boundary = _boundary(parts)
        out = [
            self.head,
            b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n boundary="',
            boundary,
            b'"\r\n\r\n',
        ]
        for index, part in enumerate(parts):
            # ``add_alternative`` gave the second part a MIME-Version of its own.
            out += [
                b"--" if index == 0 else b"\r\n--",
                boundary,
                CRLF,
                _part_head(part, mime_version=index > 0),
                CRLF,
                part.body,
            ]
        out += [b"\r\n--", boundary, b"--\r\n"]
        return b"".join(out)


class Composer:
    """Composes messages from one sender address (``mail_from``, as in the settings)."""

    def __init__(self, mail_from: str) -> None:
        self.mail_from = mail_from
        self.sender = parseaddr(mail_from)[1]
        self._domain = self.sender.rpartition("@")[2] or "keepwell.local"

    def message_id(self, outreach_id: str) -> str:
        """A Message-ID stable across retries, so mail systems can drop a re-sent copy."""
        return f"<{outreach_id}@{self._domain}>"

    def compose(
        self,
        rendered: RenderedMessage,
        *,
        to_email: str,
        to_name: str | None,
        message_id: str,
        now: datetime,
    ) -> Mail:
        """Raises ``ValueError`` for an address, header or text that cannot be written."""
        if not _PLAUSIBLE_ADDRESS.fullmatch(to_email):
            raise ValueError(f"not an e-mail address: {to_email!r}")
        utf8 = not (self.sender.isascii() and to_email.isascii())
        username, _, domain = to_email.rpartition("@")
        head = b"".join(
            (
                _from_header(self.mail_from, utf8),
                _to_header(to_name or "", username, domain, utf8),
                _subject_header(rendered.subject, utf8),
                b"Date: " + format_datetime(now).encode("ascii") + CRLF,
                _message_id_header(message_id, utf8),
            )
        )
        parts = [_part("plain", rendered.text)]
        if rendered.html is not None:
            parts.append(_part("html", rendered.html))
        return Mail(head=head, parts=tuple(parts), utf8=utf8)


@cache
def _from_header(mail_from: str, utf8: bool) -> bytes:
    return _library_header("From", mail_from, utf8)


def _to_header(name: str, username: str, domain: str, utf8: bool) -> bytes:
    if not utf8 and _DOT_ATOM.fullmatch(username) and _DOMAIN.fullmatch(domain):
        angle = f"<{username}@{domain}>"
        if not name:
            line = f"To: {username}@{domain}"
            if len(line) <= MAX_LINE:
                return line.encode("ascii") + CRLF
        elif name.isascii():
            if _WORDS.fullmatch(name) and "=?" not in name:
                shown = _quoted(name) if not _SPECIALS.isdisjoint(name) else name
                line = f"To: {shown} {angle}"
                if len(line) <= MAX_LINE:
                    return line.encode("ascii") + CRLF
        elif _NAME.fullmatch(name):
            # One encoded-word only: readers differ on the space between two in a name.
            words = _encoded_words(name, first=MAX_LINE - len("To: "))
            if len(words) == 1:
                (word,) = words
                if len("To: ") + len(word) + 1 + len(angle) <= MAX_LINE:
                    return f"To: {word} {angle}\r\n".encode("ascii")
                if 1 + len(angle) <= MAX_LINE:
                    return f"To: {word}\r\n {angle}\r\n".encode("ascii")
    address = Address(display_name=name, username=username, domain=domain)
    return _library_header("To", address, utf8)


def _subject_header(subject: str, utf8: bool) -> bytes:
    if not utf8 and subject:
        if subject.isascii():
            if _WORDS.fullmatch(subject) and "=?" not in subject:
                folded = _folded_subject(subject)
                if folded is not None:
                    return folded
        elif not _CONTROL.search(subject):
            words = _encoded_words(subject, first=MAX_LINE - len("Subject: "))
            return ("Subject: " + "\r\n ".join(words) + "\r\n").encode("ascii")
    return _library_header("Subject", subject, utf8)


def _message_id_header(value: str, utf8: bool) -> bytes:
    line = f"Message-ID: {value}"
    if not utf8 and _MESSAGE_ID.fullmatch(value) and len(line) <= MAX_LINE:
        return line.encode("ascii") + CRLF
    return _library_header("Message-ID", value, utf8)


def _library_header(name: str, value: object, utf8: bool) -> bytes:
    """The header as ``EmailMessage`` stored it and the generator wrote it."""
    policy = policies.SMTPUTF8 if utf8 else policies.SMTP
    folded: str = policy.header_factory(name, value).fold(policy=policy)
    return folded.encode("utf-8" if utf8 else "ascii", "surrogateescape")


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _folded_subject(subject: str) -> bytes | None:
    """``subject`` (ASCII words) folded as the library folds it; None if a word cannot fit.

    What does not fit beside the label goes to the next line whole if it fits there,
    else word by word, each fold before a space.
    """
    line = f"Subject: {subject}"
    if len(line) <= MAX_LINE:
        return line.encode("ascii") + CRLF
    if 1 + len(subject) <= MAX_LINE:
        return f"Subject:\r\n {subject}\r\n".encode("ascii")
    lines: list[str] = []
    current = "Subject:"
    for word in subject.split(" "):
        if len(current) + 1 + len(word) <= MAX_LINE:
            current += " " + word
        elif len(word) + 1 <= MAX_LINE and current != "Subject:":
            lines.append(current)
            current = " " + word
        else:
            return None
    lines.append(current)
    return "\r\n".join(lines).encode("ascii") + CRLF


def _encoded_words(text: str, *, first: int) -> list[str]:
    """``text`` as UTF-8 base64 encoded-words, split between characters; the first fits
    in ``first`` columns, the others on continuation lines."""
    data = text.encode("utf-8")
    words: list[str] = []
    start, room = 0, min(first, _ENCODED_WORD)
    while start < len(data):
        end = min(len(data), start + (room - len(_EW_OPEN) - len(_EW_CLOSE)) // 4 * 3)
        while end < len(data) and 0x80 <= data[end] < 0xC0:  # not inside a character
            end -= 1
        words.append(_EW_OPEN + b64encode(data[start:end]).decode("ascii") + _EW_CLOSE)
        start, room = end, min(MAX_LINE - 1, _ENCODED_WORD)
    return words


def _part(subtype: str, text: str) -> Part:
    """``text`` encoded as ``EmailMessage.set_content`` chose (utf-8, its heuristics)."""
    lines = text.encode("utf-8").splitlines()
    raw = b"\n".join(lines) + b"\n"
    if max(map(len, lines), default=0) <= MAX_LINE:
        encoding = "7bit" if raw.isascii() else "8bit"
        return Part(subtype, encoding, CRLF.join(lines) + CRLF, raw)
    # Long lines: quoted-printable unless base64 is shorter over the first ten lines.
    sniff = b"\n".join(lines[:10]) + b"\n"
    quoted = quoprimime.body_encode(sniff.decode("latin-1"), MAX_LINE)
    if len(quoted) > len(binascii.b2a_base64(sniff)):
        return Part(subtype, "base64", _base64(raw), raw)
    if len(lines) > 10:
        quoted = quoprimime.body_encode(raw.decode("latin-1"), MAX_LINE)
    return Part(subtype, "quoted-printable", quoted.replace("\n", "\r\n").encode("ascii"), raw)


def _base64(data: bytes) -> bytes:
    step = MAX_LINE // 4 * 3
    lines = (binascii.b2a_base64(data[i : i + step]) for i in range(0, len(data), step))
    return b"".join(lines).replace(b"\n", CRLF)


def _for_server(part: Part, eight_bit: bool) -> Part:
    if part.encoding == "8bit" and not eight_bit:
        return Part(part.subtype, "base64", _base64(part.raw), part.raw)
    return part


def _part_head(part: Part, *, mime_version: bool) -> bytes:
    return b"".join(
        (
            b"Content-Type: text/",
            part.subtype.encode("ascii"),
            b'; charset="utf-8"\r\nContent-Transfer-Encoding: ',
            part.encoding.encode("ascii"),
            CRLF,
            b"MIME-Version: 1.0\r\n" if mime_version else b"",
        )
    )


def _boundary(parts: list[Part]) -> bytes:
    while True:
        token = random.randrange(sys.maxsize)
        boundary = f"{'=' * 15}{token:0{_BOUNDARY_DIGITS}d}==".encode("ascii")
        if not any(b"--" + boundary in part.body for part in parts):
            return boundary
