"""``mailpolicy report``: "if I enforced this policy, which mail would I lose?"

Reads the JSON event lines the milter writes (files, ``.gz`` files, or ``-`` for standard input)
and renders a text, JSON or HTML report. Entry points for scripts and tests:

- :func:`main` (``main(["--format", "json", "events.log"])``) returns the exit status;
- :func:`build_report` returns the report document (a dict, the ``--format json`` output)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import IO, Any

from mailpolicy.report.aggregate import REPORT_SCHEMA, Options, build_report, parse_time

__all__ = ["REPORT_SCHEMA", "Options", "add_arguments", "build_report", "main", "run"]


DESCRIPTION = """If I enforced these policies, which mail would I lose? Reads the milter's JSON event
lines (plain or gzip files, several hosts at once, or standard input) and reports, per policy and
for all monitor-mode policies enforced at once, the transactions that would be refused, who sends
them and whether they are authenticated; TLS use and a TLS floor simulation; suggested exemptions."""

EPILOG = """examples:
  journalctl -u mailpolicy -o cat --since yesterday | mailpolicy report -
  mailpolicy report /var/log/mailpolicy/events.log* --since 2026-11-01
  mailpolicy report --format html -o report.html mx1.log.gz mx2.log.gz
  mailpolicy report --format json --policy spf events.log | jq .combined"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="event log files (plain or gzip); '-' or none for standard input",
    )
    p.add_argument("--since", help="only events at or after this date (YYYY-MM-DD) or RFC 3339 time")
    p.add_argument("--until", help="only events at or before this date (whole day) or RFC 3339 time")
    p.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="NAME",
        help="only this policy (repeatable); the combined scenario then uses only these",
    )
    p.add_argument(
        "--host", action="append", default=[], metavar="NAME", help="only events from this host (repeatable)"
    )
    p.add_argument("--top", type=int, default=10, metavar="N", help="rows in each top list (default 10)")
    p.add_argument(
        "--format",
        choices=("text", "json", "html"),
        default="text",
        help="terminal report (default), JSON document (report_schema 1) or HTML page",
    )
    p.add_argument("--output", "-o", metavar="FILE", help="write the report here instead of standard output")


def run(args: argparse.Namespace, stdin: IO[bytes] | None = None) -> int:
    try:
        options = Options(
            since=parse_time(args.since) if args.since else None,
            until=parse_time(args.until, end_of_day=True) if args.until else None,
            policies=frozenset(args.policy),
            hosts=frozenset(args.host),
            top=max(1, args.top),
        )
    except ValueError as exc:
        print(f"mailpolicy report: {exc}", file=sys.stderr)
        return 2
    files = list(args.files) or ["-"]
    if files == ["-"] and stdin is None and sys.stdin.isatty():
        print(
            "mailpolicy report: reading events from the terminal; give FILE arguments or pipe,"
            " e.g. journalctl -u mailpolicy -o cat | mailpolicy report -",
            file=sys.stderr,
        )
    doc = build_report(files, options, stdin)
    text = render(doc, args.format)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    status = 0
    for src in doc["input"]["sources"]:
        if src["error"]:
            print(f"mailpolicy report: {src['name']}: {src['error']}", file=sys.stderr)
            status = 1
    for ver, n in doc["input"]["unsupported_schema"].items():
        print(f"mailpolicy report: refused {n} events with unsupported event schema {ver}", file=sys.stderr)
    return status


def render(doc: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        from mailpolicy.report.render_html import render as html

        return html(doc)
    from mailpolicy.report.render_text import render as text

    return text(doc)


def main(argv: Sequence[str] | None = None, stdin: IO[bytes] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailpolicy report")
    add_arguments(parser)
    return run(parser.parse_args(argv), stdin)
