from __future__ import annotations

import json
import logging
from pathlib import Path

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


def test_event_encoding_is_compact_unsorted_and_unescaped(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    events.setup("mx9.example", stdout=False, file=str(log), level="info")
    events.emit({"event": "transaction", "z": 1, "a": {"ü": [1.5, None, True]}, "p": Path("/x")})
    line = log.read_text(encoding="utf-8").splitlines()[0]
    assert line.endswith(',"schema":1,"event":"transaction","z":1,"a":{"ü":[1.5,null,true]},"p":"/x"}')
