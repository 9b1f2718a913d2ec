"""Input as admins have it: ``journalctl -o json / export / short / cat`` (detected per source, or
forced), relative ``--since`` / ``--until``, a ``--policy`` / ``--host`` that matches nothing,
what was read when the report is empty, and logrotate's rotated sets read oldest first.

The same events as event lines and in every journald shape must give the same report: the shapes
are made here from a generated log, and ``data/input/`` holds what a real journald and journalctl
(systemd 252) gave back for a small log (``data/input/capture_journal.py`` makes them again)."""

from __future__ import annotations

import contextlib
import glob
import gzip
import io
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mailpolicy.report import build_report, main, parse_when, reader
from mailpolicy.report.reader import (
    JOURNAL_EXPORT,
    JOURNAL_JSON,
    LINES,
    SYSLOG,
    InputLog,
    SourceInput,
    UnsupportedInput,
    detect_format,
    journal_export,
    reading_order,
    rotation_key,
    sniff,
)
from support.report_events import conn, decision, generate, lines, txn, would_reject

ROOT = Path(__file__).resolve().parents[3]
DATA = Path(__file__).resolve().parent / "data" / "input"


# ---- the journald shapes, made from event lines ------------------------------------------------


def _meta(i: int) -> list[tuple[str, bytes]]:
    return [
        ("__CURSOR", b"s=5d3c;i=%x;b=01b3;m=%x;t=6619;x=77" % (i, i)),
        ("__REALTIME_TIMESTAMP", b"%d" % (1_795_000_000_000_000 + i)),
        ("__MONOTONIC_TIMESTAMP", b"%d" % (12_400_000_000 + i)),
        ("_BOOT_ID", b"01b3b78c357e47b38ba97268abec8eae"),
        ("PRIORITY", b"6"),
        ("_TRANSPORT", b"stdout"),
        ("SYSLOG_IDENTIFIER", b"mailpolicy"),
        ("_PID", b"4242"),
        ("_SYSTEMD_UNIT", b"mailpolicy.service"),
    ]


def message(line: bytes, i: int, unstripped: int) -> bytes:
    """The MESSAGE journald keeps for an event line: one entry in ``unstripped`` keeps the ``<6>``
    priority (a unit with SyslogLevelPrefix=no), the others had it stripped into PRIORITY."""
    msg = line.rstrip(b"\n")
    return b"<6>" + msg if unstripped and i % unstripped == 0 else msg


def to_journal_json(src: list[bytes], binary: int = 7, unstripped: int = 5, seq: bool = False) -> bytes:
    """``journalctl -o json``: one object per entry, keys in no fixed order (journalctl's are in
    hash order), MESSAGE a string, or an array of byte values when it is not valid UTF-8 (and, to
    read both, for one entry in ``binary``)."""
    out = []
    for i, line in enumerate(src):
        msg = message(line, i, unstripped)
        fields: list[tuple[str, Any]] = [(k, v.decode()) for k, v in _meta(i)]
        try:
            value: Any = msg.decode("utf-8") if i % binary else list(msg)
        except UnicodeDecodeError:
            value = list(msg)
        fields.insert(i % len(fields), ("MESSAGE", value))
        out.append((b"\x1e" if seq else b"") + json.dumps(dict(fields)).encode() + b"\n")
    return b"".join(out)


def export_field(name: str, value: bytes, binary: bool = False) -> bytes:
    """One field of the export format: ``NAME=value`` for printable UTF-8 without a newline,
    else ``NAME`` newline, 64-bit little-endian length, the bytes, newline."""
    printable = value.isascii() and all(32 <= c < 127 for c in value)
    if printable and not binary:
        return name.encode() + b"=" + value + b"\n"
    return name.encode() + b"\n" + len(value).to_bytes(8, "little") + value + b"\n"


def to_journal_export(src: list[bytes], binary: int = 7, unstripped: int = 5) -> bytes:
    """``journalctl -o export``: every entry begins with __CURSOR and ends with a blank line.
    Some entries carry a binary field whose bytes look like fields and blank lines, and whose
    length bytes hold newlines (``_TRICKY``)."""
    out = []
    for i, line in enumerate(src):
        fields = [export_field(k, v) for k, v in _meta(i)]
        fields.insert(3 + i % 5, export_field("MESSAGE", message(line, i, unstripped), binary=not i % binary))
        if i % 11 == 3:
            tricky = b"\n\nMESSAGE=not this\n\n__CURSOR=x\n" + b"\n" * (2570 - 28 + i % 3)
            fields.insert(1, export_field("_TRICKY", tricky, binary=True))
        out.append(b"".join(fields) + b"\n")
    return b"".join(out)


def to_short(src: list[bytes]) -> bytes:
    """``journalctl -o short``: a syslog prefix before each message."""
    return b"".join(
        b"Nov 20 00:00:%02d mx1 mailpolicy[4242]: " % (i % 60) + line for i, line in enumerate(src)
    )


def mixed_log() -> list[bytes]:
    """A generated log (transactions, connections, diagnostics) with a malformed line, a truncated
    one, a line that is not valid UTF-8 and a blank one: each is counted the same in every shape."""
    src = [*generate(3000, seed=7)]
    src[10:10] = [b"not json at all\n"]
    src[200:200] = [src[199][:60] + b"\n"]
    src[300:300] = [b'{"ts":"2026-11-20T00:00:00.000Z","host":"caf\xe9","schema":1,"event":"connection"}\n']
    src[400:400] = [b"\n"]
    return src


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """The report without what differs by shape: when it was made, the source names and formats,
    and the wording of the decoder's error for a malformed line (a plain line still has its
    newline: "invalid character" where a journal message gives "truncated"); line numbers stay."""
    out: dict[str, Any] = json.loads(json.dumps(doc))
    del out["generated"]
    for src in out["input"]["sources"]:
        del src["name"], src["format"]
    out["input"]["malformed_examples"] = [e["line"] for e in out["input"]["malformed_examples"]]
    return out


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_the_same_events_in_every_journald_shape_give_the_same_report(tmp_path: Path) -> None:
    src = mixed_log()
    plain = b"".join(src)
    base = build_report([write(tmp_path, "events.log", plain)])
    inp = base["input"]
    # the comparison is only worth something if there is plenty to compare
    assert inp["events"] >= 3000 and inp["non_event_lines"] > 0 and inp["blank_lines"] == 1
    assert inp["malformed_lines"] == 3 and base["combined"]["lost"] > 100
    assert base["input"]["sources"][0]["format"] == LINES
    shapes = {
        "journal.json": (to_journal_json(src), JOURNAL_JSON),
        "journal.json-seq": (to_journal_json(src, seq=True), JOURNAL_JSON),
        "journal.export": (to_journal_export(src), JOURNAL_EXPORT),
        "journal.short": (to_short(src), SYSLOG),
        "journal.cat": (plain, LINES),
    }
    for name, (data, fmt) in shapes.items():
        for compressed in (False, True):
            path = write(
                tmp_path, name + (".gz" if compressed else ""), gzip.compress(data) if compressed else data
            )
            doc = build_report([path])
            assert doc["input"]["sources"][0]["format"] == fmt, name
            assert comparable(doc) == comparable(base), (name, compressed)
        # standard input, as piped from journalctl
        doc = build_report(["-"], stdin=io.BytesIO(gzip.compress(data)))
        assert comparable(doc) == comparable(base), name


def test_several_shapes_at_once_are_detected_one_by_one(tmp_path: Path) -> None:
    src = list(generate(600, seed=3))
    a, b, c = src[:200], src[200:400], src[400:]
    paths = [
        write(tmp_path, "a.json", to_journal_json(a)),
        write(tmp_path, "b.export.gz", gzip.compress(to_journal_export(b))),
        write(tmp_path, "c.log", b"".join(c)),
    ]
    doc = build_report(paths)
    assert [s["format"] for s in doc["input"]["sources"]] == [JOURNAL_JSON, JOURNAL_EXPORT, LINES]
    assert (
        comparable(doc)["totals"]
        == comparable(build_report([write(tmp_path, "all.log", b"".join(src))]))["totals"]
    )


def test_real_journalctl_output() -> None:
    """What journald and journalctl really give (see data/input/capture_journal.py): the same
    report from the event file, ``-o cat``, ``-o json --all`` and ``-o export``; ``-o json``
    without ``--all`` leaves out the event over 4096 bytes, ``-o short`` the line that is not valid
    UTF-8, and both say so."""
    base = build_report([str(DATA / "events.log.gz")])
    assert base["input"]["events"] == 41 and base["input"]["malformed_lines"] == 1
    assert base["totals"]["transactions"] == 20 and base["combined"]["lost"] == 1
    cat = comparable(build_report([str(DATA / "journal.cat.gz")]))
    for name in ("journal-all.json.gz", "journal.export.gz"):
        assert comparable(build_report([str(DATA / name)])) == cat, name
    # journald interleaved the two streams: the malformed line is elsewhere in the journal
    expected = comparable(base)
    assert expected["input"]["malformed_examples"] == [43] and cat["input"]["malformed_examples"] == [7]
    cat["input"]["malformed_examples"] = expected["input"]["malformed_examples"]
    assert cat == expected
    json_doc = build_report([str(DATA / "journal.json.gz")])
    assert json_doc["input"]["sources"][0]["omitted"] == 1
    assert json_doc["totals"]["transactions"] == 19 and json_doc["combined"]["lost"] == 0
    short = build_report([str(DATA / "journal.short.gz")])
    assert short["input"]["sources"][0]["format"] == SYSLOG
    assert short["input"]["sources"][0]["omitted"] == 1 and short["input"]["malformed_lines"] == 0
    assert short["totals"] == base["totals"]


def test_omitted_messages_are_reported_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--format", "json", str(DATA / "journal.json.gz")]) == 1
    err = capsys.readouterr().err
    assert "journal.json.gz: 1 journal messages left out by journalctl" in err and "--all" in err
    assert main(["--format", "json", str(DATA / "journal-all.json.gz")]) == 0
    assert capsys.readouterr().err == ""


# ---- the journal JSON and export readers on their own -------------------------------------------


def entries(fields_per_entry: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in fields_per_entry)


def test_journal_json_message_values() -> None:
    ev = lines([conn()]).rstrip(b"\n")
    data = (
        entries(
            [
                {"__CURSOR": "a", "MESSAGE": ev.decode(), "PRIORITY": "6"},
                {"__CURSOR": "b", "MESSAGE": list(b"<6>" + ev)},  # bytes, with the priority journald kept
                {"__CURSOR": "c", "MESSAGE": None},  # over 4096 bytes, without --all
                {"__CURSOR": "d"},  # no MESSAGE: a blank line
                {"__CURSOR": "e", "MESSAGE": [ev.decode(), "second value"]},  # the field twice: the first
                {"__CURSOR": "f", "MESSAGE": [[*ev], [1, 2]]},
                {"__CURSOR": "g", "MESSAGE": [300, 1]},  # not bytes: the line is malformed
            ]
        )
        + b'{"__CURSOR": "h", "MESS'
    )  # cut off
    info = SourceInput("x")
    out = list(reader.journal_json(io.BytesIO(data), info))
    assert out[:6] == [ev, ev, b"", b"", ev, ev]
    assert out[6] == b"[300,1]" and out[7] == b'{"__CURSOR": "h", "MESS'
    assert info.omitted == 1
    doc = build_report(["-"], stdin=io.BytesIO(data))
    assert (doc["input"]["events"], doc["input"]["blank_lines"], doc["input"]["lines"]) == (4, 2, 8)
    assert doc["input"]["malformed_lines"] == 2 and doc["input"]["sources"][0]["omitted"] == 1
    assert doc["input"]["non_event_lines"] == 0
    assert [e["line"] for e in doc["input"]["malformed_examples"]] == [7, 8]  # line N = entry N


def test_journal_export_fields_and_every_chunk_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Binary fields (a MESSAGE that is not UTF-8, one that holds a newline, a field whose bytes
    and length look like blank lines and MESSAGE= lines), an entry without MESSAGE, MESSAGE first,
    a priority journald kept: right with the stream read in chunks of any size."""
    ev = lines([conn()]).rstrip(b"\n")
    fake = b"\n\nMESSAGE=no\n\n"
    no_message = export_field("__CURSOR", b"0") + export_field("SYSLOG_IDENTIFIER", b"systemd") + b"\n"
    data = b"".join(
        [
            no_message,
            export_field("__CURSOR", b"1") + export_field("MESSAGE", ev) + b"\n",
            export_field("__CURSOR", b"2") + export_field("MESSAGE", b"caf\xe9") + b"\n",
            export_field("__CURSOR", b"3") + export_field("_X", fake, binary=True) + b"\n",
            export_field("MESSAGE", b"<6>" + ev) + export_field("_Y", b"\n" * 10, binary=True) + b"\n",
            export_field("__CURSOR", b"5")
            + export_field("_Z", b"\n" * 2570)
            + export_field("MESSAGE", ev)
            + b"\n",
            export_field("__CURSOR", b"6") + export_field("MESSAGE", b"two\nlines") + b"\n\n",
            export_field("__CURSOR", b"7") + export_field("MESSAGE", ev) + b"\n",
            no_message,
            no_message,
            export_field("__CURSOR", b"8") + b"MESSAGE=cut of",  # the stream ends inside an entry
        ]
    )
    expected = [b"", ev, b"caf\xe9", b"", ev, ev, b"two\nlines", ev, b"", b"", b"cut of"]
    for chunk in [*range(1, 48), 97, 1000, 1 << 20]:
        monkeypatch.setattr(reader, "EXPORT_CHUNK", chunk)
        got = list(journal_export(io.BufferedReader(io.BytesIO(data)), b"", SourceInput("x")))
        assert got == expected, chunk


def test_journal_export_that_is_damaged_is_an_error(tmp_path: Path) -> None:
    data = b"__CURSOR=1\nMESSAGE\n" + (1 << 40).to_bytes(8, "little") + b"x" * 100
    doc = build_report([write(tmp_path, "bad.export", data)])
    assert "UnsupportedInput" in doc["input"]["sources"][0]["error"]


# ---- detection ----------------------------------------------------------------------------------


def test_detect_format() -> None:
    event = lines([conn()])
    assert detect_format(event) == LINES
    assert detect_format(b"\n \n" + event) == LINES
    assert detect_format(to_journal_json([event])) == JOURNAL_JSON
    assert detect_format(b"\x1e" + to_journal_json([event])) == JOURNAL_JSON
    assert detect_format(to_journal_export([event])) == JOURNAL_EXPORT
    assert detect_format(to_short([event])) == SYSLOG
    assert detect_format(b"<6>" + event) == LINES  # -o cat, SyslogLevelPrefix=no: the <6> is cut off
    assert detect_format(b"-- No entries --\n") == SYSLOG
    assert detect_format(b"Started mailpolicy.service\n" + event) == LINES  # -o cat of a restart
    # a first line not all there yet: undecided, unless a journal key is in it already
    other = b'{"level":"info","msg":"' + b"x" * 50
    assert detect_format(other) is None and detect_format(other, complete=True) == LINES
    assert detect_format(event[:10]) == LINES  # the milter's own line start tells at once
    assert detect_format(b'{"__CURSOR":"s=1;i=2","MESS') == JOURNAL_JSON
    assert detect_format(b"__CURS") is None and detect_format(b"") is None and detect_format(b"\n\n") is None
    with pytest.raises(UnsupportedInput, match="json-pretty"):
        detect_format(b'{\n\t"__CURSOR" : "s=1",\n')


def test_a_first_line_longer_than_the_buffer_is_read_whole() -> None:
    """journalctl's keys are in hash order: a long field may come before MESSAGE and __CURSOR, out
    of what peek gives. The first line is then read whole to tell, and given back."""
    ev = lines([txn(policies={"spf": would_reject()})]).decode().rstrip("\n")
    entry = {"_CMDLINE": "mailpolicy run " + "y" * 20000, "MESSAGE": ev, "__CURSOR": "s=1"}
    first = json.dumps(entry, separators=(",", ":")).encode()
    assert first.index(b'"MESSAGE":') > 20000
    data = b"\n\n" + first + b"\n" + to_journal_json([lines([conn()])])
    for buffer_size in (64, 8192):
        fmt, prefix = sniff(io.BufferedReader(io.BytesIO(data), buffer_size=buffer_size))
        assert fmt == JOURNAL_JSON and prefix == [b"\n", b"\n", first + b"\n"]
        doc = build_report(["-"], stdin=io.BufferedReader(io.BytesIO(data), buffer_size=buffer_size))
        assert doc["input"]["sources"][0]["format"] == JOURNAL_JSON
        assert doc["input"]["events"] == 2 and doc["totals"]["transactions"] == 1
        assert doc["input"]["blank_lines"] == 2  # the blank lines read to tell are counted too


def test_plain_input_is_handed_over_as_it_is() -> None:
    """Detection costs nothing per line: the aggregator iterates the file itself."""
    raw = io.BufferedReader(io.BytesIO(lines([conn()])))
    with reader.recording(InputLog()) as log, reader.open_source("-", raw) as fh:
        assert fh is raw
    assert log.sources[0].format == LINES


def test_unreadable_inputs_are_errors(tmp_path: Path) -> None:
    pretty = write(tmp_path, "pretty.json", b'{\n\t"__CURSOR" : "s=1",\n\t"MESSAGE" : "x"\n}\n')
    xz = write(tmp_path, "events.log.xz", b"\xfd7zXZ\x00\x00\x04garbage")
    doc = build_report([pretty, xz])
    errors = [s["error"] for s in doc["input"]["sources"]]
    assert "json-pretty" in errors[0] and "compressed with xz" in errors[1]
    assert [s["format"] for s in doc["input"]["sources"]] == [None, None]


def test_forced_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = list(generate(200, seed=5))
    base = comparable(build_report([write(tmp_path, "e.log", b"".join(src))]))
    # a first line that hides the format: detection takes it for lines, forcing reads it right
    data = b'{"note": "exported from the journal"}\n' + to_journal_json(src)
    path = write(tmp_path, "j.json", data)
    assert build_report([path])["input"]["events"] == 0
    forced = build_report([path], input_format=JOURNAL_JSON)
    assert forced["input"]["sources"][0]["format"] == JOURNAL_JSON
    assert forced["totals"] == base["totals"]
    # the syslog prefix is cut by the aggregator too, only slower
    short = write(tmp_path, "s.log", to_short(src))
    assert comparable(build_report([short], input_format=LINES))["totals"] == base["totals"]
    # the wrong format forced: an error, not a report of nothing
    assert main(["--input-format", "journal-export", "--format", "json", short]) == 1
    captured = capsys.readouterr()
    assert "not the export format" in captured.err
    assert json.loads(captured.out)["input"]["sources"][0]["format"] == JOURNAL_EXPORT
    with pytest.raises(ValueError):
        InputLog("json-pretty")


def test_short_markers_and_blobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ev = lines([conn()])
    data = (
        b"-- Boot 01b3b78c357e47b38ba97268abec8eae --\n"
        + to_short([ev, ev])
        + b"Nov 20 00:00:02 mx1 mailpolicy[4242]: [4.9K blob data]\n"
        + b"Nov 20 00:00:03 mx1 systemd[1]: Stopped mailpolicy.service.\n"
        + b"-- Reboot --\n"
    )
    path = write(tmp_path, "short.log", data)
    doc = build_report([path])
    inp = doc["input"]
    assert inp["sources"][0]["format"] == SYSLOG and inp["sources"][0]["omitted"] == 1
    # systemd's line is another program's: not an event, not damage
    assert (inp["events"], inp["blank_lines"], inp["malformed_lines"], inp["lines"]) == (2, 3, 0, 6)
    assert inp["non_event_lines"] == 1
    assert main([path]) == 1
    assert "1 journal messages left out" in capsys.readouterr().err


# ---- --since / --until ----------------------------------------------------------------------------

NOW = datetime(2026, 11, 23, 10, 30, 0, 250_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "until", "expected"),
    [
        ("now", False, "2026-11-23T10:30:00.250Z"),
        ("7d", False, "2026-11-16T10:30:00.250Z"),
        ("-7d", False, "2026-11-16T10:30:00.250Z"),
        ("24h", True, "2026-11-22T10:30:00.250Z"),  # a point in time: no end of day
        ("30m", False, "2026-11-23T10:00:00.250Z"),
        ("90 s", False, "2026-11-23T10:28:30.250Z"),
        ("2W", False, "2026-11-09T10:30:00.250Z"),
        ("today", False, "2026-11-23T00:00:00.000Z"),
        ("today", True, "2026-11-23T23:59:59.999Z"),
        ("Yesterday", False, "2026-11-22T00:00:00.000Z"),
        ("yesterday", True, "2026-11-22T23:59:59.999Z"),
        ("2026-11-20", True, "2026-11-20T23:59:59.999Z"),
        ("2026-11-20T08:00:00+01:00", False, "2026-11-20T07:00:00.000Z"),
    ],
)
def test_relative_and_absolute_times(text: str, until: bool, expected: str) -> None:
    assert parse_when(text, NOW, end_of_day=until) == expected


def test_days_are_utc_days_whatever_the_clock_zone() -> None:
    # 05:00 on the 24th in UTC+10 is 19:00 on the 23rd UTC: "today" is the UTC day of the events
    local = datetime(2026, 11, 24, 5, 0, tzinfo=timezone(timedelta(hours=10)))
    assert parse_when("today", local) == "2026-11-23T00:00:00.000Z"
    assert parse_when("yesterday", local, end_of_day=True) == "2026-11-22T23:59:59.999Z"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tomorrow", "relative time (7d, 24h"),
        ("7y", "relative time"),
        ("", "relative time"),
        ("2026-13-01", "not a date (YYYY-MM-DD) or RFC 3339"),
        ("2026-11-20T08:00:00", "without a UTC offset"),
        ("999999999w", "too far back"),
    ],
)
def test_bad_times(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_when(text, NOW)


def day_log(tmp_path: Path) -> str:
    """One transaction and one connection every 6 hours from 2026-11-20 to 2026-11-23 (16 each)."""
    events = []
    for d in range(4):
        for h in (0, 6, 12, 18):
            events += [
                txn(day=d, seconds=3600 * h, policies={"spf": would_reject()}),
                conn(day=d, seconds=3600 * h),
            ]
    return write(tmp_path, "days.log", lines(events))


def run_json(
    args: list[str], stdin: io.BytesIO | None = None, clock: Callable[[], datetime] = lambda: NOW
) -> tuple[int, dict[str, Any]]:
    """``main`` with ``--format json``: the exit status and the report (``{}`` when none)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["--format", "json", *args], stdin, clock)
    return status, json.loads(out.getvalue()) if out.getvalue() else {}


def test_relative_filters_use_the_clock(tmp_path: Path) -> None:
    path = day_log(tmp_path)
    status, doc = run_json(["--since", "yesterday", "--until", "yesterday", path])
    assert status == 0 and doc["totals"]["transactions"] == 4
    assert doc["filters"]["since"] == "2026-11-22T00:00:00.000Z"
    assert {d["date"] for d in doc["policies"][0]["daily"]} == {"2026-11-22"}
    status, doc = run_json(["--since", "24h", path])  # from 2026-11-22T10:30:00.250Z
    assert doc["totals"]["transactions"] == 6  # 12:00 and 18:00 on the 22nd, all four on the 23rd
    status, doc = run_json(["--since", "7d", "--until", "now", path])
    assert doc["totals"]["transactions"] == 14  # not the 23rd's 12:00 and 18:00, after "now"
    # another clock, another answer: the clock is what "now" is
    status, doc = run_json(["--since", "today", path], clock=lambda: NOW + timedelta(days=1))
    assert status == 0 and doc["totals"]["transactions"] == 0


def test_since_after_until_is_a_bad_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--since", "today", "--until", "yesterday", day_log(tmp_path)], clock=lambda: NOW) == 2
    assert (
        "--since 'today' (2026-11-23T00:00:00.000Z) is after --until 'yesterday'" in capsys.readouterr().err
    )


# ---- --policy / --host that match nothing --------------------------------------------------------


def test_misspelt_policy_and_host_are_errors_naming_what_was_seen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "events.log", b"".join(generate(500, seed=2)))
    out = tmp_path / "report.json"
    assert main(["--policy", "dmrac", "-o", str(out), path]) == 2
    err = capsys.readouterr().err
    assert err == (
        "mailpolicy report: --policy 'dmrac' matches no policy in the input; seen: dmarc, "
        "require_starttls, spf, tls_min_version (did you mean 'dmarc'?)\n"
    )
    assert not out.exists()  # nothing rendered
    assert main(["--host", "mx1.exmple.org", "--host", "mx2.example.org", "--host", "x", path]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "mailpolicy report: --host 'mx1.exmple.org' matches no host in the input; seen: mx1.example.org, "
        "mx2.example.org, mx3.example.org (did you mean 'mx1.example.org'?)\n"
        "mailpolicy report: --host 'x' matches no host in the input; seen: mx1.example.org, "
        "mx2.example.org, mx3.example.org\n"
    )
    status, doc = run_json(["--host", "mx2.example.org", "--policy", "spf", "--policy", "dmarc", path])
    assert status == 0 and [h["host"] for h in doc["hosts"]] == ["mx2.example.org"]
    assert [p["name"] for p in doc["policies"]] == ["spf", "dmarc"]


def test_names_are_checked_in_every_format_and_before_the_filters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    early = txn(day=0, host="old-mx", policies={"dkim": would_reject()})
    late = txn(day=3, host="mx1", policies={"spf": would_reject()})
    src = [lines([early]), lines([late])]
    for data in (b"".join(src), to_journal_json(src), to_journal_export(src), to_short(src)):
        stdin = io.BytesIO(data)
        # dkim and old-mx only appear before --since: spelt right, so no error, and the report
        # just has nothing of them
        status, doc = run_json(["--since", "2026-11-22", "--policy", "dkim", "--host", "old-mx", "-"], stdin)
        assert status == 0 and doc["totals"]["transactions"] == 0
        assert "all filtered out" in capsys.readouterr().err
        assert main(["--policy", "dkm", "-"], io.BytesIO(data)) == 2
        assert "seen: dkim, spf (did you mean 'dkim'?)" in capsys.readouterr().err


def test_names_are_read_again_only_when_a_filter_matched_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collecting the names costs time on every line: a report whose filters all matched reads its
    files once; standard input, which cannot be read twice, has them collected while it is read
    only when --host or --policy asks for a check."""
    path = day_log(tmp_path)
    rescans: list[list[str]] = []
    real = reader.rescan

    def counting(names: list[str], *args: Any, **kwargs: Any) -> reader.Seen:
        rescans.append(list(names))
        return real(names, *args, **kwargs)

    monkeypatch.setattr("mailpolicy.report.rescan", counting)
    status, doc = run_json(["--since", "7d", "--host", "mx1", "--policy", "spf", path])
    assert status == 0 and doc["totals"]["transactions"] == 16 and rescans == []
    assert run_json(["--policy", "sfp", path])[0] == 2 and rescans == [[path]]
    capsys.readouterr()
    # standard input with --since only: nothing collected, so no span to show
    data = Path(path).read_bytes()
    assert main(["--since", "2027-01-01", "-"], io.BytesIO(data)) == 0
    assert capsys.readouterr().err == (
        "mailpolicy report: 32 events read, all filtered out by --since 2027-01-01"
        " (2027-01-01T00:00:00.000Z)\n"
    )
    assert len(rescans) == 1


def test_names_seen_are_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "MAX_SEEN", 3)
    events = [conn(host=f"mx{i}", seconds=i) for i in range(10)]
    events += [txn(policies={f"p{i}": decision()}) for i in range(10)]
    path = write(tmp_path, "many.log", lines(events))
    assert main(["--host", "nope", path]) == 2
    err = capsys.readouterr().err
    assert err.count("mx") == 3 and err.rstrip().endswith("seen: mx0, mx1, mx2, ...")
    assert main(["--policy", "nope", path]) == 2
    assert "seen: p0, p1, p2, ..." in capsys.readouterr().err


# ---- what was read, when the report is empty ------------------------------------------------------


def test_empty_filtered_malformed_and_missing_are_told_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def err_of(*args: str) -> tuple[int, str]:
        status = main(["--format", "json", "-o", str(tmp_path / "r.json"), *args], clock=lambda: NOW)
        return status, capsys.readouterr().err

    empty = write(tmp_path, "empty.log", b"")
    assert err_of(empty) == (0, "mailpolicy report: no events: the input is empty\n")
    path = day_log(tmp_path)
    assert err_of(path) == (0, "")  # events: nothing to explain
    status, err = err_of("--until", "4d", "--host", "mx1", path)  # up to 2026-11-19T10:30:00.250Z
    assert status == 0
    assert err == (
        "mailpolicy report: 32 events read, all filtered out by --until 4d (2026-11-19T10:30:00.250Z) "
        "--host mx1; the events read are from 2026-11-20T00:00:00.000Z to 2026-11-23T18:00:00.000Z"
        " (hosts: mx1)\n"
    )
    status, err = err_of("--until", "2026-11-01", path)
    assert err.startswith(
        "mailpolicy report: 32 events read, all filtered out by --until 2026-11-01"
        " (2026-11-01T23:59:59.999Z);"
    )
    bad = write(
        tmp_path, "bad.log", b"garbage\n\n" + b'{"level":"info","msg":"ready"}\n' + lines([txn(schema=2)])
    )
    status, err = err_of(bad)
    assert status == 0
    assert err.endswith(
        'mailpolicy report: no events: 4 lines read: 1 malformed, 1 diagnostics (no "event"), '
        "1 event of an unsupported schema, 1 blank; first malformed: "
        f"{bad} line 1: JSON is malformed: invalid character (byte 0)\n"
    )
    missing = str(tmp_path / "missing.log")
    status, err = err_of(missing)
    assert status == 1
    assert err == (
        f"mailpolicy report: {missing}: FileNotFoundError: [Errno 2] No such file or directory: "
        f"'{missing}'\nmailpolicy report: no events: no input could be read\n"
    )


# ---- logrotate ------------------------------------------------------------------------------------


def shipped_logrotate() -> tuple[str, set[str]]:
    """The dateformat and the directives of contrib/logrotate/mailpolicy."""
    text = (ROOT / "contrib" / "logrotate" / "mailpolicy").read_text()
    body = text[text.index("{") + 1 : text.index("}")]
    words = [line.split() for line in body.splitlines() if line.strip() and not line.strip().startswith("#")]
    directives = {w[0] for w in words}
    [dateformat] = [w[1] for w in words if w[0] == "dateformat"]
    return dateformat, directives


def test_a_rotated_set_as_the_shipped_logrotate_makes_it_is_read_oldest_first(tmp_path: Path) -> None:
    """contrib/logrotate/mailpolicy rotates daily with dateext (events.log-%Y%m%d-%s), compress and
    delaycompress: the newest rotated file is plain, the older ones .gz. ``events.log*`` as the
    shell sorts it puts the live file first; the report reads it last."""
    dateformat, directives = shipped_logrotate()
    assert {"daily", "dateext", "compress", "delaycompress"} <= directives and "compresscmd" not in directives
    live = tmp_path / "events.log"
    rotated_at = [time.mktime((2026, 11, 20 + d, 0, 0, 7, 0, 0, -1)) for d in range(4)]
    names = [f"{live}{time.strftime(dateformat, time.localtime(t))}" for t in rotated_at]
    for i, name in enumerate(names):
        assert re.fullmatch(r".*/events\.log-202611\d\d-\d{10}", name)
        data = lines([txn(day=i, seconds=60, policies={"spf": would_reject()}), conn(day=i, seconds=60)])
        if i < len(names) - 1:  # compressed from the second rotation on (delaycompress)
            Path(name + ".gz").write_bytes(gzip.compress(data))
        else:
            Path(name).write_bytes(data)
    live.write_bytes(lines([txn(day=4, policies={"spf": would_reject()})] * 3))
    shell = sorted(glob.glob(f"{live}*"))  # what events.log* expands to
    assert shell[0] == str(live) and len(shell) == 5
    status, doc = run_json(shell)
    assert status == 0
    read = [s["name"] for s in doc["input"]["sources"]]
    assert read == [*(n + ".gz" for n in names[:-1]), names[-1], str(live)]
    assert [s["events"] for s in doc["input"]["sources"]] == [2, 2, 2, 2, 3]
    assert doc["totals"]["transactions"] == 7


def test_reading_order() -> None:
    assert rotation_key("/var/log/mailpolicy/events.log-20261120-1763596800.gz") == (
        "/var/log/mailpolicy/events.log",
        (1, 20261120, 1763596800),
    )
    assert rotation_key("events.log.10.gz") == ("events.log", (0, -10))
    assert rotation_key("events.log") == ("events.log", (2,))
    # numbered rotations (no dateext): .1 is the newest; the shell sorts .10 before .2
    assert reading_order(
        ["mx1.log", "events.log", "events.log.1", "events.log.10.gz", "events.log.2.gz", "-"]
    ) == [
        "mx1.log",
        "events.log.10.gz",
        "events.log.2.gz",
        "events.log.1",
        "events.log",
        "-",
    ]
    # other dateformats, and files that are no set stay where they are
    assert reading_order(["b.log", "a.log-2026-11-21", "a.log", "a.log-2026-11-20.gz", "c.log", "-"]) == [
        "b.log",
        "a.log-2026-11-20.gz",
        "a.log-2026-11-21",
        "a.log",
        "c.log",
        "-",
    ]
