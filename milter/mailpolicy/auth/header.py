"""The one Authentication-Results header (RFC 8601) we add, and the detection of incoming ones that
claim our authserv-id (removed before ours is added).

The header is written here rather than by ``authres``'s renderer, which leaves values containing
``@`` unquoted whatever else they hold (so ``smtp.mailfrom=a@x,b@y`` or ``foo@[192.0.2.1]`` come out
unparseable). Every value that is not a plain RFC 8601 ``pvalue`` / RFC 2045 ``token`` is written as
a quoted-string (RFC 8601 2.2, RFC 5322 3.2.4); characters outside printable ASCII (which a header
cannot carry without SMTPUTF8) become ``?``. The tests parse every header we write with ``authres``
in strict mode."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from mailpolicy.auth import AuthResults, registry
from mailpolicy.auth.address import skip_cfws

NAME = "Authentication-Results"
_PTEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]+")  # RFC 8601 pvalue without quoting
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`{|}~-]+")  # RFC 2045 token
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")  # method results and property names
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_CFWS = " \t\r\n"
_TSPECIALS = frozenset('()<>@,;:\\"/[]?= \t\r\n')
MAX_VALUE = 254


def _printable(text: str, limit: int = MAX_VALUE) -> str:
    if text.isascii() and text.isprintable():  # the usual case: already printable ASCII
        return text[:limit]
    return _NOT_PRINTABLE.sub("?", text)[:limit]


def quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# _PTEXT not starting with "@", in one match (neither matches an empty value)
_PLAIN = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-][A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]*")
_RENDERED: dict[str, tuple[str, bool]] = {}
_RENDERED_MAX = 1024  # entries; only values of at most MAX_VALUE characters are kept
_WORDS: set[str] = set()  # method and result words seen to pass the _WORD check
_WORDS_MAX = 256


def _render(value: str) -> tuple[str, bool]:
    """:func:`pvalue` of ``value``, and whether it is written as is (plain ``ptext``) rather than
    quoted. A pure function of ``value``: remembered for the short values that repeat from message
    to message (domains, selectors, algorithms, addresses), in a table of bounded size."""
    hit = _RENDERED.get(value)
    if hit is None:
        text = _printable(value)
        hit = (text, True) if _PLAIN.fullmatch(text) else (quoted(text), False)
        if len(value) <= MAX_VALUE:
            if len(_RENDERED) >= _RENDERED_MAX:
                _RENDERED.clear()
            _RENDERED[value] = hit
    return hit


def pvalue(text: str) -> str:
    """A property value: as is when it is plain ``*ptext`` (not starting with ``@``), else quoted."""
    return _render(text)[0]


def token_or_quoted(text: str, limit: int = 100) -> str:
    text = _printable(text, limit)
    return text if _TOKEN.fullmatch(text) else quoted(text)


def resinfo(
    method: str, result: str, comment: str | None, reason: str | None, props: list[tuple[str, str]]
) -> str:
    """One ``method=result`` clause. Properties whose value is plain ``ptext`` come first; a value
    that needs quoting is written as a quoted-string in last position (where every RFC 8601 reader,
    authres included, accepts one); should a second one need quoting it is named in a comment
    instead (the event carries every value in full)."""
    if method not in _WORDS or result not in _WORDS:
        assert _WORD.fullmatch(method) and _WORD.fullmatch(result)
        if len(_WORDS) < _WORDS_MAX:
            _WORDS.update((method, result))
    parts = [f"{method}={result}"]
    plain: list[str] = []
    other: list[tuple[str, str]] = []
    for name, value in props:
        if value:
            written, is_plain = _render(value)
            if is_plain:
                plain.append(f" {name}={written}")
            else:
                other.append((name, written))
    notes = [comment] if comment else []
    if len(other) > 1:
        notes += [f"{n} not shown: not a plain value" for n, _ in other[1:]]
    if notes:
        text = "; ".join([_printable(n) for n in notes])
        parts.append(f" ({text.replace('(', '[').replace(')', ']').replace(chr(92), '/')})")
    if reason:
        parts.append(f" reason={token_or_quoted(reason)}")
    parts += plain
    if other:
        name, written = other[0]
        parts.append(f" {name}={written}")
    return "".join(parts)


def build(authserv_id: str, res: AuthResults, notes: Mapping[str, str] | None = None) -> str:
    """The header *value* (without the field name), on one line: the clauses of every method that
    ran, in registry order; ``notes`` (by method name) are written as comments on its clauses."""
    parts: list[str] = []
    for name, spec in registry().items():
        if name in res.results:
            parts += spec.clauses(res.results[name], (notes or {}).get(name))
    return "; ".join([authserv_id, *(parts or ["none"])])


_FOLD_POINT = re.compile(r'("(?:[^"\\]|\\.)*(?:"|\\?\Z))|; ', re.DOTALL)


def fold(value: str, width: int = 200) -> str:
    """Fold a long header value after each ``; `` that separates results (LF + TAB: the MTA writes
    the line ends). Quoted values never contain ``;``: ``_printable`` keeps it, so fold only at
    a ``; `` that is outside a quoted-string (one left open runs to the end)."""
    if len(value) <= width:
        return value
    return _FOLD_POINT.sub(lambda m: m.group(1) or ";\n\t", value)


# ---- recognising headers that claim our authserv-id -----------------------------------------


def authserv_id_of(value: str | bytes) -> str | None:
    """The authserv-id an A-R header value claims (RFC 8601 2.2: after CFWS, a token or a
    quoted-string), lower case without a trailing dot; None when there is none. Deliberately
    broader than a strict parser: a header that any reader could take as ours is recognised."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    i, _closed = skip_cfws(text, 0)
    n = len(text)
    if i < n and text[i] == '"':
        out = []
        i += 1
        while i < n and text[i] != '"':
            if text[i] == "\\" and i + 1 < n:
                i += 1
            out.append(text[i])
            i += 1
        token = "".join(out)
    else:
        start = i
        while i < n and text[i] not in _TSPECIALS and " " < text[i] != "\x7f":
            i += 1
        token = text[start:i]
    token = token.strip(_CFWS).lower().rstrip(".")
    return token or None


def claims(value: str | bytes, authserv_id: str) -> bool:
    return authserv_id_of(value) == authserv_id.lower().rstrip(".")


def forged_indexes(headers: Sequence[tuple[str, str]], authserv_id: str) -> list[int]:
    """1-based indexes (among A-R fields, for ``chgheader``) of the fields claiming ``authserv_id``."""
    out: list[int] = []
    n = 0
    for name, value in headers:
        if name.strip().lower() != NAME.lower():
            continue
        n += 1
        if claims(value, authserv_id):
            out.append(n)
    return out
