"""``mailpolicy report``: "if I enforced this policy, which mail would I lose?"

Reads the JSON event lines the milter writes (files, ``.gz`` files, or ``-`` for standard input;
event files, ``journalctl`` output in its ``cat``, ``short``, ``json`` and ``export`` formats,
syslog files) and renders a text, JSON or HTML report. Entry points for scripts and tests:

- :func:`main` (``main(["--format", "json", "events.log"])``) returns the exit status;
- :func:`build_report` returns the report document (a dict, the ``--format json`` output)."""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from mailpolicy.report import aggregate
from mailpolicy.report.aggregate import REPORT_SCHEMA, Options, canonical, parse_time
from mailpolicy.report.lookalike import our_domain_arg
from mailpolicy.report.reader import (
    AUTO,
    DEFAULT_IDENT,
    FORMATS,
    InputLog,
    Seen,
    reading_order,
    recording,
    rescan,
)
from mailpolicy.report.safe import printable, valid_doc

__all__ = [
    "FORMATS",
    "REPORT_SCHEMA",
    "Options",
    "add_arguments",
    "build_report",
    "main",
    "parse_when",
    "run",
]


DESCRIPTION = """If I enforced these policies, which mail would I lose? Reads the milter's JSON event
lines (event files plain or gzip, rotated sets, several hosts at once, or standard input: journalctl
output as -o cat, short, json or export) and reports, per policy and for all monitor-mode policies
enforced at once, the transactions that would be refused, who sends them and whether they are
authenticated; TLS use and a TLS floor simulation; suggested exemptions."""

EPILOG = """examples:
  journalctl -u mailpolicy -o cat --since yesterday | mailpolicy report -
  journalctl -u mailpolicy -o export --since "7 days ago" | mailpolicy report -
  mailpolicy report /var/log/mailpolicy/events.log* --since 7d
  mailpolicy report --format html -o report.html mx1.log.gz mx2.log.gz
  mailpolicy report --format json --policy spf events.log | jq .combined"""

TIME_HELP = (
    "a date (YYYY-MM-DD, a UTC day), an RFC 3339 time with offset, or relative to now: 7d, 24h, 30m "
    "(also s and w), today, yesterday (UTC days), now"
)


def _top_arg(text: str) -> int:
    """argparse ``type=`` for ``--top``: a whole number of rows, at least 1 (a bad value exits 2)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, at least 1 (got {text!r})") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {text!r})")
    return n


_IDENT = re.compile(r"[^\s\[\]:]+")


def _ident_arg(text: str) -> str:
    """argparse ``type=`` for ``--syslog-ident``: a syslog identifier (no space, ``[``, ``]`` or
    ``:``, which end the tag)."""
    if not _IDENT.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a syslog identifier: {text!r}")
    return text


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="event log files (plain or gzip; a logrotate set is read oldest first); '-' or none for "
        "standard input",
    )
    p.add_argument("--since", metavar="T", help="only events at or after T: the start of a day; " + TIME_HELP)
    p.add_argument("--until", metavar="T", help="only events at or before T: the end of a day; " + TIME_HELP)
    p.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="NAME",
        help="only this policy (repeatable); the combined scenario then uses only these; a name "
        "no event has is an error",
    )
    p.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="only events from this host (repeatable); a name no event has is an error",
    )
    p.add_argument("--top", type=_top_arg, default=10, metavar="N", help="rows in each top list (default 10)")
    p.add_argument(
        "--our-domain",
        action="append",
        default=[],
        type=our_domain_arg,
        metavar="DOMAIN",
        help="a domain we receive mail for (repeatable): the look-alike senders section finds From "
        "domains imitating it; without it, guessed from the milter host names",
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "html"),
        default="text",
        help="terminal report (default), JSON document (report_schema 1) or HTML page",
    )
    p.add_argument("--output", "-o", metavar="FILE", help="write the report here instead of standard output")
    p.add_argument(
        "--input-format",
        choices=(AUTO, *FORMATS),
        default=AUTO,
        metavar="FORMAT",
        help="how the input is written: auto (default: detected per input from its first line), lines "
        "(event files, journalctl -o cat), syslog (a prefix before each JSON line: journalctl -o "
        "short, /var/log/mail.log), journal-json (journalctl -o json), journal-export (journalctl "
        "-o export)",
    )
    p.add_argument(
        "--syslog-ident",
        action="append",
        type=_ident_arg,
        metavar="NAME",
        help=f"syslog input: the identifier of mailpolicy's lines (NAME[PID]: or NAME:; default "
        f"{DEFAULT_IDENT}; repeatable), for a unit with another SyslogIdentifier=. Other programs' "
        "lines are never read as events, whatever JSON their message holds",
    )


# ---- times ------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"-?(\d{1,9})\s*([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
RELATIVE_FORMS = "7d, 24h, 30m, 90s, 2w, today, yesterday or now"


def parse_when(text: str, now: datetime, end_of_day: bool = False) -> str:
    """``--since`` / ``--until`` as a canonical event timestamp (``2026-11-20T00:00:00.000Z``):
    what :func:`~mailpolicy.report.aggregate.parse_time` takes (a date, an RFC 3339 time), or a
    time relative to ``now``: ``7d``, ``24h``, ``30m``, ``90s``, ``2w`` ago (``-7d`` too), ``now``,
    and the UTC days ``today`` and ``yesterday``, which like dates mean the start of the day, or
    its end with ``end_of_day`` (``--until``). Days are UTC days because event ``ts`` are UTC: a
    day is the same day in ``--since``, in the daily trends and in ``--since 2026-11-20``."""
    word = text.strip().lower()
    if word == "now":
        return canonical(now)
    if word in ("today", "yesterday"):
        day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        if word == "yesterday":
            day -= timedelta(days=1)
        return parse_time(day.strftime("%Y-%m-%d"), end_of_day)
    m = _RELATIVE.fullmatch(word)
    if m:
        try:
            return canonical(now - timedelta(seconds=int(m[1]) * _UNIT[m[2]]))
        except OverflowError:
            raise ValueError(f"too far back: {text!r}") from None
    try:
        return parse_time(text, end_of_day)
    except ValueError as exc:
        if re.match(r"\s*\d{4}-", text):  # a date or time that is wrong: parse_time says how
            raise
        raise ValueError(
            f"not a date (YYYY-MM-DD), RFC 3339 time or relative time ({RELATIVE_FORMS}): {text!r}"
        ) from exc


def _utcnow() -> datetime:
    return datetime.now(UTC)


# ---- reading -----------------------------------------------------------------------------------


def build_report(
    paths: Iterable[str],
    options: Options | None = None,
    stdin: IO[bytes] | None = None,
    *,
    input_format: str = AUTO,
    syslog_idents: Sequence[str] = (DEFAULT_IDENT,),
) -> dict[str, Any]:
    """Read every path ("-" for standard input) in the order given, and return the report document.
    ``input_format``: ``auto`` (detect per source) or one of :data:`FORMATS`; ``syslog_idents``: the
    syslog identifiers of mailpolicy's lines in syslog input."""
    return _build(paths, options, stdin, InputLog(input_format, syslog_idents=syslog_idents))


def _build(
    paths: Iterable[str], options: Options | None, stdin: IO[bytes] | None, log: InputLog
) -> dict[str, Any]:
    """The report document, with each source's ``format`` and ``omitted`` (journal messages
    journalctl left out) from ``log``."""
    with recording(log):
        doc = aggregate.build_report(paths, options, stdin)
    sources = doc["input"]["sources"]
    if len(sources) == len(log.sources):
        for src, info in zip(sources, log.sources, strict=True):
            src["format"] = info.format
            src["omitted"] = info.omitted
    return doc


# ---- after reading: names that matched nothing, and what the input held -----------------------

MAX_LISTED = 20


def _listed(names: Iterable[str], capped: bool) -> str:
    ordered = sorted(names)
    text = ", ".join(ordered[:MAX_LISTED]) or "none"
    if len(ordered) > MAX_LISTED or capped:
        text += ", ..."
    return text


def unknown_names(option: str, wanted: Iterable[str], seen: set[str], capped: bool, what: str) -> list[str]:
    """One message per ``wanted`` name that no event had, with the names the events had."""
    out = []
    for name in sorted(set(wanted) - seen):
        close = difflib.get_close_matches(name, sorted(seen), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        out.append(f"{option} {name!r} matches no {what} in the input; seen: {_listed(seen, capped)}{hint}")
    return out


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}"


def input_summary(doc: dict[str, Any], seen: Seen | None, given: dict[str, str] | None = None) -> str | None:
    """What was read when the report has no event, or None when it has some: nothing read, events
    read but all filtered out, or lines read but none an event (malformed, diagnostics...).
    ``given``: ``--since`` / ``--until`` as typed, shown next to the time they mean. Words agree
    with the counts (``1 event``, ``2 events``)."""
    from mailpolicy.report.tables import plural

    inp = doc["input"]
    if inp["events"]:
        return None
    if not inp["lines"]:
        if all(s["error"] for s in inp["sources"]):
            return "no events: no input could be read"
        return "no events: the input is empty"
    if inp["filtered_out"]:
        flt = doc["filters"]
        typed = given or {}
        by = [
            f"--{k} {flt[k]}" if typed.get(k, flt[k]) == flt[k] else f"--{k} {typed[k]} ({flt[k]})"
            for k in ("since", "until")
            if flt[k]
        ]
        by += [f"--host {h}" for h in flt["hosts"]]
        n = inp["filtered_out"]
        text = f"{plural(n, 'event')} read, {'' if n == 1 else 'all '}filtered out by {' '.join(by)}"
        if seen is not None and seen.first:
            if seen.events == 1:
                text += f"; the event read is from {seen.first}"
            else:
                text += f"; the events read are from {seen.first} to {seen.last}"
            text += f" (hosts: {_listed(seen.hosts, seen.capped)})"
        return text
    unsupported = sum(inp["unsupported_schema"].values())
    unknown = sum(inp["unknown_event_types"].values())
    parts = [
        (inp["malformed_lines"], _count(inp["malformed_lines"], "malformed")),
        (inp["non_event_lines"], _count(inp["non_event_lines"], 'diagnostics (no "event")')),
        (unsupported, f"{plural(unsupported, 'event')} of an unsupported schema"),
        (unknown, f"{plural(unknown, 'event')} of an unknown type"),
        (inp["blank_lines"], _count(inp["blank_lines"], "blank")),
    ]
    text = f"no events: {plural(inp['lines'], 'line')} read: " + ", ".join(words for n, words in parts if n)
    if inp["malformed_examples"]:
        ex = inp["malformed_examples"][0]
        text += f"; first malformed: {ex['source']} line {ex['line']}: {ex['error']}"
    return text


def say(message: str) -> None:
    """A message on standard error, made printable (it names files and values from the logs)."""
    print(f"mailpolicy report: {printable(valid_doc(message))}", file=sys.stderr)


def run(
    args: argparse.Namespace, stdin: IO[bytes] | None = None, clock: Callable[[], datetime] | None = None
) -> int:
    """The command; ``clock`` gives "now" for relative ``--since`` / ``--until`` (default: the
    system clock, UTC)."""
    now = (clock or _utcnow)()
    try:
        since = parse_when(args.since, now) if args.since else None
        until = parse_when(args.until, now, end_of_day=True) if args.until else None
        if since and until and since > until:
            raise ValueError(f"--since {args.since!r} ({since}) is after --until {args.until!r} ({until})")
        options = Options(
            since=since,
            until=until,
            policies=frozenset(args.policy),
            hosts=frozenset(args.host),
            top=args.top,
            our_domains=tuple(args.our_domain),
        )
    except ValueError as exc:
        say(str(exc))
        return 2
    files = reading_order(list(args.files) or ["-"])
    if files == ["-"] and stdin is None and sys.stdin.isatty():
        say(
            "reading events from the terminal; give FILE arguments or pipe,"
            " e.g. journalctl -u mailpolicy -o cat | mailpolicy report -"
        )
    # The hosts, policy names and time span of the events before the filters only explain a
    # filter that matched nothing, and cost about a microsecond a line to collect: they are
    # collected after reading, from the files, when the report shows such a filter. Standard input
    # cannot be read twice: with --host or --policy they are collected while it is read.
    eager = "-" in files and bool(args.host or args.policy)
    idents = tuple(getattr(args, "syslog_ident", None) or (DEFAULT_IDENT,))
    log = InputLog(
        args.input_format, track=eager, track_policies=eager and bool(args.policy), syslog_idents=idents
    )
    doc = _build(files, options, stdin, log)
    status = 0
    for src in doc["input"]["sources"]:
        if src["error"]:
            say(f"{src['name']}: {src['error']}")
            status = 1
    seen = log.seen
    unmatched = set(args.host) - {h["host"] for h in doc["hosts"]}
    unmatched |= set(args.policy) - {p["name"] for p in doc["policies"]}
    all_filtered = not doc["input"]["events"] and doc["input"]["filtered_out"]
    if seen is None and (unmatched or all_filtered) and any(f != "-" for f in files):
        seen = rescan(files, args.input_format, policies=bool(args.policy), syslog_idents=idents)
    if unmatched and seen is not None and seen.events:
        # Checked after reading, before rendering: the names are only known once all is read.
        wrong = unknown_names("--policy", args.policy, seen.policies, seen.capped, "policy")
        wrong += unknown_names("--host", args.host, seen.hosts, seen.capped, "host")
        if wrong:
            for message in wrong:
                say(message)
            return 2
    text = render(doc, args.format)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    for src in doc["input"]["sources"]:
        if src.get("omitted"):
            say(
                f"{src['name']}: {src['omitted']:,} journal messages left out by "
                "journalctl (-o json leaves out messages over 4096 bytes without --all; -o short "
                "shows binary ones as [blob data]): read the journal with -o export or -o cat"
            )
            status = 1
    for ver, n in doc["input"]["unsupported_schema"].items():
        say(f"refused {n} events with unsupported event schema {ver}")
    summary = input_summary(doc, seen, {"since": args.since or "", "until": args.until or ""})
    if summary:
        say(summary)
    return status


def render(doc: dict[str, Any], fmt: str) -> str:
    """The report document in ``fmt``, as text that is valid Unicode whatever the document holds
    (:func:`~mailpolicy.report.safe.valid_doc`); the text report is printable too (its renderer
    sees to it)."""
    doc = valid_doc(doc)
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        from mailpolicy.report.render_html import render as html

        return html(doc)
    from mailpolicy.report.render_text import render as text

    return text(doc)


def main(
    argv: Sequence[str] | None = None,
    stdin: IO[bytes] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog="mailpolicy report")
    add_arguments(parser)
    return run(parser.parse_args(argv), stdin, clock)
