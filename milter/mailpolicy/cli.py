"""Command line: ``mailpolicy run | check-config | status | report | version``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mailpolicy import __version__, report, status
from mailpolicy.config import DEFAULT_PATH, ConfigError, load, read


def _check_config(path: str) -> int:
    from mailpolicy.server import preflight

    try:
        cfg = load(path)
    except ConfigError as exc:
        for err in exc.errors:
            print(f"error: {err}", file=sys.stderr)
        print(f"{path}: {len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    problems, notes = preflight(cfg, starting=False)
    for note in notes:
        kind, _, text = note.partition(": ")
        print(f"{kind}: {path}: {text}", file=sys.stderr)
    if problems:
        for problem in problems:
            print(f"error: {path}: {problem}", file=sys.stderr)
        print(f"{path}: {len(problems)} error(s)", file=sys.stderr)
        return 1
    print(f"{path}: OK")
    for p in cfg.policies.values():
        print(f"  {p.name}: {p.mode.value}")
    return 0


def _run(path: str) -> int:
    from mailpolicy.server import StartupError, serve

    try:
        cfg, config_hash = read(path)
    except ConfigError as exc:
        for err in exc.errors:
            print(f"error: {err}", file=sys.stderr)
        print(f"mailpolicy: refusing to start: {len(exc.errors)} configuration error(s)", file=sys.stderr)
        return 1
    try:
        return serve(cfg, os.path.abspath(path), config_hash)
    except StartupError as exc:
        for problem in exc.problems:
            print(f"error: {path}: {problem}", file=sys.stderr)
        print(f"mailpolicy: cannot start: {len(exc.problems)} problem(s)", file=sys.stderr)
        return 1


DESCRIPTION = (
    "A milter for Postfix and Sendmail that records the transport security and authentication of "
    "every SMTP connection and runs each mail policy in off, monitor or enforce mode."
)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (also the source of the man page)."""
    parser = argparse.ArgumentParser(prog="mailpolicy", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"mailpolicy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the milter", description="Run the milter until SIGTERM.")
    run.add_argument("--config", default=DEFAULT_PATH, help=f"configuration file (default {DEFAULT_PATH})")
    chk = sub.add_parser(
        "check-config",
        help="validate a configuration file and list every error",
        description="Validate a configuration file and this host the way run will; list every error "
        "with its key; exit 1 if there is any.",
    )
    chk.add_argument(
        "path", nargs="?", default=DEFAULT_PATH, help=f"configuration file (default {DEFAULT_PATH})"
    )
    sub.add_parser("version", help="print the version", description="Print the version.")
    st = sub.add_parser(
        "status",
        help="what the running milter is doing: configuration, modes, refusals since start",
        description="Ask the running milter's metrics endpoint: version, uptime, the configuration it "
        "runs and when it was loaded, each policy's mode and what it refused or would have refused "
        "since start. Exit 0 running, 3 not running, 4 cannot tell.",
    )
    status.add_arguments(st)
    rep = sub.add_parser(
        "report",
        help="which mail would enforcing the policies lose? (reads event logs)",
        description="Read event logs and answer, per policy and for all of them at once: which mail "
        "would enforcing it lose?",
    )
    report.add_arguments(rep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _run(args.config)
    rc = 0
    try:
        if args.command == "report":
            rc = report.run(args)
        elif args.command == "status":
            rc = status.run(args)
        elif args.command == "check-config":
            rc = _check_config(args.path)
        else:
            print(f"mailpolicy {__version__}")
        sys.stdout.flush()  # (here, where a reader that left is caught)
    except BrokenPipeError:  # the reader left (`mailpolicy status | head -3`): not our failure
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (for the exit-time flush)
    return rc
