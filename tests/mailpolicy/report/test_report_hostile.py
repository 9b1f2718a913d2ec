"""Hostile input (attacker review 2): events forged into a syslog file through another program's
message, values from the log that would inject TOML or drive the terminal, and text that is not
valid Unicode. Whatever an event says, the report reads only mailpolicy's own lines, writes only
valid TOML holding what the suggestion means, shows only printable text on a terminal and never
fails to write its JSON."""

from __future__ import annotations

import contextlib
import gzip
import io
import ipaddress
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from mailpolicy.report import build_report, lookalike, main
from mailpolicy.report.reader import LINES, SYSLOG, detect_format
from mailpolicy.report.suggest import config_domain
from support.report_events import arc_chain, conn, decision, lines, txn, would_reject


def _line(ev: dict[str, Any]) -> bytes:
    return lines([ev]).rstrip(b"\n")


def _report(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


# ---- finding 1: syslog lines are mailpolicy's only when mailpolicy's tag says so -----------------

FORGED = _line(txn(ip="203.0.113.66", policies={"spf": would_reject()}, header_from="bank.example"))
REAL = [_line(txn(ip=f"192.0.2.{i}", policies={"spf": would_reject()})) for i in range(1, 13)]

# What rsyslog and journalctl write for mailpolicy's own lines: every prefix form the reader knows.
MINE = [
    b"Nov 20 00:00:01 mx1 mailpolicy[4242]: " + REAL[0],  # RFC 3164, journalctl -o short
    b"Nov  2 00:00:01 mx1 mailpolicy[4242]: " + REAL[1],  # day padded with a space
    b"<30>Nov 20 00:00:01 mx1 mailpolicy[4242]: " + REAL[2],  # with a <PRI>
    b"2026-11-20T00:00:01.123456+01:00 mx1 mailpolicy[4242]: " + REAL[3],  # rsyslog file format
    b"2026-11-20T00:00:01+0100 mx1 mailpolicy[4242]: " + REAL[4],  # -o short-iso
    b"Nov 20 00:00:01.123456 mx1 mailpolicy[4242]: " + REAL[5],  # -o short-precise
    b"Fri 2026-11-20 00:00:01 CET mx1 mailpolicy[4242]: " + REAL[6],  # -o short-full
    b"[   12.345678] mx1 mailpolicy[4242]: " + REAL[7],  # -o short-monotonic
    b"1795000000.123456 mx1 mailpolicy[4242]: " + REAL[8],  # -o short-unix
    b"Nov 20 00:00:01 mx1 mailpolicy: " + REAL[9],  # no PID
    b"<30>1 2026-11-20T00:00:01.123456+01:00 mx1 mailpolicy 4242 - - " + REAL[10],  # RFC 5424
    b'<30>1 2026-11-20T00:00:01Z mx1 mailpolicy 4242 - [meta x="a]\\"{"] \xef\xbb\xbf' + REAL[11],
]

# Other programs' lines, each carrying an event where the old reader found it.
OTHERS = [
    # Postfix logs a bad MAIL FROM argument verbatim (the attack)
    b"Nov 20 00:00:02 mx1 postfix/smtpd[27931]: warning: Illegal address syntax from unknown[127.0.0.1]"
    b" in MAIL command: " + FORGED,
    # ... with mailpolicy's tag in the argument, too
    b"Nov 20 00:00:02 mx1 postfix/smtpd[27931]: warning: Illegal address syntax from unknown[127.0.0.1]"
    b" in MAIL command: mailpolicy[4242]: " + FORGED,
    b"2026-11-20T00:00:02.000000+01:00 mx1 postfix/smtpd[27931]: NOQUEUE: reject: " + FORGED,
    b"<22>Nov 20 00:00:02 mx1 postfix/cleanup[27932]: 4AbCdEf: message-id=" + FORGED,
    b"Nov 20 00:00:02 mx1 kernel: [ 12.3] " + FORGED,
    b"Nov 20 00:00:02 mx1 mailpolicyd[1]: " + FORGED,  # a name that only starts like ours
    b"Nov 20 00:00:02 mx1 xmailpolicy[1]: " + FORGED,
    b"<30>1 2026-11-20T00:00:02Z mx1 postfix 4242 - - " + FORGED,
    b"<30>1 2026-11-20T00:00:02Z mx1 postfix 4242 - - mailpolicy[1]: " + FORGED,
    b"                     " + FORGED,  # a continuation line of a multi-line message (-o short)
]


def _mixed(others: list[bytes]) -> bytes:
    out = []
    for i, line in enumerate(MINE):
        out.append(others[i % len(others)])
        out.append(line)
    out += others
    return b"\n".join(out) + b"\n"


def test_other_programs_lines_are_never_events(tmp_path: Path) -> None:
    path = tmp_path / "syslog"
    path.write_bytes(_mixed(OTHERS))
    gz = tmp_path / "syslog.1.gz"
    gz.write_bytes(gzip.compress(_mixed(OTHERS)))
    # forced to read lines, a line that starts with JSON is read as one (an event file has no other)
    prefixed = tmp_path / "syslog.prefixed"
    prefixed.write_bytes(_mixed([o for o in OTHERS if o[:1] != b" "]))
    others = len(MINE) + len(OTHERS)
    for name, fmt in ((path, "auto"), (gz, "auto"), (path, SYSLOG), (prefixed, LINES)):
        doc = build_report([str(name)], input_format=fmt)
        inp = doc["input"]
        assert inp["events"] == len(MINE), (name, fmt)
        assert doc["totals"]["transactions"] == len(MINE)
        assert "203.0.113.66" not in json.dumps(doc), (name, fmt)
        assert "bank.example" not in json.dumps(doc)
        if fmt != LINES:
            assert inp["sources"][0]["format"] == SYSLOG
            # other programs' lines are not events, not damage
            assert (inp["non_event_lines"], inp["malformed_lines"]) == (others, 0), (name, fmt)


def test_mailpolicy_lines_that_are_no_event_are_counted_as_before(tmp_path: Path) -> None:
    path = tmp_path / "short.log"
    path.write_bytes(
        b"-- Boot 01b3b78c357e47b38ba97268abec8eae --\n"
        + MINE[0]
        + b"\nNov 20 00:00:02 mx1 mailpolicy[4242]:\n"  # an empty message
        + b"Nov 20 00:00:02 mx1 mailpolicy[4242]: [4.9K blob data]\n"
        + b"Nov 20 00:00:02 mx1 mailpolicy[4242]: Traceback (most recent call last):\n"  # ours, not JSON
        + b"Nov 20 00:00:02 mx1 mailpolicy[4242]: <6>"
        + REAL[1]
        + b"\nNov 20 00:00:03 mx1 systemd[1]: Stopped mailpolicy.service.\n"
    )
    inp = build_report([str(path)])["input"]
    assert inp["sources"][0]["omitted"] == 1
    assert (inp["events"], inp["blank_lines"], inp["malformed_lines"], inp["non_event_lines"]) == (2, 3, 1, 1)


def test_syslog_ident(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A unit with another SyslogIdentifier= is read with --syslog-ident."""
    path = tmp_path / "mail.log"
    path.write_bytes(
        b"Nov 20 00:00:01 mx1 mp-relay[7]: " + REAL[0] + b"\n"
        b"Nov 20 00:00:01 mx1 mailpolicy[7]: " + REAL[1] + b"\n"
        b"Nov 20 00:00:01 mx1 postfix/smtpd[7]: mp-relay[7]: " + FORGED + b"\n"
    )
    rc, out, _ = _report(["--format", "json", str(path)], capsys)
    assert (rc, json.loads(out)["input"]["events"]) == (0, 1)
    rc, out, _ = _report(["--format", "json", "--syslog-ident", "mp-relay", str(path)], capsys)
    doc = json.loads(out)
    assert (rc, doc["input"]["events"], doc["input"]["non_event_lines"]) == (0, 1, 2)
    assert "203.0.113.66" not in out


def test_detection_cannot_be_steered() -> None:
    # a syslog file whose first line is the attacker's: still syslog (and the event is not read)
    assert detect_format(OTHERS[0] + b"\n" + MINE[0]) == SYSLOG
    # the milter's own lines are lines, whatever their values hold
    hostile = _line(
        txn(
            mail_from='Nov 20 00:00:01 mx1 mailpolicy[1]: {"__CURSOR":"s","MESSAGE":"x"}',
            name='"MESSAGE":"__CURSOR=',
        )
    )
    assert detect_format(hostile + b"\n") == LINES
    assert detect_format(b'{"ts":"2026-11-20T00:00:00.000Z","host":"mx1","k":{"MESSAGE":1}}\n') == LINES
    # journalctl -u mailpolicy -o cat after a restart: systemd's line first, then the events
    assert detect_format(b"Started mailpolicy.service - mailpolicy milter.\n" + REAL[0]) == LINES
    assert detect_format(b"<6>" + REAL[0] + b"\n") == LINES  # SyslogLevelPrefix=no, -o cat


def test_cat_of_the_whole_journal_reads_no_forged_event() -> None:
    """``journalctl -o cat`` without ``-u``: other programs' messages have no prefix at all."""
    data = (
        b"Started mailpolicy.service.\n"
        + REAL[0]
        + b"\nwarning: Illegal address syntax from unknown[127.0.0.1] in MAIL command: "
        + FORGED
        + b"\n<6>"
        + REAL[1]
        + b"\n"
    )
    doc = build_report(["-"], stdin=io.BytesIO(data))
    assert doc["input"]["sources"][0]["format"] == LINES
    assert doc["input"]["events"] == 2 and "203.0.113.66" not in json.dumps(doc)


# ---- finding 2a: the TOML snippet ---------------------------------------------------------------

INJECT = '203.0.113.9"]\nmax_action = "continue"\ntrusted_forwarders = ["0.0.0.0/0", "::/0'


def _hostile_suggestions() -> list[dict[str, Any]]:
    auth = {"authenticated": True, "header_from": "bank.example", "dmarc": "pass"}
    evs: list[dict[str, Any]] = []
    for ip in (
        INJECT,
        None,  # no client address: "(unknown)" is no network
        'fe80::1%x"]\nevil = 1',  # a scope id holds anything: the network is still fe80::/48
        "198.51.100.7\n[policies.spf]\nmode = 'off'",
        "192.0.2.77",
        "0.0.0.0/0",  # a network, not an address: exempting it would exempt everyone
        "::/0",
    ):
        evs += [txn(ip=ip, policies={"dmarc": would_reject()}, **auth)]  # type: ignore[arg-type]
        evs += [txn(ip=ip, policies={'x"]\n[policies.dmarc]\nmode="off"\n["y': would_reject()}, **auth)]  # type: ignore[arg-type]
    for sealer in ("evil.example", 'a"]\nx = 1\n["b', "forward.example\n[policies.spf]"):
        evs.append(
            txn(
                ip="198.51.100.8",
                authenticated=False,
                header_from="bank.example",
                dmarc="fail",
                policies={"dmarc": would_reject()},
                arc=arc_chain('older"\nx=1', sealer),
            )
        )
    return evs


def test_suggested_toml_holds_only_what_it_means(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    path.write_bytes(lines(_hostile_suggestions()))
    doc = build_report([str(path)])
    snippet = doc["suggestions_toml"]
    assert snippet, "the hostile events make suggestions"
    parsed = tomllib.loads(snippet)
    assert set(parsed) == {"policies"}
    assert set(parsed["policies"]) == {"dmarc"}
    dm = parsed["policies"]["dmarc"]
    assert set(dm) <= {"exempt_networks", "trusted_arc_sealers"}
    nets = dm["exempt_networks"]
    assert sorted(nets) == ["192.0.2.0/24", "fe80::/48"]
    for net in nets:
        assert str(ipaddress.ip_network(net)) == net
    assert dm["trusted_arc_sealers"] == ["evil.example"]  # the others are no domains
    for sealer in dm["trusted_arc_sealers"]:
        assert config_domain(sealer) == sealer
    assert "# left out: 4 client addresses that are not an IP address" in snippet  # said, not hidden
    assert "# left out: 6 networks for a policy whose name is not a policy name" in snippet
    assert all(c.isprintable() for c in snippet.replace("\n", ""))


# ---- finding 2b: the terminal -------------------------------------------------------------------

BAD = "<i>\x1b]0;owned\x07\x1b[2J\x9b31m\u202eevil\u2066\u2069\r\n\x00\x7f\u2028"


def _hostile_events() -> list[dict[str, Any]]:
    return [
        txn(
            host="mx1" + BAD,
            ip="192.0.2.1" + BAD,
            name="mail" + BAD,
            header_from="bank.example" + BAD,
            authenticated=True,
            dmarc="fail" + BAD,
            tls="TLSv1" + BAD,
            cipher="AES" + BAD,
            outcome="accepted" + BAD,
            policies={
                "spf" + BAD: decision("monitor" + BAD, "fail" + BAD, "reject"),
                "dmarc": decision(
                    "monitor", "fail", "reject", override="x" + BAD, details={"override_by": BAD}
                ),
            },
            arc=arc_chain("a.example" + BAD, "b.example" + BAD),
            list_id="<list" + BAD + ">",
        ),
        txn(host="mx1" + BAD, ip="192.0.2.2", policies={"dmarc": would_reject()}, list_id=BAD),
        conn(host="mx1" + BAD, ip="192.0.2.3" + BAD, name=BAD, tls="TLSv1" + BAD, cipher=BAD),
        {**conn(host="mx1" + BAD), "event": "odd" + BAD},
        {
            "ts": "2026-11-20T00:00:00.000Z",
            "host": "mx1",
            "schema": 1,
            "event": "transaction",
            "policies": BAD,
        },
    ]


def _unprintable(text: str) -> set[str]:
    return {c for c in text.replace("\n", "") if not c.isprintable()}


def test_text_report_shows_log_values_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / ("events" + BAD.replace("\x00", "").replace("\n", "") + ".log")
    path.write_bytes(lines(_hostile_events()))
    rc, out, err = _report([str(path)], capsys)
    assert _unprintable(out) == set() and _unprintable(err) == set()
    assert "\\u001b]0;owned\\u0007" in out and "\\u202eevil" in out
    lines_before = len(out.splitlines())
    assert all(not line.startswith("\r") for line in out.splitlines())
    assert lines_before > 10
    # stderr: a name that matched nothing, with the hostile names seen
    rc, out, err = _report(["--host", "mx9", str(path)], capsys)
    assert rc == 2 and "mx1<i>\\u001b]0;owned" in err and _unprintable(err) == set()
    rc, out, err = _report(["--policy", "dkim", str(path)], capsys)
    assert rc == 2 and "spf<i>\\u001b" in err and _unprintable(err) == set()


def test_stderr_messages_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    safe = BAD.replace("\x00", "").replace("\n", "")
    path = tmp_path / f"bad{safe}.log"
    path.write_bytes(lines([{"ts": BAD, "host": BAD, "schema": 1, "event": "transaction"}]))
    missing = tmp_path / f"missing{safe}.log"
    rc, out, err = _report([str(path), str(missing)], capsys)
    assert rc == 1 and "no events" in err and "first malformed" in err
    assert _unprintable(err) == set() and _unprintable(out) == set()


def test_html_report_stays_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.log"
    path.write_bytes(lines(_hostile_events()))
    rc, out, _ = _report(["--format", "html", str(path)], capsys)
    assert rc == 0 and "<i>" not in out and "&lt;i&gt;" in out


# ---- finding 3: text that is not valid Unicode ----------------------------------------------------


def test_an_idn_label_that_decodes_to_a_surrogate_is_not_decoded() -> None:
    assert "xn--example-5j47a".encode("ascii")[4:].decode("punycode") == "ex\ud800ample"
    name = lookalike.parse_name("xn--example-5j47a.org")
    assert name is not None and name.unicode == "xn--example-5j47a.org"
    for label in (
        "xn--" + "ex\x1bample".encode("punycode").decode("ascii"),  # a control character
        "xn--" + "e\u0301xample".encode("punycode").decode("ascii"),  # not NFC
        "xn--" + "ex\ue000ample".encode("punycode").decode("ascii"),  # private use
    ):
        name = lookalike.parse_name(label + ".org")
        assert name is not None and name.unicode == label + ".org", label
    # a valid IDN label still decodes
    name = lookalike.parse_name("xn--pypal-4ve.com")
    assert name is not None and name.unicode == "p\u0430ypal.com"


@pytest.mark.parametrize("fmt", ["json", "html", "text"])
def test_output_never_fails_on_text(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    evs = [
        txn(host="mx.example.org", header_from="xn--example-5j47a.org", authenticated=False),
    ]
    # a file name that is not valid UTF-8 (as the shell hands it over)
    name = os.fsdecode(b"events-\xff\xfe.log")
    path = tmp_path / name
    path.write_bytes(lines(evs))
    out_file = tmp_path / f"report.{fmt}"
    rc, _, err = _report(["--format", fmt, "-o", str(out_file), str(path)], capsys)
    assert rc == 0, err
    text = out_file.read_text(encoding="utf-8")
    if fmt == "json":
        doc = json.loads(text)
        assert doc["lookalikes"]["lookalike_domains"] >= 0
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    # standard output as the terminal has it (UTF-8, strict)
    buf = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    with contextlib.redirect_stdout(buf):
        assert main(["--format", fmt, str(path)]) == 0
        buf.flush()
