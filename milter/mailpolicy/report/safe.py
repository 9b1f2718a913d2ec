"""Text from the logs made safe to show: every string of the report document comes from event lines
(or file names) that anyone who can send mail to the MX shapes in part.

- :func:`printable_doc`: for the terminal (the text report, messages on standard error), every
  character a terminal would not show as itself (controls, ESC and BEL included, C1 controls,
  bidi overrides and isolates, other format characters, line and paragraph separators, lone
  surrogates) written as ``\\uXXXX``;
- :func:`valid_doc`: for any output, every string made valid Unicode (a lone surrogate, as a file
  name that is not valid UTF-8 gives, becomes U+FFFD), so that writing it as UTF-8 cannot fail."""

from __future__ import annotations

from typing import Any

from mailpolicy.text import valid_unicode

MULTILINE_KEYS = frozenset({"suggestions_toml"})
"""Keys of the report document whose value is text of several lines that the report wrote itself:
made printable line by line, its newlines kept."""


def printable(text: str, space: bool = True) -> str:
    """``text`` with every character that :meth:`str.isprintable` refuses as ``\\uXXXX`` (a newline
    is not printable; a space is, unless ``space`` is False: a domain name holds none)."""
    if text.isprintable() and (space or " " not in text):
        return text
    return "".join(
        c
        if c.isprintable() and (space or c != " ")
        else (f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
        for c in text
    )


def printable_lines(text: str) -> str:
    """``text`` made :func:`printable` line by line, its newlines kept."""
    return "\n".join(printable(line) for line in text.split("\n"))


def printable_doc(value: Any, multiline: bool = False) -> Any:
    """``value`` (the report document or a part of it) with every string, dict keys included,
    :func:`printable`; the values of :data:`MULTILINE_KEYS` line by line."""
    if isinstance(value, str):
        return printable_lines(value) if multiline else printable(value)
    if isinstance(value, dict):
        return {
            printable(k) if isinstance(k, str) else k: printable_doc(v, k in MULTILINE_KEYS)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [printable_doc(v) for v in value]
    return value


valid_doc = valid_unicode
"""``value`` with every string, dict keys included, valid Unicode (:func:`mailpolicy.text.valid_unicode`)."""
