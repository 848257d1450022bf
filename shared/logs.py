"""JSON logs, one object per line, carrying the request or event being worked on."""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
event_id: ContextVar[str | None] = ContextVar("event_id", default=None)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9\-]+\.)+[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\w.-])\+?\d[\d \-()]{7,}\d(?![\w.-])")


def mask_personal_data(text: str) -> str:
    """Mask e-mail addresses and phone numbers: personal data never reaches the logs."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@***", text)
    return _PHONE.sub(lambda m: "***" + m.group(0)[-2:], text)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": mask_personal_data(record.getMessage()),
        }
        if (rid := request_id.get()) is not None:
            doc["request_id"] = rid
        if (eid := event_id.get()) is not None:
            doc["event_id"] = eid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = mask_personal_data(value) if isinstance(value, str) else value
        if record.exc_info:
            doc["exc"] = mask_personal_data(self.formatException(record.exc_info))
        return mask_personal_data(json.dumps(doc, default=str, ensure_ascii=False))


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_personal_data(super().format(record))


def configure(service: str, *, level: str = "INFO", json_format: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_format:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        # uvicorn --no-access-log leaves its access logger with no handler and no
        # propagation; it writes a line per request only where the logger has a handler
        # somewhere, so it stays that way (otherwise our handler brought the lines back).
        switched_off = name == "uvicorn.access" and not logger.handlers and not logger.propagate
        logger.handlers[:] = []
        logger.propagate = not switched_off
