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
from mailpolicy.text import valid_unicode
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
        "unreadable": sorted({*c.unreadable, *txn.unreadable}) if c.unreadable or txn.unreadable else [],
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
        "unreadable": sorted(set(c.unreadable)) if c.unreadable else [],
    }


# ---- encoding and writing ----------------------------------------------------------------------
#
# Events do not go through the logging module: a line is encoded once (msgspec) on the callback's
# thread. While the milter runs (start_writer), lines are queued and one writer thread writes what
# gathered in the last WRITER_DELAY seconds with one system call per sink: a callback never waits
# for the disk or journald (nor lets another connection's callback take the interpreter meanwhile),
# and a busy MX makes one write per batch instead of one per line (two lines per message:
# transaction and connection). Lines are written in the order they were queued, whole, never
# interleaved. Diagnostics use logging (its levels and exc_info) with one handler that writes
# through the same queue and sinks. Without the writer (tests, the command-line tools) each line is
# written at once, under the same lock.


def encode(obj: dict[str, Any]) -> bytes:
    """One JSON line as UTF-8 bytes (without the newline); never raises for text content."""
    try:
        return _ENCODER.encode(obj)
    except UnicodeEncodeError:
        return _ENCODER.encode(valid_unicode(obj))


class _Sink(abc.ABC):
    """Where lines go: standard output or the event file."""

    @abc.abstractmethod
    def write(self, lines: list[tuple[int, bytes]]) -> None:
        """Write lines (each ends with a newline, with its syslog priority), in order, whole."""

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

    def write(self, lines: list[tuple[int, bytes]]) -> None:
        prefix = self.journal  # journald reads each line's "<priority>" and strips it
        data = b"".join(b"<%d>%s" % line if prefix else line[1] for line in lines)
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

    def write(self, lines: list[tuple[int, bytes]]) -> None:
        data = b"".join(d for _, d in lines)
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


_lock = threading.Lock()  # held while lines go to the sinks, and while the sinks change
_sinks: tuple[_Sink, ...] = ()
_host = ""
_failed: set[int] = set()  # sinks that failed last time (reported once until they work again)

WRITER_DELAY = 0.05
"""Seconds the writer lets lines gather before it writes them: the most an event waits."""
WRITER_LIMIT = 4096
"""Lines waiting for the writer before the threads that queue more wait for it (a sink that
stalls slows the milter down instead of filling its memory)."""
_queue: list[tuple[int, bytes]] = []
_queued = threading.Condition(threading.Lock())  # guards _queue and _writer
_writer: threading.Thread | None = None


def _to_sinks(lines: list[tuple[int, bytes]]) -> None:
    """Lines to every sink (the caller holds ``_lock``). A sink that fails (disk full, closed
    pipe) never stops the milter or the other sinks: the first failure is reported on stderr, as
    one JSON line."""
    if not lines:
        return
    for sink in _sinks:
        try:
            sink.write(lines)
            _failed.discard(id(sink))
        except Exception as exc:
            if id(sink) not in _failed:
                _failed.add(id(sink))
                report = {"ts": iso(time.time()), "host": _host, "level": "error", "logger": __name__}
                report["msg"] = f"could not write a log line: {type(exc).__name__}: {exc}"
                with contextlib.suppress(Exception):
                    sys.stderr.write(encode(report).decode("utf-8") + "\n")
                    sys.stderr.flush()


def _write(priority: int, line: bytes, now: bool = False) -> None:
    """Queue one line for the writer; or write it, with every line queued before it, at once: when
    there is no writer, or ``now`` (diagnostics: rare, and read as they happen)."""
    data = line + b"\n"
    if not now:
        with _queued:
            if _writer is not None:
                _queue.append((priority, data))
                if len(_queue) == 1:
                    _queued.notify_all()
                while len(_queue) > WRITER_LIMIT and _writer is not None:
                    _queued.wait()
                return
    with _lock:  # (taken before the batch: batches reach the sinks in the order they were taken)
        with _queued:
            batch = [*_queue, (priority, data)]
            _queue.clear()
            _queued.notify_all()
        _to_sinks(batch)


def _run_writer() -> None:
    me = threading.current_thread()
    while True:
        with _queued:
            while not _queue and _writer is me:
                _queued.wait()
            if not _queue:  # stopped, and everything written
                return
        time.sleep(WRITER_DELAY)  # let a batch gather
        with _lock:
            with _queued:
                batch = _queue[:]
                _queue.clear()
                _queued.notify_all()  # threads waiting for room
            _to_sinks(batch)


def start_writer() -> None:
    """Write lines from one thread, in batches (``mailpolicy run``); idempotent."""
    global _writer
    with _queued:
        if _writer is not None:
            return
        _writer = threading.Thread(target=_run_writer, name="events", daemon=True)
        _writer.start()


def stop_writer() -> None:
    """Write every queued line, stop the writer; lines are written at once from then on."""
    global _writer
    with _queued:
        writer, _writer = _writer, None
        _queued.notify_all()
    if writer is not None:
        writer.join()
    with _lock:  # (lines a thread queued while the writer was stopping)
        with _queued:
            batch = _queue[:]
            _queue.clear()
            _queued.notify_all()
        _to_sinks(batch)


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
        _write(systemd.PRIORITY.get(record.levelname, 6), line, now=True)


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
