"""Logging set-up: one JSON object a line, each carrying the service, correlation id and event id."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from services import context

_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

# No personal data in logs. Log statements name people only by id; this is the net for what slips through
# in a library's exception text (smtplib's SMTPRecipientsRefused carries the address, for one).
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
REDACTED_EMAIL = "<e-mail>"


def redact(text: str) -> str:
    """The text with every e-mail address replaced by a placeholder."""
    return _EMAIL.sub(REDACTED_EMAIL, text) if "@" in text else text


class ContextFilter(logging.Filter):
    """Stamps every record with the service and the correlation of the work in hand."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = getattr(record, "service", None) or self.service
        record.correlation_id = context.correlation_id.get()
        record.event_id = context.event_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "service": getattr(record, "service", None),
            "correlation_id": getattr(record, "correlation_id", None),
            "event_id": getattr(record, "event_id", None),
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and key not in line and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        # Once over the whole line: the message, the extras and the traceback alike.
        return redact(json.dumps(line, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """For people: the correlation id in brackets only where there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(service)s%(traced)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        correlation = getattr(record, "correlation_id", None)
        record.traced = f" [{correlation}]" if correlation else ""
        try:
            return redact(super().format(record))
        finally:
            del record.traced  # not a field of the record for any other handler


def setup(service: str, level: str = "info", fmt: str = "json") -> None:
    """Configure the root logger once per process (idempotent: a second call replaces the handler)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_twincity", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._twincity = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter(service))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Library chatter (kombu/amqp reconnect noise, werkzeug per-request lines) stays at warning.
    for noisy in ("amqp", "kombu", "pika", "werkzeug", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
