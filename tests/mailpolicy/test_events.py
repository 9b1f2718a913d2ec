from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailpolicy import events


def test_event_and_diagnostic_lines_are_json(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    events.setup("mx9.example", stdout=False, file=str(log), level="info")
    events.emit({"event": "transaction", "conn_id": "abc", "mail_from": "ä@example.org"})
    logging.getLogger("mailpolicy.adapter").warning("x %s", 1, extra={"conn_id": "abc", "queue_id": "Q1"})
    logging.getLogger("mailpolicy.adapter").debug("hidden")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("mailpolicy.adapter").exception("failed", extra={"callback": "eom"})
    lines = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 3
    ev, warn, exc = lines
    assert ev["event"] == "transaction" and ev["host"] == "mx9.example" and ev["schema"] == 1
    assert ev["mail_from"] == "ä@example.org" and ev["ts"].endswith("Z")
    assert warn == {
        "ts": warn["ts"],
        "host": "mx9.example",
        "level": "warning",
        "logger": "mailpolicy.adapter",
        "msg": "x 1",
        "conn_id": "abc",
        "queue_id": "Q1",
    }
    assert "event" not in warn
    assert exc["callback"] == "eom" and "ValueError: boom" in exc["traceback"]


def test_file_is_reopened_after_logrotate_moves_it(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    events.setup("h", stdout=False, file=str(log), level="info")
    events.emit({"event": "connection", "n": 1})
    log.rename(tmp_path / "events.log.1")
    events.emit({"event": "connection", "n": 2})
    assert json.loads(log.read_text())["n"] == 2
    assert json.loads((tmp_path / "events.log.1").read_text())["n"] == 1


def test_iso_format() -> None:
    from mailpolicy.model import iso

    assert iso(1795665906.789) == "2026-11-26T04:05:06.789Z"
    assert iso(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso(1795665906.9999996) == "2026-11-26T04:05:07.000Z"  # microseconds round first


def test_iso_equals_datetime_isoformat() -> None:
    """iso() formats each second once; it gives exactly what datetime gives, boundaries included."""
    import random
    from datetime import UTC, datetime

    from mailpolicy.model import iso

    rng = random.Random(3339)
    for i in range(50_000):
        ts = rng.uniform(0, 4e9) if i % 2 else 1795665906 + rng.random()
        if i % 5 == 0:
            ts = round(ts, 3) + rng.choice([0.0005, -0.0005, 0.0000005, 0.9999995, 0.0])
        assert iso(ts) == datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")[:-6] + "Z", ts


def test_event_encoding_is_compact_unsorted_and_unescaped(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    events.setup("mx9.example", stdout=False, file=str(log), level="info")
    events.emit({"event": "transaction", "z": 1, "a": {"ü": [1.5, None, True]}, "p": Path("/x")})
    line = log.read_text(encoding="utf-8").splitlines()[0]
    assert line.endswith(',"schema":1,"event":"transaction","z":1,"a":{"ü":[1.5,null,true]},"p":"/x"}')


def test_a_failing_sink_is_reported_once_and_the_others_keep_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "events.log"
    events.setup("h", stdout=True, file=str(log), level="info")
    capsys.readouterr()

    class Full(events._Sink):
        def write(self, lines: list[tuple[int, bytes]]) -> None:
            raise OSError(28, "No space left on device")

        def reopen(self) -> None:
            return

        def close(self) -> None:
            return

    events._sinks = (Full(), *events._sinks)
    for n in range(3):
        events.emit({"event": "connection", "n": n})
    out, err = capsys.readouterr()
    assert [json.loads(x)["n"] for x in log.read_text().splitlines()] == [0, 1, 2]
    assert [json.loads(x)["n"] for x in out.splitlines()] == [0, 1, 2]
    (report,) = [json.loads(x) for x in err.splitlines()]
    assert report["level"] == "error" and "No space left on device" in report["msg"]
    events.setup("h", stdout=False, file="", level="info")


def test_lines_from_many_threads_never_interleave(tmp_path: Path) -> None:
    import threading

    log = tmp_path / "events.log"
    events.setup("h", stdout=False, file=str(log), level="info")
    big = "x" * 9000  # over PIPE_BUF: one write() per line is not enough to keep lines whole

    def writer(t: int) -> None:
        for n in range(200):
            events.emit({"event": "transaction", "t": t, "n": n, "pad": big if n % 10 == 0 else ""})
            logging.getLogger("mailpolicy.test").warning("diag %d %d", t, n)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == 8 * 200 * 2
    for t in range(8):
        assert [x["n"] for x in lines if x.get("t") == t] == list(range(200))
    events.setup("h", stdout=False, file="", level="info")


# ---- the writer thread (mailpolicy run) ---------------------------------------------------------


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "events.log"
    events.setup("h", stdout=False, file=str(log), level="info")
    events.start_writer()
    try:
        yield log
    finally:
        events.stop_writer()
        events.setup("h", stdout=False, file="", level="info")


def test_the_writer_writes_every_line_in_order_without_blocking_the_callers(writer: Path) -> None:
    import threading

    def emit(t: int) -> None:
        for n in range(300):
            events.emit({"event": "transaction", "t": t, "n": n, "pad": "x" * (9000 if n % 50 == 0 else 1)})

    threads = [threading.Thread(target=emit, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    events.stop_writer()  # writes what is still queued
    lines = [json.loads(x) for x in writer.read_text().splitlines()]
    assert len(lines) == 6 * 300
    for t in range(6):
        assert [x["n"] for x in lines if x["t"] == t] == list(range(300))
    events.emit({"event": "connection", "after": True})  # no writer: written at once
    assert json.loads(writer.read_text().splitlines()[-1])["after"] is True


def test_a_queued_line_is_written_within_the_writer_delay(writer: Path) -> None:
    events.emit({"event": "connection", "n": 1})
    assert writer.read_text() == ""  # queued, not written by the caller
    deadline = time.monotonic() + 5
    while not writer.read_text() and time.monotonic() < deadline:
        time.sleep(events.WRITER_DELAY / 5)
    assert json.loads(writer.read_text())["n"] == 1


def test_a_stalled_sink_holds_the_callers_back_instead_of_filling_memory(
    writer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    monkeypatch.setattr(events, "WRITER_LIMIT", 5)
    gate = threading.Event()
    longest: list[int] = []

    class Stalled(events._Sink):
        def write(self, lines: list[tuple[int, bytes]]) -> None:
            longest.append(len(lines))
            gate.wait(10)

        def reopen(self) -> None:
            return

        def close(self) -> None:
            return

    events._sinks = (Stalled(), *events._sinks)
    done = threading.Event()

    def emit() -> None:
        for n in range(40):
            events.emit({"event": "connection", "n": n})
        done.set()

    th = threading.Thread(target=emit)
    th.start()
    time.sleep(0.5)
    assert not done.is_set()  # the caller waits for room
    assert len(events._queue) <= 5 + 1
    gate.set()
    th.join(10)
    assert done.is_set()
    events.stop_writer()
    assert max(longest) <= 5 + 1
    assert [json.loads(x)["n"] for x in writer.read_text().splitlines()] == list(range(40))
