"""The event wire format and the JSON log lines.

Events (``"event": "connection" | "transaction"``) are the stable interface read by
``mailpolicy report``; their fields are documented in README.md and built here, from the state
records, by :func:`transaction_record` and :func:`connection_record`. Diagnostics carry ``level``,
``logger`` and ``msg`` and never an ``event`` key.

Every line on every sink is one valid UTF-8 JSON object: values are cleaned where the records are
built (:mod:`mailpolicy.text`), and the writer checks the encoded line once more, cleaning any
string that still cannot be encoded instead of failing."""

from __future__ import annotations

import grp
import json
import logging
import logging.handlers
import os
import sys
from typing import IO, Any

from mailpolicy import EVENT_SCHEMA, systemd
from mailpolicy.model import iso
from mailpolicy.state import Connection, Transaction
from mailpolicy.text import to_str
from mailpolicy.tls import PLAINTEXT_RECORD

EVENTS = logging.getLogger("mailpolicy.event")
_DIAG_FIELDS = ("conn_id", "queue_id", "callback", "check", "policy", "path", "error", "key")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


# ---- records ----------------------------------------------------------------------------------


def transaction_record(txn: Transaction) -> dict[str, Any]:
    c = txn.conn
    rec: dict[str, Any] = {
        "event": "transaction",
        "conn_id": c.conn_id,
        "txn": txn.index,
        "queue_id": txn.queue_id,
        "start": iso(txn.started),
        "client_ip": c.client_ip_text,
        "client_port": c.client_port,
        "client_name": c.client_name,
        "helo": c.helo[-1] if c.helo else None,
        "auth": txn.auth_user,
        "mail_from": txn.mail_from,
        "rcpt_count": len(txn.recipients),
        "rcpt_rejected": txn.rcpt_rejected,
        "starttls": txn.tls is not None,
        **(txn.tls.record() if txn.tls else PLAINTEXT_RECORD),
        "policies": {name: d.record() for name, d in txn.decisions.items()},
        "final_action": txn.final_action,
        "outcome": txn.outcome,
        "stage": txn.stage,
        "unreadable": sorted(set(c.unreadable) | set(txn.unreadable)),
        "config": txn.setup.config_hash,
    }
    if txn.auth is not None:
        rec.update(txn.auth.record())
    m = txn.message
    if m is not None:
        rec["header_fields"] = m.fields
        rec["from_fields"] = m.from_count
        rec["authres_removed"] = len(m.forged)
    return rec


def connection_record(c: Connection, ended: float) -> dict[str, Any]:
    return {
        "event": "connection",
        "conn_id": c.conn_id,
        "start": iso(c.started),
        "end": iso(ended),
        "duration_s": round(ended - c.started, 6),
        "client_ip": c.client_ip_text,
        "client_port": c.client_port,
        "client_name": c.client_name,
        "daemon": c.daemon,
        "helo": list(c.helo),
        "starttls": c.tls is not None,
        **(c.tls.record() if c.tls else PLAINTEXT_RECORD),
        "transactions": c.transactions,
        "messages": c.messages,
        "outcomes": dict(c.outcomes),
        "end_stage": c.last_stage,
        "unreadable": sorted(set(c.unreadable)),
    }


# ---- encoding and writing ----------------------------------------------------------------------


def _scrub(value: Any) -> Any:
    """The value with every string made valid Unicode (the slow path, for a line that failed)."""
    if isinstance(value, str):
        return to_str(value)
    if isinstance(value, dict):
        return {to_str(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return to_str(bytes(value))
    return value


def encode(obj: dict[str, Any]) -> bytes:
    """One JSON line as UTF-8 bytes (without the newline); never raises for text content."""
    line = _ENCODER.encode(obj)
    try:
        return line.encode("utf-8")
    except UnicodeEncodeError:
        return _ENCODER.encode(_scrub(obj)).encode("utf-8")


class JsonFormatter(logging.Formatter):
    def __init__(self, host: str):
        super().__init__()
        self.host = host

    def record_dict(self, record: logging.LogRecord) -> dict[str, Any]:
        event = getattr(record, "event", None)
        if isinstance(event, dict):
            return {"ts": iso(record.created), "host": self.host, "schema": EVENT_SCHEMA, **event}
        out: dict[str, Any] = {
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
        return out

    def format(self, record: logging.LogRecord) -> str:
        return encode(self.record_dict(record)).decode("utf-8")


class _BinaryStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each line as UTF-8 bytes to the stream's buffer: the locale's encoding (ASCII under a
    bare systemd environment) can never make a line fail. When the stream is journald's
    (``journal=True``), each line starts with its syslog priority (``<6>`` for events, the level's
    for diagnostics), which journald reads and strips: ``journalctl -p err`` then shows errors."""

    def __init__(self, stream: IO[str], journal: bool = False):
        super().__init__(stream)
        self._buffer = getattr(stream, "buffer", None)
        self.journal = journal

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = self.format(record).encode("utf-8") + b"\n"
            if self.journal:
                priority = (
                    6
                    if getattr(record, "event", None) is not None
                    else systemd.PRIORITY.get(record.levelname, 6)
                )
                data = b"<%d>" % priority + data
            if self._buffer is not None:
                self._buffer.write(data)
                self._buffer.flush()
            else:
                self.stream.write(data.decode("utf-8"))
                self.flush()
        except Exception:
            self.handleError(record)


class EventFileHandler(logging.handlers.WatchedFileHandler):
    """The event file: reopened when logrotate moves it (no signal needed), and created with the
    configured mode and group every time (``log.file_mode``, ``log.file_group``), so that an admin
    in that group can read it whatever the process umask."""

    def __init__(self, filename: str, mode: int, group: str):
        self.file_mode = mode
        self.file_gid = grp.getgrnam(group).gr_gid if group else -1
        super().__init__(filename, encoding="utf-8")

    def _open(self) -> Any:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self.file_mode)
        try:
            st = os.fstat(fd)
            if st.st_mode & 0o7777 != self.file_mode and st.st_uid == os.geteuid():
                os.fchmod(fd, self.file_mode)
            if self.file_gid >= 0 and st.st_gid != self.file_gid:
                os.fchown(fd, -1, self.file_gid)
        except OSError:
            os.close(fd)
            raise
        return open(fd, "a", encoding="utf-8")


def setup(
    host: str, stdout: bool, file: str, level: str, file_mode: int = 0o640, file_group: str = ""
) -> None:
    """Send events and diagnostics to stdout and/or a file. Called at start-up and on every
    reload: the new handlers replace the old ones in one assignment (no line is lost between), and
    the old ones are closed after (which also reopens the file)."""
    fmt = JsonFormatter(host)
    handlers: list[logging.Handler] = []
    if stdout:
        handlers.append(_BinaryStreamHandler(sys.stdout, journal=systemd.journal_stream(sys.stdout)))
    if file:
        handlers.append(EventFileHandler(file, file_mode, file_group))
    for h in handlers:
        h.setFormatter(fmt)
    if not handlers:
        handlers.append(logging.NullHandler())
    root = logging.getLogger("mailpolicy")
    old = root.handlers
    root.handlers = handlers
    root.setLevel(level.upper())
    root.propagate = False
    # Events are always written, whatever the diagnostics level.
    EVENTS.setLevel(logging.INFO)
    for h in old:
        h.close()


def reopen() -> None:
    """Reopen the event file (a reload with unchanged log settings): closing a file handler makes
    it open the file again at the next line."""
    for h in logging.getLogger("mailpolicy").handlers:
        if isinstance(h, EventFileHandler):
            h.acquire()
            try:
                h.close()
            finally:
                h.release()


def emit(record: dict[str, Any]) -> None:
    EVENTS.info(record["event"], extra={"event": record})
