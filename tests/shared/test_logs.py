"""Logs are JSON lines with the event or request id, and never carry personal data."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from shared import logs


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        ("sent to lan.nguyen@example.com", "lan.nguyen@example.com", "l***@***"),
        ("call +84 90 123 4567 today", "90 123 4567", "***67"),
        ("sms 0901234567 failed", "0901234567", "***67"),
        ("order total 125000.50 EUR", None, "125000.50"),
        ("at 2026-11-25T09:30:00+07:00", None, "2026-11-25T09:30:00+07:00"),
    ],
)
def test_personal_data_is_masked(text: str, hidden: str | None, kept: str) -> None:
    masked = logs.mask_personal_data(text)
    if hidden:
        assert hidden not in masked
    assert kept in masked


def test_a_json_line_carries_the_event_id_and_masks_extras() -> None:
    formatter = logs.JsonFormatter("loyalty")
    token = logs.event_id.set("evt-1")
    try:
        record = logging.LogRecord(
            "x", logging.WARNING, __file__, 1, "mail to %s", ("a@b.io",), None
        )
        record.customer_email = "someone@example.org"
        line = json.loads(formatter.format(record))
    finally:
        logs.event_id.reset(token)
    assert line["event_id"] == "evt-1"
    assert line["service"] == "loyalty"
    assert line["level"] == "warning"
    assert "a@b.io" not in line["msg"]
    assert "someone@example.org" not in line["customer_email"]


@pytest.fixture
def uvicorn_loggers() -> Iterator[None]:
    """Put back the uvicorn loggers and the root handlers as they were."""
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    saved = [(logging.getLogger(n), logging.getLogger(n).handlers[:]) for n in names]
    propagate = [logging.getLogger(n).propagate for n in names]
    root = logging.getLogger()
    root_handlers, root_level = root.handlers[:], root.level
    yield
    for (logger, handlers), flag in zip(saved, propagate, strict=True):
        logger.handlers[:] = handlers
        logger.propagate = flag
    root.handlers[:] = root_handlers
    root.setLevel(root_level)


@pytest.mark.usefixtures("uvicorn_loggers")
def test_uvicorn_access_lines_stay_off_with_no_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []  # what `uvicorn --no-access-log` leaves
    access.propagate = False
    logs.configure("svc")
    assert not access.hasHandlers()  # uvicorn writes a line per request only if True


@pytest.mark.usefixtures("uvicorn_loggers")
def test_uvicorn_access_lines_go_through_our_handler_when_uvicorn_writes_them() -> None:
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = [logging.StreamHandler()]  # uvicorn's own handler, access log on
    access.propagate = False
    logs.configure("svc")
    assert access.handlers == []
    assert access.propagate
    assert access.hasHandlers()
