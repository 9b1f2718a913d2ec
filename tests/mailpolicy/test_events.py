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
