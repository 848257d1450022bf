"""The composed e-mail is the one ``EmailMessage`` built and aiosmtplib flattened before.

``reference_bytes`` is the composer the sender used until the bytes were written directly:
an ``EmailMessage`` (default policy) flattened as ``send_message`` did. Both are parsed
with ``BytesParser(policy=default)`` and compared header by header and part by part;
where every header is ASCII the bytes must be the same but for the random boundary.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from email.utils import format_datetime
from typing import Any

import pytest
from aiosmtplib.email import flatten_message

from services.engagement import catalog
from services.engagement.composing import Composer
from services.engagement.rendering import RenderedMessage, Renderer

MAIL_FROM = "Keepwell <hello@keepwell.local>"
NOW = datetime(2026, 12, 4, 16, 30, 5, tzinfo=UTC)
MESSAGE_ID = "<6f1c2a9e-0b7d-4c55-9a43-3e1f0c8d2b71@keepwell.local>"
_BOUNDARY = re.compile(rb"={15}\d{19}==")

NAMES = [
    "Lan",
    None,
    "J. O'Brien",  # specials: quoted
    'Lan "Bông" Nguyễn, Jr.',  # non-ASCII with specials
    "Nguyễn Thị Minh Khai",
    "Trần Văn Một Hai Ba Bốn Năm Sáu Bảy Tám Chín Mười",  # too long for one encoded-word
    "Alexandra Konstantinopoulou-Papadimitriou Montgomery-Featherstonehaugh III",
    "Lan\x00",  # a control character: the library's header, as before
]


def reference_bytes(
    rendered: RenderedMessage,
    *,
    to_email: str,
    to_name: str | None,
    eight_bit: bool,
    now: datetime = NOW,
    message_id: str = MESSAGE_ID,
) -> bytes:
    username, _, domain = to_email.rpartition("@")
    message = EmailMessage()
    message["From"] = MAIL_FROM
    message["To"] = Address(display_name=to_name or "", username=username, domain=domain)
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    message.set_content(rendered.text)
    if rendered.html is not None:
        message.add_alternative(rendered.html, subtype="html")
    utf8 = not to_email.isascii()
    return flatten_message(message, utf8=utf8, cte_type="8bit" if eight_bit else "7bit")


def _composed(
    rendered: RenderedMessage, *, to_email: str, to_name: str | None, eight_bit: bool
) -> bytes:
    mail = Composer(MAIL_FROM).compose(
        rendered, to_email=to_email, to_name=to_name, message_id=MESSAGE_ID, now=NOW
    )
    return mail.as_bytes(eight_bit=eight_bit)


def read_back(raw: bytes) -> dict[str, Any]:
    """What a mail program reads: headers (decoded, in order) and each part's content."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    parts = list(message.iter_parts()) if message.is_multipart() else [message]
    return {
        "headers": [
            (k, v) for k, v in _headers(message) if not (k == "Content-Type" and "boundary" in v)
        ],
        "type": message.get_content_type(),
        "parts": [
            {
                "headers": list(_headers(part)) if part is not message else [],
                "type": part.get_content_type(),
                "charset": part.get_content_charset(),
                "encoding": part["Content-Transfer-Encoding"],
                "content": part.get_content(),
            }
            for part in parts
        ],
        "defects": [type(d).__name__ for d in message.defects],
    }


def _assert_same(new: bytes, old: bytes, rendered: RenderedMessage) -> None:
    """``new`` reads as ``old`` did, and its subject is the rendered one.

    The email package's folder could lose the space where it broke a non-ASCII subject
    between two encoded-words ("Bốn Năm" read back as "BốnNăm"); the composer does not,
    so for the subject the rendered text is the reference.
    """
    got, want = read_back(new), read_back(old)
    subject = dict(want["headers"])["Subject"]
    if subject != rendered.subject and _squeezed(subject) == _squeezed(rendered.subject):
        want["headers"] = [
            ("Subject", rendered.subject) if k == "Subject" else (k, v) for k, v in want["headers"]
        ]
    assert got == want


def _squeezed(text: str) -> str:
    return text.replace(" ", "")


def _headers(message: MIMEPart) -> list[tuple[str, str]]:
    return [(k, str(v)) for k, v in message.items()]


def _templates() -> list[tuple[str, str]]:
    names = Renderer()._names
    return sorted((n.split(".")[0], n.split(".")[1]) for n in names if n.endswith(".txt"))


@pytest.mark.parametrize("eight_bit", [True, False], ids=["8bitmime", "7bit"])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("template", "language"), _templates())
def test_every_template_reads_as_the_email_package_wrote_it(
    template: str, language: str, name: str | None, eight_bit: bool
) -> None:
    context = catalog.sample_context(template) | {"name": name}
    rendered = Renderer().render(template, language=language, context=context)
    old = reference_bytes(rendered, to_email="lan@example.com", to_name=name, eight_bit=eight_bit)
    new = _composed(rendered, to_email="lan@example.com", to_name=name, eight_bit=eight_bit)
    _assert_same(new, old, rendered)
    if (name or "").isascii() and rendered.subject.isascii():
        assert _BOUNDARY.sub(b"B", new) == _BOUNDARY.sub(b"B", old)


@pytest.mark.parametrize(
    "rendered",
    [
        RenderedMessage(subject="Short", text="Hello\n"),
        RenderedMessage(
            subject=" ".join(["A subject far longer than one line of mail header"] * 4),
            text="Hello\n",
        ),
        RenderedMessage(subject="x" * 90, text="a word that cannot be folded\n"),
        RenderedMessage(subject="Looks =?utf-8?q?encoded?= but is not", text="Hi\n"),
        RenderedMessage(
            subject="Cảm ơn bạn đã mua sắm cùng chúng tôi, Nguyễn Thị Minh Khai, hẹn gặp lại",
            text="Chào bạn,\n" + "Cảm ơn bạn đã mua sắm cùng chúng tôi. " * 4 + "\n",
            html="<p>Chào bạn</p>\n" * 3,
        ),
        RenderedMessage(subject="Long lines", text="word " * 40 + "\n" + "line\n" * 20),
        RenderedMessage(subject="Long lines", text="José " * 30 + "\n"),
        RenderedMessage(subject="Few lines", text="x" * 100 + "\n", html="<p>" + "y" * 200),
        RenderedMessage(subject="Lone CR", text="one\rtwo\r\nthree\n.leading dot\n"),
    ],
    ids=[
        "short",
        "long-subject",
        "unfoldable-subject",
        "encoded-word-lookalike",
        "vietnamese-long",
        "long-ascii-lines",
        "long-mixed-lines",
        "long-html",
        "line-ends",
    ],
)
@pytest.mark.parametrize("eight_bit", [True, False], ids=["8bitmime", "7bit"])
def test_subjects_and_bodies_of_every_shape(rendered: RenderedMessage, eight_bit: bool) -> None:
    old = reference_bytes(rendered, to_email="lan@example.com", to_name="Lan", eight_bit=eight_bit)
    new = _composed(rendered, to_email="lan@example.com", to_name="Lan", eight_bit=eight_bit)
    _assert_same(new, old, rendered)
    if rendered.subject.isascii():
        assert _BOUNDARY.sub(b"B", new) == _BOUNDARY.sub(b"B", old)


@pytest.mark.parametrize("name", ["Nguyễn Thị Minh Khai", 'Lan "Bông" Nguyễn, Jr.', "李小龍"])
def test_a_non_ascii_name_is_one_encoded_word_that_decodes_to_the_name(name: str) -> None:
    rendered = RenderedMessage(subject=f"Cảm ơn {name}", text="Chào\n")
    new = _composed(rendered, to_email="lan@example.com", to_name=name, eight_bit=True)
    to_line = new.split(b"\r\n")[1]
    assert to_line.startswith(b"To: =?utf-8?b?")
    assert to_line.count(b"=?utf-8?") == 1
    message = BytesParser(policy=policy.default).parsebytes(new)
    (address,) = message["To"].addresses
    assert (address.display_name, address.addr_spec) == (name, "lan@example.com")
    assert message["Subject"] == f"Cảm ơn {name}"
    assert max(len(line) for line in new.split(b"\r\n")) <= 78


def test_a_non_ascii_address_is_written_for_smtputf8_as_before() -> None:
    rendered = RenderedMessage(subject="Cảm ơn", text="Chào\n", html="<p>Chào</p>\n")
    mail = Composer(MAIL_FROM).compose(
        rendered, to_email="lan@ví-dụ.vn", to_name="Lan", message_id=MESSAGE_ID, now=NOW
    )
    assert mail.utf8
    old = reference_bytes(rendered, to_email="lan@ví-dụ.vn", to_name="Lan", eight_bit=True)
    assert _BOUNDARY.sub(b"B", mail.as_bytes(eight_bit=True)) == _BOUNDARY.sub(b"B", old)


def test_an_unusable_address_is_refused() -> None:
    rendered = RenderedMessage(subject="Hi", text="Hi\n")
    with pytest.raises(ValueError, match="not an e-mail address"):
        _composed(rendered, to_email="lan at example dot com", to_name="Lan", eight_bit=True)


def test_a_name_that_would_break_the_header_is_refused_as_before() -> None:
    rendered = RenderedMessage(subject="Hi", text="Hi\n")
    name = "Lan\r\nBcc: eve@example.com"
    with pytest.raises(ValueError, match="CR or LF") as before:
        reference_bytes(rendered, to_email="lan@example.com", to_name=name, eight_bit=True)
    with pytest.raises(ValueError, match="CR or LF") as now:
        _composed(rendered, to_email="lan@example.com", to_name=name, eight_bit=True)
    assert str(now.value) == str(before.value)


def test_a_boundary_found_in_a_body_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    clash = f"{'=' * 15}{7:019d}=="
    tokens = iter([7, 8])
    monkeypatch.setattr(random, "randrange", lambda _stop: next(tokens))
    rendered = RenderedMessage(subject="Hi", text=f"--{clash}\n", html="<p>hi</p>\n")
    new = _composed(rendered, to_email="lan@example.com", to_name="Lan", eight_bit=True)
    assert f'boundary="{"=" * 15}{8:019d}=="'.encode() in new
    message = BytesParser(policy=policy.default).parsebytes(new)
    contents = [p.get_content().replace("\r\n", "\n") for p in message.iter_parts()]
    assert contents == [f"--{clash}\n", "<p>hi</p>\n"]
