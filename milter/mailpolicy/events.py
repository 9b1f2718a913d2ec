"""JSON logging: one JSON object per line for events (``"event": ...``) and diagnostics.

Events are the stable interface read by ``mailpolicy report``; their fields are documented in
README.md. Diagnostics carry ``level``, ``logger`` and ``msg`` and never an ``event`` key."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from typing import Any

from mailpolicy import EVENT_SCHEMA
from mailpolicy.model import iso

EVENTS = logging.getLogger("mailpolicy.event")
_DIAG_FIELDS = ("conn_id", "queue_id", "callback", "check", "policy", "path", "error")
# What json.dumps(out, separators=(",", ":"), ensure_ascii=False, default=str) builds on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


class JsonFormatter(logging.Formatter):
    def __init__(self, host: str):
        super().__init__()
        self.host = host

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        out: dict[str, Any]
        if isinstance(event, dict):
            out = {"ts": iso(record.created), "host": self.host, "schema": EVENT_SCHEMA, **event}
        else:
            out = {
                "ts": iso(record.created),
                "host": self.host,
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
            }
            for key in _DIAG_FIELDS:
                value = getattr(record, key, None)
                if value is not None:
                    out[key] = value
            if record.exc_info:
                out["traceback"] = self.formatException(record.exc_info)
        return _ENCODER.encode(out)


def setup(host: str, stdout: bool, file: str, level: str) -> None:
    """Send events and diagnostics to stdout and/or a file (reopened after logrotate moves it)."""
    fmt = JsonFormatter(host)
    handlers: list[logging.Handler] = []
    if stdout:
        handlers.append(logging.StreamHandler(sys.stdout))
    if file:
        handlers.append(logging.handlers.WatchedFileHandler(file, encoding="utf-8"))
    root = logging.getLogger("mailpolicy")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    if not handlers:
        root.addHandler(logging.NullHandler())
    root.setLevel(level.upper())
    root.propagate = False
    # Events are always written, whatever the diagnostics level.
    EVENTS.setLevel(logging.INFO)


def emit(record: dict[str, Any]) -> None:
    EVENTS.info(record["event"], extra={"event": record})
