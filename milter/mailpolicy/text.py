"""Text the MTA or the sender controls, made safe to record.

Every value that reaches an event line, a metric or a log message passes through :func:`clean`:
printable, valid Unicode (so the line is valid UTF-8 JSON), bounded in length. A macro that the
MTA sent but that is not valid UTF-8 cannot be read as text by pymilter; it becomes an
:class:`Unreadable` fact (its bytes kept, its text shown with U+FFFD), never a reason to skip a check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_LEN = 256


@dataclass(frozen=True)
class Unreadable:
    """A value that could not be decoded as UTF-8 (e.g. an 8-bit ``{cert_subject}`` macro)."""

    raw: bytes

    @property
    def text(self) -> str:
        return clean(self.raw) or ""


Macro = str | Unreadable | None
"""A macro value as the adapter read it: text, unreadable bytes, or absent."""


def to_str(value: object) -> str:
    """Any value as valid Unicode: bytes are decoded as UTF-8 (bad bytes become U+FFFD), and so are
    the lone surrogates pymilter's ``surrogateescape`` decoding leaves in a ``str``."""
    if isinstance(value, Unreadable):
        value = value.raw
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    text = value if isinstance(value, str) else str(value)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def valid_unicode(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, tuples, strings, bytes, numbers) with every string and
    key made valid Unicode (:func:`to_str`), bytes decoded, tuples as lists: what can always be
    written as UTF-8 (the event writer's slow path, the report's output)."""
    if isinstance(value, str):
        return to_str(value)
    if isinstance(value, dict):
        return {to_str(str(k)): valid_unicode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [valid_unicode(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return to_str(bytes(value))
    return value


def clean(value: object, limit: int = MAX_LEN) -> str | None:
    """A value as printable, valid Unicode text of bounded length, or None when absent or empty.
    Control characters (including CR and LF) become ``?``."""
    if value is None:
        return None
    # (the usual case, ASCII text, skips to_str)
    text = (value if type(value) is str and value.isascii() else to_str(value)).strip()
    if not text.isprintable():  # the usual case skips the per-character walk
        text = "".join(c if c.isprintable() else "?" for c in text)
    return text[:limit] or None


def macro_text(value: Macro, limit: int = MAX_LEN) -> str | None:
    """The text of a macro value (an unreadable one shows its bytes decoded with U+FFFD)."""
    return clean(value.raw if isinstance(value, Unreadable) else value, limit)
