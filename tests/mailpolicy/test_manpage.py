"""mailpolicy(1), rendered from the argparse definitions: it formats without a single groff warning,
shows every command and option the parser has (found here by walking the parser independently of
mailpolicy.manpage), survives text that roff would otherwise eat, and can be rendered with only what
the isolated wheel build installs ([build-system] requires)."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailpolicy import manpage
from mailpolicy.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
TOOLS = "man and groff (Debian packages man-db and groff-base; `make deps` installs them)"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: the man page tests need {TOOLS}")
    return path


def man(page: Path, width: int = 80) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MANWIDTH": str(width),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "MAN_KEEP_FORMATTING": "",
        "MAN_DISABLE_SECCOMP": "1",  # man-db's sandbox is refused in some containers
    }
    return subprocess.run(
        [tool("man"), "--warnings", "-l", str(page)], capture_output=True, text=True, env=env, timeout=60
    )


def groff_warnings(page: Path) -> str:
    """Every groff warning category (-ww), formatted for a UTF-8 terminal, output discarded."""
    proc = subprocess.run(
        [tool("groff"), "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def flat(text: str) -> str:
    """Rendered text as one line: hyphenation (U+2010 at a line end) undone, runs of spaces (from
    justification and indentation) made one."""
    return " ".join(re.sub("\u2010\n\\s*", "", text).split())


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name)
                yield from commands(child, (*path, name))


def parser_of(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> argparse.ArgumentParser:
    for name in names:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def subsection(text: str, heading: str) -> str:
    """The rendered subsection of one command (``mailpolicy report``), or for the program itself
    everything before COMMANDS."""
    if " " not in heading:
        return text.partition("\nCOMMANDS\n")[0]
    body = text.partition(f"\n   {heading}\n")[2]
    return re.split(r"\n   \S|\n\S", body, maxsplit=1)[0]


def render_to(tmp_path: Path, parser: argparse.ArgumentParser | None = None) -> tuple[Path, str]:
    page = manpage.write(tmp_path / "man1" / "mailpolicy.1", parser)
    proc = man(page)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", f"man --warnings:\n{proc.stderr}"
    assert groff_warnings(page) == ""
    return page, proc.stdout


def test_page_renders_without_warnings_and_shows_every_command_and_option(tmp_path: Path) -> None:
    page, text = render_to(tmp_path)
    assert page.read_bytes().isascii()
    parser = build_parser()
    names = list(commands(parser))
    assert {("run",), ("check-config",), ("version",), ("report",)} <= set(names)
    flat_text = flat(text)
    missing: list[str] = []
    for path in [(), *names]:
        sub = parser_of(parser, path)
        heading = " ".join(("mailpolicy", *path))
        if path and f"\n   {heading}\n" not in text:  # a COMMANDS subsection of its own
            missing.append(f"section {heading!r}")
            continue
        # looked for in the command's own subsection (the top level: up to COMMANDS), its examples
        # left out: "-o" in an example is not the option listed
        part = subsection(text, heading)
        for line in (sub.epilog or "").splitlines():
            part = part.replace(line.strip(), "") if line.strip() else part
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            for option in action.option_strings:
                if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", part):
                    missing.append(f"{heading} {option}")
            if not action.option_strings:
                metavar = action.metavar if isinstance(action.metavar, str) else action.dest
                if not re.search(rf"(?<![\w-]){re.escape(metavar)}(?![\w-])", part):
                    missing.append(f"{heading} {metavar}")
            if action.help and "%(" not in action.help and " ".join(action.help.split()) not in flat_text:
                missing.append(f"{heading}: help of {action.dest}: {action.help!r}")
        if sub.description and " ".join(sub.description.split()) not in flat_text:
            missing.append(f"{heading}: description")
    assert missing == []
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "FILES", "SEE ALSO"):
        assert f"\n{section}\n" in text
    assert "/etc/mailpolicy/mailpolicy.toml" in text
    # options render and copy as ASCII hyphen-minus, never as U+2010 or U+2212
    assert "mailpolicy report --format json --policy spf events.log | jq .combined" in text
    assert "\u2212" not in text


def test_title_line_has_version_and_reproducible_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1796083200")  # 2026-12-01T00:00:00Z
    first = manpage.render()
    assert '.TH MAILPOLICY 1 "2026\\-12\\-01" "mailpolicy 0.1.0" "User Commands"' in first
    assert manpage.render() == first


def test_escape() -> None:
    assert manpage.escape("a\\b") == r"a\(rsb"
    assert manpage.escape("--since") == r"\-\-since"
    assert manpage.escape('it\'s "x" `y`') == r"it\(aqs \(dqx\(dq \(gay\(ga"
    assert manpage.escape("naïve — ✓ 😀") == r"na\[u00EF]ve \[u2014] \[u2713] \[u1F600]"
    assert manpage.escape("a\tb\x00c\x7f") == "a b c "


def hostile_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailpolicy",
        description=".TH looks like a request\n'so does this\nC:\\new\\table, naïve — “quoted”",
        epilog="examples:\n  .hidden \\fB not bold\n    'indented",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quiet", "-q", action="store_true", help="say less")
    group.add_argument("--loud", action="store_true", help=". say more, default %(default)s")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    top = sub.add_parser("top-level", aliases=["tl"], help="has its own commands")
    nested = top.add_subparsers(dest="inner")
    deep = nested.add_parser("deep-er", help="'two levels down")
    deep.add_argument("--mode", choices=("a-b", "c"), default="c", help="pick \\one (default %(default)s)")
    deep.add_argument("items", nargs="+", metavar="ITEM", help="one or more")
    sub.add_parser("no-help")  # no help= at all: argparse keeps it out of the command list
    sub.add_parser("hidden", help=argparse.SUPPRESS)
    return parser


def test_roff_specials_nested_commands_and_argparse_corners(tmp_path: Path) -> None:
    page, text = render_to(tmp_path, hostile_parser())
    source = page.read_text(encoding="ascii")
    requests = {line.split(" ", 1)[0] for line in source.splitlines() if line.startswith((".", "'"))}
    macros = {".TH", ".SH", ".SS", ".SY", ".YS", ".PP", ".TP", ".RS", ".RE", ".nf", ".fi", ".BR"}
    assert requests == {'.\\"', *macros}  # every other line is text, however it starts
    flat_text = flat(text)
    for shown in (
        ".TH looks like a request 'so does this C:\\new\\table, naïve — “quoted”",
        ".hidden \\fB not bold",
        "  'indented",
        "mailpolicy top-level deep-er",
        "--mode {a-b,c}",
        "pick \\one (default c)",
        "'two levels down",
        ". say more, default False",
        "[--quiet | --loud]",
        "--quiet, -q",
        "Also called tl.",
        "mailpolicy no-help",
    ):
        assert shown in (text if shown.startswith("  ") else flat_text), shown
    assert "\n   mailpolicy top-level deep-er\n" in text
    assert "[--mode {a-b,c}] ITEM [ITEM ...]" in flat_text
    assert "secret" not in text and "hidden" not in text.replace(".hidden", "")


def test_module_writes_the_page(tmp_path: Path) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1796083200", "PYTHONPATH": str(ROOT / "milter")}
    out = tmp_path / "deep" / "mailpolicy.1"
    run = [sys.executable, "-m", "mailpolicy.manpage"]
    subprocess.run([*run, str(out)], check=True, env=env, timeout=60)
    stdout = subprocess.run(run, check=True, env=env, timeout=60, capture_output=True, text=True).stdout
    assert out.read_text(encoding="ascii") == stdout
    assert stdout.startswith('.\\" mailpolicy(1), generated by mailpolicy.manpage')
    bad = subprocess.run([*run, "a", "b"], env=env, timeout=60, capture_output=True, text=True)
    assert bad.returncode == 2 and "usage:" in bad.stderr


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def build_requirements() -> set[str]:
    """[build-system] requires and what they depend on (no extras): what an isolated build has."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    todo = [_norm(re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0]) for r in requires]
    have: set[str] = set()
    while todo:
        name = todo.pop()
        if name in have:
            continue
        have.add(name)
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        todo += [_norm(re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0]) for r in reqs if "extra ==" not in r]
    return have


BLOCK_OTHERS = """
import importlib.abc, importlib.metadata, json, re, sys
allowed = set(json.loads(sys.argv[1]))
owners = importlib.metadata.packages_distributions()
class Isolated(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names or top == "mailpolicy":
            return None
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in owners.get(top, [])}
        if dists & allowed:
            return None
        raise ModuleNotFoundError(f"No module named {top!r} in the build environment ({sorted(dists)})")
sys.meta_path.insert(0, Isolated())
sys.path.insert(0, sys.argv[2])
from mailpolicy import manpage
sys.stdout.write(manpage.render(date="2026-12-01"))
"""


def test_page_renders_with_only_the_build_requirements() -> None:
    """setup.py's build_man runs in pip's isolated build environment: what mailpolicy.cli imports at
    module level must be in [build-system] requires (pymilter, needing libmilter, must not be)."""
    allowed = build_requirements()
    assert "pymilter" not in allowed and {"dnspython", "msgspec", "prometheus-client"} <= allowed
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_OTHERS, json.dumps(sorted(allowed)), str(ROOT / "milter")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, (
        "mailpolicy.cli imports something at module level that the wheel build does not install: "
        "import it lazily or add it to [build-system] requires\n" + proc.stderr
    )
    assert proc.stdout == manpage.render(date="2026-12-01")
