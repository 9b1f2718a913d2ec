"""End to end (attacker review 2): any SMTP client can write text into Postfix's log, which
``mailpolicy report`` reads as a syslog file. Postfix logs a bad MAIL FROM argument verbatim at the
end of its line (``... postfix/smtpd[N]: warning: Illegal address syntax from unknown[IP] in MAIL
command: <ARG>``): with ARG a whole JSON event, that line must not count as one, nor its values reach
the suggested TOML or the terminal."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import socket
import tomllib
from pathlib import Path

import pytest

from mailpolicy.report import main
from support.stack import Postfix, make_workdir, wait_for

pytestmark = pytest.mark.e2e


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _event(**kw: object) -> str:
    ev = {"ts": _now(), "host": "mx.example.org", "schema": 1, "event": "transaction", "outcome": "accepted"}
    ev.update(kw)
    return json.dumps(ev, separators=(",", ":"))


INJECT = '203.0.113.9"]\nmax_action = "continue"\ntrusted_forwarders = ["0.0.0.0/0", "::/0'
EVENTS = [
    # an exemption whose "network" would break out of the TOML string
    _event(
        client_ip=INJECT,
        authenticated=True,
        header_from_domain="bank.example",
        policies={"dmarc": {"mode": "monitor", "result": "fail", "action": "reject"}},
    ),
    # a sealer of the attacker's choice, to be suggested as trusted
    _event(
        client_ip="198.51.100.7",
        authenticated=False,
        header_from_domain="bank.example",
        policies={"dmarc": {"mode": "monitor", "result": "fail", "action": "reject"}},
        arc={"result": "pass", "sealers": ["evil.example"]},
    ),
    # terminal escape sequences (OSC window title, clear screen)
    _event(
        client_ip="192.0.2.1\x1b]0;owned\x07\x1b[2J",
        authenticated=False,
        header_from_domain="bank.example",
        policies={"spf": {"mode": "monitor", "result": "fail", "action": "reject"}},
    ),
]


def _smtp(port: int, lines: list[str]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        for line in lines:
            s.sendall(line.encode() + b"\r\n")
            r = f.readline()
            while r[3:4] == b"-":
                r = f.readline()


@pytest.fixture(scope="module")
def maillog() -> Path:
    wd = make_workdir("report-forge-")
    pf = Postfix(wd, None).start()
    try:
        _smtp(pf.port, ["EHLO attacker.example", *(f"MAIL FROM:{ev}" for ev in EVENTS), "QUIT"])
        wait_for(lambda: pf.log().count("Illegal address syntax") == len(EVENTS), 20, "postfix to log")
    finally:
        pf.stop()
    return pf.maillog


def _report(path: Path, *args: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main([*args, str(path)])
    return rc, buf.getvalue()


def test_postfix_log_line_carries_the_event_verbatim(maillog: Path) -> None:
    log = maillog.read_text()
    assert all(ev in log for ev in EVENTS)


@pytest.mark.parametrize("fmt", ["auto", "syslog", "lines"])
def test_forged_events_are_not_counted(maillog: Path, fmt: str) -> None:
    _, out = _report(maillog, "--format", "json", "--input-format", fmt)
    doc = json.loads(out)
    inp = doc["input"]
    assert inp["events"] == 0, "a Postfix warning line must not count as a mailpolicy event"
    assert doc["suggestions_toml"] == "" and doc["sealer_suggestions"] == []
    if fmt != "lines":
        # Postfix's lines are other programs' lines: not events, not malformed
        assert inp["malformed_lines"] == 0 and inp["non_event_lines"] == inp["lines"] - inp["blank_lines"]


def test_text_report_has_no_terminal_escapes(maillog: Path) -> None:
    _, out = _report(maillog)
    assert not {c for c in out if not c.isprintable() and c != "\n"}
    assert "INJECT" not in out and "trusted_forwarders" not in out


def test_the_same_events_from_mailpolicy_make_valid_toml(maillog: Path, tmp_path: Path) -> None:
    """Were the lines mailpolicy's (or the events forged in any other way), the snippet would still
    hold only valid networks and domains."""
    forged = tmp_path / "events.log"
    forged.write_text("\n".join(EVENTS) + "\n")
    _, out = _report(forged, "--format", "json")
    doc = json.loads(out)
    assert doc["input"]["events"] == len(EVENTS)
    parsed = tomllib.loads(doc["suggestions_toml"])
    dm = parsed["policies"]["dmarc"]
    assert set(dm) <= {"exempt_networks", "trusted_arc_sealers"}
    assert "exempt_networks" not in dm  # INJECT is no network
    _, text = _report(forged)
    assert not {c for c in text if not c.isprintable() and c != "\n"}
