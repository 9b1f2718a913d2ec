"""The mailpolicy(1) man page, rendered in roff from the argparse definitions (:func:`cli.build_parser`).

Nothing here lists commands or options: the page shows whatever the parser defines (commands at any
depth, their usage, options, descriptions and epilogs), so it cannot fall behind the command line.
It is generated at build time, never committed: ``setup.py``'s ``build_man`` step writes it for
wheels (installed as ``share/man/man1/mailpolicy.1``) and ``make man`` writes ``build/man/mailpolicy.1``::

    python -m mailpolicy.manpage [OUT]     # OUT omitted or '-': standard output

All text is escaped for roff: backslashes, hyphens (``\\-``, so options render and copy as ASCII
``-``), quotes, apostrophes and grave accents, control characters, a dot or apostrophe opening an
input line, and everything outside ASCII (``\\[uXXXX]``), so the page itself is plain ASCII."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

from mailpolicy import __version__

__all__ = ["Command", "escape", "main", "render", "walk", "write"]

SECTION = "1"
SEE_ALSO = (("postconf", "5"), ("postfix", "1"), ("sendmail", "8"), ("systemctl", "1"), ("journalctl", "1"))

# man's text width in an 80-column terminal, and the indent of a section's body
_WIDTH = 78
_INDENT = 7

_ESCAPES = {"\\": r"\(rs", "-": r"\-", '"': r"\(dq", "'": r"\(aq", "`": r"\(ga"}
_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*")
_RAW_FORMATTERS = (argparse.RawDescriptionHelpFormatter, argparse.RawTextHelpFormatter)

Command = tuple[tuple[str, ...], argparse.ArgumentParser, str, tuple[str, ...]]
"""``(names below the program, its parser, its one-line help, its aliases)``."""


def escape(text: str) -> str:
    """``text`` as roff, safe inside a text line or a quoted macro argument (a dot opening an input
    line is :func:`_line`'s business)."""
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(" ")  # tabs, newlines and control characters: argparse shows them as space too
        elif code > 0x7E:
            out.append(f"\\[u{code:04X}]")
        else:
            out.append(ch)
    return "".join(out)


def _line(roff: str) -> str:
    """One input line of running text (already escaped), never taken for a request."""
    roff = roff.lstrip(" ")
    return "\\&" + roff if roff.startswith((".", "'")) else roff


def _quoted(text: str) -> str:
    return '"' + escape(text) + '"'


def _bold(text: str) -> str:
    return r"\fB" + escape(text) + r"\fR"


def _italic_words(text: str) -> str:
    """An argparse argument spec (``[FILE ...]``, ``NAME``) with its metavars in italics."""
    out: list[str] = []
    pos = 0
    for m in _WORD.finditer(text):
        out += [escape(text[pos : m.start()]), r"\fI", escape(m.group()), r"\fR"]
        pos = m.end()
    out.append(escape(text[pos:]))
    return "".join(out)


def _word(roff: str) -> str:
    """Never hyphenated: ``\\%`` has to open the word (inside one it marks a hyphenation point)."""
    return "\\%" + roff


def _is_raw(parser: argparse.ArgumentParser) -> bool:
    return isinstance(parser._get_formatter(), _RAW_FORMATTERS)


class _Formatter(argparse.HelpFormatter):
    """argparse's own metavars and help expansion (``%(default)s``, choices, nargs)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=10_000, max_help_position=10_000)

    def args_of(self, action: argparse.Action) -> str:
        if action.nargs == 0:
            return ""
        if action.option_strings:
            return self._format_args(action, self._get_default_metavar_for_optional(action))
        return self._format_args(action, self._get_default_metavar_for_positional(action))

    def metavar_of(self, action: argparse.Action) -> str:
        return " ".join(self._metavar_formatter(action, action.dest)(1))

    def help_of(self, action: argparse.Action) -> str:
        return " ".join(self._expand_help(action).split()) if action.help else ""


def _styled_args(action: argparse.Action, fmt: _Formatter) -> str:
    if action.metavar is None and action.choices is not None and action.nargs in (None, "?"):
        choices = "{" + ",".join(_bold(str(c)) for c in action.choices) + "}"
        return "[" + choices + "]" if action.nargs == "?" else choices
    return _italic_words(fmt.args_of(action))


def _option_spec(action: argparse.Action, fmt: _Formatter, option: str) -> str:
    """``--output FILE`` as one unbreakable roff word."""
    args = _styled_args(action, fmt)
    return _bold(option) + (r"\ " + args if args else "")


def _subparsers(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[Command]:
    """Every command under ``parser``, depth first in definition order; hidden ones
    (``help=argparse.SUPPRESS``) skipped, an alias reported with the command it names."""
    sub = _subparsers(parser)
    if sub is None:
        return
    helps = {a.dest: a.help for a in sub._choices_actions}
    names: dict[int, list[str]] = {}
    for name, child in sub._name_parser_map.items():
        names.setdefault(id(child), []).append(name)
    for name, child in sub._name_parser_map.items():
        first, *aliases = names[id(child)]
        if name != first or helps.get(name) == argparse.SUPPRESS:
            continue
        yield (*path, name), child, helps.get(name) or "", tuple(aliases)
        yield from walk(child, (*path, name))


def _synopsis(prog: str, parser: argparse.ArgumentParser, with_command: bool = True) -> list[str]:
    """``.SY``/``.YS`` in argparse's usage order: options, positionals, then the command."""
    fmt = _Formatter(prog)
    groups = {id(a): g for g in parser._mutually_exclusive_groups for a in g._group_actions}
    done: set[int] = set()
    parts: list[str] = []
    rank = {
        id(a): (not a.option_strings) + isinstance(a, argparse._SubParsersAction) for a in parser._actions
    }
    for action in sorted(parser._actions, key=lambda a: rank[id(a)]):
        if id(action) in done or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            if with_command:
                parts.append(r"\fICOMMAND\fR [\fIARGUMENT\fR ...]")
            continue
        group = groups.get(id(action))
        members = (
            [action] if group is None else [a for a in group._group_actions if a.help != argparse.SUPPRESS]
        )
        done.update(id(a) for a in members)
        specs = [
            _option_spec(a, fmt, a.option_strings[0]) if a.option_strings else _styled_args(a, fmt)
            for a in members
        ]
        text = specs[0] + "".join(" | " + _word(spec) for spec in specs[1:])
        required = group.required if group is not None else action.required
        if (action.option_strings or group is not None) and not required:
            text = "[" + text + "]"
        parts.append(_word(text))
    return [".SY " + _quoted(prog), *(_line(p) for p in parts), ".YS"]


def _options(prog: str, parser: argparse.ArgumentParser) -> list[str]:
    fmt = _Formatter(prog)
    out: list[str] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            tag = ", ".join(_word(_option_spec(action, fmt, o)) for o in action.option_strings)
        else:
            tag = _word(_italic_words(fmt.metavar_of(action)))
        out += [".TP", _line(tag)]
        if help_text := fmt.help_of(action):
            out.append(_line(escape(help_text)))
    return out


def _literal(lines: list[str]) -> list[str]:
    """Indented lines (examples) kept as they are, relative indentation too; indented a little when
    that still fits an 80-column terminal."""
    block = textwrap.dedent("\n".join(lines)).splitlines()
    body = [".nf", *("\\&" + escape(x) for x in block), ".fi"]
    if max(len(x) for x in block) <= _WIDTH - _INDENT - 2:
        return [".PP", ".RS 2", *body, ".RE"]
    return [".PP", *body]


def _text(text: str | None, raw: bool) -> list[str]:
    """A description or epilog: paragraphs (separated by blank lines) refilled; with a raw formatter
    (``RawDescriptionHelpFormatter``), indented lines (examples) are kept line by line."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", textwrap.dedent(text or "").strip("\n")):
        prose: list[str] = []
        literal: list[str] = []
        for line in [*block.splitlines(), ""]:
            if line and raw and line[:1].isspace():
                literal.append(line)
                if prose:
                    out += [".PP", _line(escape(" ".join(prose)))]
                    prose = []
                continue
            if literal:
                out += _literal(literal)
                literal = []
            if line.strip():
                prose.append(line.strip())
        if prose:
            out += [".PP", _line(escape(" ".join(prose)))]
    return out


def _name_line(parser: argparse.ArgumentParser) -> str:
    """The NAME line's summary: the description's first sentence, from lower case unless it opens
    with an acronym."""
    text = " ".join((parser.description or "").split())
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".")
    word = first.split(" ", 1)[0]
    if not (len(word) > 1 and word.isupper()):
        first = first[:1].lower() + first[1:]
    return f"{parser.prog} - {first}" if first else parser.prog


def _date() -> str:
    """``SOURCE_DATE_EPOCH`` (reproducible builds) when set, else today (UTC)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch.isascii() and epoch.isdigit():
        now = dt.datetime.fromtimestamp(int(epoch), dt.UTC)
    else:
        now = dt.datetime.now(dt.UTC)
    return now.date().isoformat()


def render(parser: argparse.ArgumentParser | None = None, date: str | None = None) -> str:
    """The page (roff, section 1) for ``parser``, by default :func:`mailpolicy.cli.build_parser`'s."""
    from mailpolicy.config import DEFAULT_PATH

    if parser is None:
        from mailpolicy.cli import build_parser

        parser = build_parser()
    prog = parser.prog
    commands = list(walk(parser))
    title = [escape(prog.upper()), SECTION, _quoted(date or _date()), _quoted(f"{prog} {__version__}")]
    out = [
        f'.\\" {escape(prog)}({SECTION}), generated by mailpolicy.manpage from the argparse definitions',
        ".TH " + " ".join([*title, _quoted("User Commands")]),
        ".SH NAME",
        _line(escape(_name_line(parser))),
        ".SH SYNOPSIS",
        *_synopsis(prog, parser, with_command=not commands),
    ]
    for names, child, _help, _aliases in commands:
        out += _synopsis(" ".join((prog, *names)), child)
    out += [".SH DESCRIPTION", *_text(parser.description, _is_raw(parser))]
    if commands:
        how = _bold(prog) + r" \fICOMMAND\fR " + _bold("--help")
        out += [
            ".PP",
            _line(escape("Each command is described under COMMANDS; ") + how + " prints its help."),
        ]
    out += [".SH OPTIONS", *_options(prog, parser), *_text(parser.epilog, _is_raw(parser))]
    if commands:
        out.append(".SH COMMANDS")
    for names, child, help_text, aliases in commands:
        name = " ".join((prog, *names))
        out.append(".SS " + _quoted(name))
        if child.description:
            out += _text(child.description, _is_raw(child))
        elif help_text:
            out += [".PP", _line(escape(help_text[:1].upper() + help_text[1:] + "."))]
        if aliases:
            out += [".PP", _line(escape("Also called ") + ", ".join(_bold(a) for a in aliases) + ".")]
        out += [".PP", "Usage:", *_synopsis(name, child)]
        if options := _options(name, child):
            out += [".PP", "Options:", ".RS 4", *options, ".RE"]
        out += _text(child.epilog, _is_raw(child))
    see_also = [f".BR {escape(page)} ({sect})," for page, sect in SEE_ALSO]
    out += [
        ".SH EXIT STATUS",
        _line(
            escape(
                "0 on success; 1 when the command fails (a configuration error, a milter that cannot "
                "start, an input that cannot be read); 2 for a command line that cannot be used. "
                "status: 3 when no milter answers, 4 when it cannot tell (no metrics endpoint "
                "configured, or a configuration file it cannot read)."
            )
        ),
        ".SH FILES",
        ".TP",
        _line(r"\fI" + escape(DEFAULT_PATH) + r"\fR"),
        _line(escape("The configuration file, unless another is given.")),
        ".SH SEE ALSO",
        *see_also[:-1],
        see_also[-1].rstrip(","),
    ]
    return "\n".join(out) + "\n"


def write(path: str | os.PathLike[str], parser: argparse.ArgumentParser | None = None) -> Path:
    """Render the page into ``path`` (parent directories created) and return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(parser), encoding="ascii")
    return target


USAGE = "usage: python -m mailpolicy.manpage [OUT]   (OUT omitted or '-': standard output)"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if len(args) > 1 or (args and args[0].startswith("-") and args[0] != "-"):
        print(USAGE, file=sys.stderr)
        return 2
    if not args or args[0] == "-":
        sys.stdout.write(render())
    else:
        write(args[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
