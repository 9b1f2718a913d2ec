"""The event wire format and the JSON log lines.

Events (``"event": "connection" | "transaction"``) are the stable interface read by
``mailpolicy report``; their fields are documented in README.md and built here, from the state
records, by :func:`transaction_record` and :func:`connection_record`. Diagnostics carry ``level``,
``logger`` and ``msg`` and never an ``event`` key.

Every line on every sink is one valid UTF-8 JSON object: values are cleaned where the records are
built (:mod:`mailpolicy.text`), and the writer checks the encoded line once more, cleaning any
string that still cannot be encoded instead of failing."""

from __future__ import annotations

import abc
import contextlib
import grp
import logging
import os
import sys
import threading
import time
from typing import IO, Any

import msgspec

from mailpolicy import EVENT_SCHEMA, systemd
from mailpolicy.model import iso
from mailpolicy.state import Connection, Transaction
from mailpolicy.text import to_str
from mailpolicy.tls import PLAINTEXT_RECORD

_DIAG_FIELDS = ("conn_id", "queue_id", "callback", "check", "policy", "path", "error", "key")
_ENCODER = msgspec.json.Encoder(enc_hook=str)


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
        rec["list_id"] = m.list_id
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
#
# Events do not go through the logging module: a line is encoded once (msgspec) and written with
# one system call per sink, under one lock, so lines from different connections never interleave.
# Diagnostics use logging (its levels and exc_info) with one handler that writes through the same
# sinks. This is the cheap path a busy MX takes twice per message (transaction and connection).


def _scrub(value: Any) -> Any:
    """The value with every string made valid Unicode (the slow path, for a line that failed)."""
    if isinstance(value, str):
        return to_str(value)
    if isinstance(value, dict):
        return {to_str(str(k)): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return to_str(bytes(value))
    return value


def encode(obj: dict[str, Any]) -> bytes:
    """One JSON line as UTF-8 bytes (without the newline); never raises for text content."""
    try:
        return _ENCODER.encode(obj)
    except UnicodeEncodeError:
        return _ENCODER.encode(_scrub(obj))


class _Sink(abc.ABC):
    """Where lines go: standard output or the event file."""

    @abc.abstractmethod
    def write(self, priority: int, data: bytes) -> None:
        """Write one line (``data`` ends with a newline) with its syslog priority."""

    @abc.abstractmethod
    def reopen(self) -> None:
        """Open the destination again at the next line (a reload, logrotate)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Let go of the destination (replaced by a reload)."""


class _StreamSink(_Sink):
    """Standard output, as UTF-8 bytes whatever the locale. When it is journald's stream, each line
    starts with its syslog priority (``<6>`` for events, the level's for diagnostics), which
    journald reads and strips: ``journalctl -p err`` then shows errors."""

    def __init__(self, stream: IO[str], journal: bool = False):
        self.stream = stream
        self.buffer: IO[bytes] | None = getattr(stream, "buffer", None)
        self.journal = journal

    def write(self, priority: int, data: bytes) -> None:
        if self.journal:
            data = b"<%d>" % priority + data
        if self.buffer is not None:
            self.buffer.write(data)
            self.buffer.flush()
        else:
            self.stream.write(data.decode("utf-8"))
            self.stream.flush()

    def reopen(self) -> None:  # standard output stays the same stream
        return

    def close(self) -> None:  # and belongs to the process, not to the sink
        return


class _FileSink(_Sink):
    """The event file: reopened when logrotate has moved it (checked before every line, no signal
    needed), and created with the configured mode and group every time (``log.file_mode``,
    ``log.file_group``), so that an admin in that group can read it whatever the process umask."""

    def __init__(self, path: str, mode: int, group: str):
        self.path = os.path.abspath(path)
        self.mode = mode
        self.gid = grp.getgrnam(group).gr_gid if group else -1
        self.fd = -1
        self.identity = (0, 0)
        self._open()

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self.mode)
        try:
            st = os.fstat(fd)
            if st.st_mode & 0o7777 != self.mode and st.st_uid == os.geteuid():
                os.fchmod(fd, self.mode)
            if self.gid >= 0 and st.st_gid != self.gid:
                os.fchown(fd, -1, self.gid)
        except OSError:
            os.close(fd)
            raise
        self.fd, self.identity = fd, (st.st_dev, st.st_ino)

    def write(self, priority: int, data: bytes) -> None:
        try:
            st = os.stat(self.path)
            moved = (st.st_dev, st.st_ino) != self.identity
        except FileNotFoundError:
            moved = True
        if moved or self.fd < 0:
            self.close()
            self._open()
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def reopen(self) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


_lock = threading.Lock()
_sinks: tuple[_Sink, ...] = ()
_host = ""
_failed: set[int] = set()  # sinks that failed last time (reported once until they work again)


def _write(priority: int, line: bytes) -> None:
    """One line to every sink. A sink that fails (disk full, closed pipe) never stops the milter
    or the other sinks: the first failure is reported on stderr, as one JSON line."""
    data = line + b"\n"
    with _lock:
        for sink in _sinks:
            try:
                sink.write(priority, data)
                _failed.discard(id(sink))
            except Exception as exc:
                if id(sink) not in _failed:
                    _failed.add(id(sink))
                    report = {"ts": iso(time.time()), "host": _host, "level": "error", "logger": __name__}
                    report["msg"] = f"could not write a log line: {type(exc).__name__}: {exc}"
                    with contextlib.suppress(Exception):
                        sys.stderr.write(encode(report).decode("utf-8") + "\n")
                        sys.stderr.flush()


class JsonFormatter(logging.Formatter):
    def __init__(self, host: str):
        super().__init__()
        self.host = host

    def record_dict(self, record: logging.LogRecord) -> dict[str, Any]:
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


class _DiagnosticHandler(logging.Handler):
    """Diagnostics (``level``, ``logger``, ``msg``) to the same sinks as events."""

    def __init__(self, formatter: JsonFormatter):
        super().__init__()
        self.json = formatter

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = encode(self.json.record_dict(record))
        except Exception:
            self.handleError(record)
            return
        _write(systemd.PRIORITY.get(record.levelname, 6), line)


def setup(
    host: str, stdout: bool, file: str, level: str, file_mode: int = 0o640, file_group: str = ""
) -> None:
    """Send events and diagnostics to stdout and/or a file. Called at start-up and on every
    reload: the new sinks replace the old ones between two lines (none is lost), and the old ones
    are closed (which also reopens the file)."""
    global _sinks, _host
    new: list[_Sink] = []
    if stdout:
        new.append(_StreamSink(sys.stdout, journal=systemd.journal_stream(sys.stdout)))
    if file:
        new.append(_FileSink(file, file_mode, file_group))
    root = logging.getLogger("mailpolicy")
    root.handlers = [_DiagnosticHandler(JsonFormatter(host))]
    root.setLevel(level.upper())
    root.propagate = False
    with _lock:
        old, _sinks, _host = _sinks, tuple(new), host
        _failed.clear()
        for sink in old:
            with contextlib.suppress(OSError):
                sink.close()


def reopen() -> None:
    """Reopen the event file (a reload with unchanged log settings)."""
    with _lock:
        for sink in _sinks:
            with contextlib.suppress(OSError):
                sink.reopen()


def emit(record: dict[str, Any]) -> None:
    """Write one event (``record["event"]`` is its kind), whatever the diagnostics level."""
    _write(6, encode({"ts": iso(time.time()), "host": _host, "schema": EVENT_SCHEMA, **record}))
