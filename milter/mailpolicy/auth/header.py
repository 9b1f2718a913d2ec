"""The one Authentication-Results header (RFC 8601) we add, and the detection of incoming ones that
claim our authserv-id (removed before ours is added).

The header is written here rather than by ``authres``'s renderer, which leaves values containing
``@`` unquoted whatever else they hold (so ``smtp.mailfrom=a@x,b@y`` or ``foo@[192.0.2.1]`` come out
unparseable). Every value that is not a plain RFC 8601 ``pvalue`` / RFC 2045 ``token`` is written as
a quoted-string (RFC 8601 2.2, RFC 5322 3.2.4); characters outside printable ASCII (which a header
cannot carry without SMTPUTF8) become ``?``. The tests parse every header we write with ``authres``
in strict mode.

Two readings of incoming values, for opposite purposes. :func:`claims` decides which fields are
removed as forged, and is as lenient as the most lenient reader after us (white space and control
or format characters of any kind, comments read several ways, other decodings of the bytes):
a field anybody could take as ours goes. :func:`resinfos` reads what somebody else recorded (a
trusted ARC sealer's ARC-Authentication-Results) strictly: quoted-strings and comments followed
exactly, and a payload it cannot read as a whole is None, so that nothing is believed that could be
read two ways."""

from __future__ import annotations

import binascii
import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
#
# RFC 8601 5: a border MTA removes the fields that claim its authserv-id. The point is that no
# reader after us -- an MTA, a filter such as SpamAssassin's AuthRes plugin, a mail client --
# trusts a result we did not write, so the decision follows the most lenient of those readers,
# not the grammar: see :func:`claims`. The strict RFC reading is :func:`authserv_id_of`.

WINDOW = 512  # bytes of a value the slow path reads; the authserv-id is the first thing in it
_MARGIN = 96  # a reading that ends this close to the end of a cut window decides nothing
_MAX_NESTING = 16  # comment depth followed before the authserv-id
_TOKEN_SLACK = 64  # a token is compared on at most len(authserv-id) + this many characters
_SEPARATOR_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})
# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties.txt): rendered as nothing.
_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)  # fmt: skip
_BLANK = (0x2800, 0xFFFD)  # BRAILLE PATTERN BLANK, REPLACEMENT CHARACTER
# Planes 0, 1 and 14 hold every character of those kinds (a test checks the rest of the range).
_SCANNED = (range(0x20000), range(0xE0000, 0xE1000))
_TOKEN_END = '()<>@,;:\\"/[]?='  # RFC 2045 tspecials (with the separators)
_WORD_END = '()";\\'  # what ends a word of the strict reading (with the separators)
_DOTLESS = str.maketrans({"\u0130": "i", "\u0131": "i"})  # U+0130, U+0131: 'i' per character
_FAST = re.compile(rb"[ \t\r\n]*+([A-Za-z0-9!#$%&'*+.^_`{|}~-]++)(?=[ \t\r\n;(]|\Z)")
_FAST_MAX = WINDOW - _MARGIN
_HIGH = bytes(range(0x80, 0x100))
_HIGH_TO_SPACE = bytes.maketrans(_HIGH, b" " * len(_HIGH))
_ASCII_INVISIBLE = dict.fromkeys([*range(0x09), *range(0x0E, 0x1C), 0x7F])  # Cc that is not white space
_HIGH_MASK = bytes(0xFF if i >= 0x80 else 0 for i in range(256))
_ENCODED_WORD = re.compile(r"=\?([^?]*+)\?([bBqQ])\?([^?]*+)\?=")
_BETWEEN_WORDS = re.compile(r"[ \t\r\n]*")
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)


def _ranges(points: list[int]) -> str:
    """A regex character-class body for the sorted code points."""
    out: list[str] = []
    start = prev = points[0]
    for cp in [*points[1:], -1]:
        if cp != prev + 1:
            out.append(f"\\U{start:08x}" if start == prev else f"\\U{start:08x}-\\U{prev:08x}")
            start = cp
        prev = cp
    return "".join(out)


def _nested(qp: bool, to_end: bool) -> str:
    """A comment nesting at most ``_MAX_NESTING`` deep, with (``qp``) or without quoted-pairs; with
    ``to_end``, one the text ends inside also matches (to the end)."""
    inner = r"[^()\\]++|\\." if qp else r"[^()]++"
    if qp and to_end:
        inner += r"|\\\Z"
    close = r"(?:\)|\Z)" if to_end else r"\)"
    pattern = rf"\((?:{inner})*+{close}"
    for _ in range(_MAX_NESTING - 1):
        pattern = rf"\((?:{inner}|{pattern})*+{close}"
    return pattern


@dataclass(frozen=True)
class _Reading:
    """How one kind of reader gets past what precedes the authserv-id."""

    skip: re.Pattern[str]  # separators and comments, as this reader closes them
    too_deep: re.Pattern[str] | None  # nested readers: fails on a comment deeper than we follow
    quoted: re.Pattern[str]
    qp: bool  # quoted-pairs are undone


@dataclass(frozen=True)
class _Classes:
    separators: re.Pattern[str]  # a run (possibly empty) of separator characters
    invisible: re.Pattern[str]  # a run of characters a reader may drop
    token: re.Pattern[str]  # the authserv-id token (possibly empty)
    word: re.Pattern[str]  # a word of the strict reading (resinfos)
    plain: tuple[_Reading, ...]  # no '(' in the text
    plain_qp: tuple[_Reading, ...]  # no '(' but a backslash
    comments: tuple[_Reading, ...]  # '(' but no backslash
    comments_qp: tuple[_Reading, ...]  # both


@functools.cache
def _classes() -> _Classes:
    """Built on first use from the running Python's Unicode database (tens of milliseconds, once)."""
    ignorable = {cp for lo, hi in _IGNORABLE for cp in range(lo, hi + 1)}
    separators: list[int] = []
    invisible: list[int] = []
    for cp in (cp for block in _SCANNED for cp in block):
        ch = chr(cp)
        category = unicodedata.category(ch)
        if cp in ignorable or category in ("Cf", "Cs") or (category == "Cc" and not ch.isspace()):
            invisible.append(cp)
            separators.append(cp)
        elif ch.isspace() or category in _SEPARATOR_CATEGORIES or cp in _BLANK:
            separators.append(cp)
    sep = _ranges(separators)
    quoted_qp = re.compile(r'"((?:[^"\\]++|\\.)*+)("?)', re.S)
    quoted_raw = re.compile(r'"([^"]*+)("?)')
    plain_skip = re.compile(f"[{sep}]*+")
    nested_qp = re.compile(rf"(?:[{sep}]++|{_nested(True, False)})*+", re.S)
    nested_raw = re.compile(rf"(?:[{sep}]++|{_nested(False, False)})*+")
    flat_qp = re.compile(rf"(?:[{sep}]++|\((?:[^)\\]++|\\.)*+\))*+", re.S)
    flat_raw = re.compile(rf"(?:[{sep}]++|\([^)]*+\))*+")
    deep_qp = re.compile(_nested(True, True), re.S)
    deep_raw = re.compile(_nested(False, True))
    r_plain_qp = _Reading(plain_skip, None, quoted_qp, True)
    r_plain_raw = _Reading(plain_skip, None, quoted_raw, False)
    r_nested_qp = _Reading(nested_qp, deep_qp, quoted_qp, True)
    r_flat_qp = _Reading(flat_qp, None, quoted_qp, True)
    return _Classes(
        separators=plain_skip,
        invisible=re.compile(f"[{_ranges(invisible)}]+"),
        token=re.compile(f"[^{sep}{re.escape(_TOKEN_END)}]*+"),
        word=re.compile(f"[^{sep}{re.escape(_WORD_END)}]++"),
        plain=(r_plain_qp,),
        plain_qp=(r_plain_qp, r_plain_raw),
        comments=(r_nested_qp, r_flat_qp),
        comments_qp=(
            r_nested_qp,
            _Reading(nested_raw, deep_raw, quoted_raw, False),
            r_flat_qp,
            _Reading(flat_raw, None, quoted_raw, False),
        ),
    )


def _raw(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_DOTLESS).casefold()


@functools.lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    return _fold(ch)


def _target(authserv_id: str) -> str:
    if authserv_id.isascii():
        return authserv_id.lower().rstrip(".")
    return _fold(authserv_id).rstrip(".")


def _is(folded: str, target: str) -> bool:
    return folded.startswith(target) and not folded[len(target) :].strip(".")


def _matches(token: str, target: str) -> bool:
    """Whether ``token`` reads as ``target``: compared after NFKC and case folding (also of U+0130
    and U+0131, dotted capital and dotless i), with trailing dots ignored; and so is every part of
    it that ends before a non-ASCII character (a reader whose tokens are ASCII stops there)."""
    if token.isascii():
        return token.lower().rstrip(".") == target
    folded = ""
    bound = len(target) + _TOKEN_SLACK
    for ch in token:
        if ch.isascii():
            folded += ch.lower()
        else:
            if _is(folded, target):
                return True
            folded += _fold_char(ch)
        if len(folded) > bound:
            return False
    return _is(folded, target)


def _decode_word(m: re.Match[str]) -> str:
    data = m.group(3).encode("utf-8", "replace")
    try:
        if m.group(2) in "qQ":
            raw = binascii.a2b_qp(data, header=True)
        else:
            raw = binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return m.group(0)
    try:
        return raw.decode(m.group(1).partition("*")[0], "replace")
    except Exception:  # an unknown or unusable charset (LookupError, UnicodeError, ...): read as UTF-8
        return raw.decode("utf-8", "replace")


def _decode_words(text: str) -> str:
    """``text`` with its RFC 2047 encoded-words decoded (white space between two of them dropped)."""
    out: list[str] = []
    pos, previous = 0, False
    for m in _ENCODED_WORD.finditer(text):
        gap = text[pos : m.start()]
        if not (previous and _BETWEEN_WORDS.fullmatch(gap)):
            out.append(gap)
        out.append(_decode_word(m))
        pos, previous = m.end(), True
    out.append(text[pos:])
    return "".join(out)


def _views(raw: bytes, c: _Classes) -> dict[str, None]:
    """The texts a reader could make of the bytes (an ordered set): see :func:`claims`."""
    text = raw.decode("utf-8", "surrogateescape")
    bases = [text]
    if "=?" in text:
        bases.append(_decode_words(text))
    views: dict[str, None] = {}
    for base in bases:
        views[base] = None
        if not (base.isascii() and base.isprintable()):  # else NFKC and dropping change nothing
            views[unicodedata.normalize("NFKC", base)] = None
            if c.invisible.search(base):
                visible = base.translate(_ASCII_INVISIBLE) if base.isascii() else c.invisible.sub("", base)
                views[unicodedata.normalize("NFKC", visible)] = None
    if b"\x1b" in raw or b"\x0e" in raw:
        for codec in ("iso2022_jp_2", "iso2022_kr"):
            views[raw.decode(codec, "replace")] = None
    if not raw.isascii():
        views[raw.translate(_HIGH_TO_SPACE).decode("ascii")] = None
        views[_blank_pairs(raw).decode("ascii")] = None
        views[raw.translate(None, _HIGH).decode("ascii")] = None
    return views


def _blank_pairs(raw: bytes) -> bytes:
    """``raw`` with every non-ASCII byte and the byte after it blank (a double-byte character
    whose second byte is ASCII: 0x81 0x40 is U+3000 in Shift_JIS). Big-integer masks: linear."""
    n = len(raw)
    high = int.from_bytes(raw.translate(_HIGH_MASK), "big")
    mask = high | (high >> 8)
    value = (int.from_bytes(raw, "big") & ~mask) | (int.from_bytes(b" " * n, "big") & mask)
    return value.to_bytes(n, "big")


def _strip(text: str, c: _Classes) -> str:
    start = c.separators.match(text).end()  # type: ignore[union-attr]
    end = len(text) - c.separators.match(text[::-1]).end()  # type: ignore[union-attr]
    return text[start:end] if start < end else ""


def _reads_as(view: str, target: str, cut: bool, c: _Classes) -> bool:
    """Whether some reading of ``view`` finds ``target`` (or, in a cut window, does not finish)."""
    n = len(view)
    near_end = n - _MARGIN if cut else n + 1
    start = c.separators.match(view).end()  # type: ignore[union-attr]
    if start >= near_end:
        return True
    if start >= n:
        return False
    first = view[start]
    if first == "(":  # the readings differ in how they close comments, and so in what follows
        readings = c.comments_qp if "\\" in view else c.comments
    elif first == '"':
        readings = c.plain_qp if "\\" in view else c.plain
    else:
        readings = c.plain
    done: set[tuple[int, bool]] = set()
    for r in readings:
        i = r.skip.match(view, start).end() if first == "(" else start  # type: ignore[union-attr]
        if i >= near_end:
            return True
        if i >= n:
            continue
        ch = view[i]
        key = (i, r.qp and ch == '"')
        if key in done:
            continue
        done.add(key)
        if ch == "(":  # a comment this reader cannot close: unterminated, or deeper than we follow
            if cut or (r.too_deep is not None and r.too_deep.match(view, i) is None):
                return True
            continue
        if ch == '"':
            m = r.quoted.match(view, i)
            assert m is not None
            if cut and (not m.group(2) or m.end() >= near_end):
                return True
            content = _QUOTED_PAIR.sub(r"\1", m.group(1)) if r.qp else m.group(1)
            if _matches(_strip(content, c), target):
                return True
            continue
        if cut and view.startswith("=?", i):
            return True
        j = c.token.match(view, i).end()  # type: ignore[union-attr]
        if j >= near_end or _matches(view[i:j], target):
            return True
    return False


def claims(value: str | bytes, authserv_id: str) -> bool:
    """Whether an Authentication-Results value (after the colon) could be read as claiming
    ``authserv_id``; such a field is removed. Liberal on purpose: the field is ours when any
    plausible reader would take it as ours.

    - Before the authserv-id a reader may skip: any white space in the broadest sense
      (``str.isspace()``: also VT, FF, FS..US, NEL, NBSP, U+2000..U+200A, U+2028/9, U+3000 ...),
      any other control or format character (Unicode Cc, Cf: U+200B..U+200D, U+2060, U+FEFF ...),
      separators (Zs, Zl, Zp), default-ignorable code points (U+3164, U+FFA0, variation
      selectors ...), U+2800, U+FFFD, bytes that are not UTF-8, and comments -- nested as RFC 5322
      says or not (the first ')' closes), with or without quoted-pairs.
    - The authserv-id is then a token ending at a separator, an RFC 2045 tspecial (``;``, ``(``,
      ``/``, ...) or the end; or a quoted-string (its content with or without its quoted-pairs
      undone, separators trimmed; one left open runs to the end). A version after it
      (``mx.example 1;``) is not part of it.
    - It is ours when it equals ``authserv_id`` after NFKC and case folding (fullwidth letters,
      long s, Kelvin sign, U+0130 and U+0131), trailing dots ignored; or when the part of it before a
      non-ASCII character does (a reader whose tokens are ASCII stops there).
    - The value is read as UTF-8 (undecodable bytes count as separators), and also: after NFKC
      normalization; with invisible characters (Cc other than white space, Cf, undecodable bytes,
      default-ignorables) removed, so ``mx\\u200b.example`` reads as ``mx.example``; with its RFC
      2047 encoded-words decoded (SpamAssassin and Python's email read headers that way); as
      ISO-2022-JP/KR when it holds their shift sequences; and byte-wise with every non-ASCII byte
      (or such a byte and the one after it: Shift_JIS, Big5) a blank, or dropped.
    - A comment before the authserv-id nesting deeper than ``_MAX_NESTING`` (16): ours. One no
      reader can close (unterminated) hides the rest of the field from all of them: not ours.

    Cost: the usual value (blanks, then an ASCII token, then ``;``, a blank or ``(``) is one match
    on bytes. Anything else is read on its first :data:`WINDOW` bytes only, a fixed number of
    linear regex passes (no backtracking: possessive patterns; comment nesting is bounded); when
    the value is longer and a reading has not finished the authserv-id well inside the window, the
    field is treated as ours."""
    usual = claims_usual(value, authserv_id)
    return usual if usual is not None else claims_unusual(value, authserv_id)


def claims_usual(value: str | bytes, authserv_id: str) -> bool | None:
    """:func:`claims` for the usual value (one match on bytes, about 1 µs); None for any other,
    which takes the careful reading (tens of µs: a caller reading many bounds how many)."""
    m = _FAST.match(_raw(value))
    if m is not None and m.end() <= _FAST_MAX:
        return m.group(1).decode("ascii").lower().rstrip(".") == _target(authserv_id)
    return None


def claims_unusual(value: str | bytes, authserv_id: str) -> bool:
    """:func:`claims` for a value :func:`claims_usual` did not decide: the careful reading."""
    raw, target = _raw(value), _target(authserv_id)
    c = _classes()
    cut = len(raw) > WINDOW
    return any(_reads_as(view, target, cut, c) for view in _views(raw[:WINDOW], c))


def authserv_id_of(value: str | bytes) -> str | None:
    """The authserv-id a strict RFC 8601 reader sees (2.2: after CFWS -- SP, HTAB, CR, LF and
    nested comments -- a token or a quoted-string), lower case without a trailing dot; None when
    there is none. For display and tests: whether a field is removed is :func:`claims`, which
    is far more lenient."""
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


# ---- reading an A-R payload strictly ------------------------------------------------------------
#
# For what somebody else recorded (the ARC-Authentication-Results of a trusted sealer, RFC 8617),
# where the opposite rule holds: a value is believed only when it can be read one way. Quoted-
# strings and comments are followed exactly (a ';' inside one separates nothing), and anything
# this reading cannot account for makes the whole payload unreadable.

Piece = tuple[bool, str]  # (written as a quoted-string, its text with the quoted-pairs undone)
MAX_COMMENT_DEPTH = 64
_RESULT = re.compile(r"([A-Za-z0-9][A-Za-z0-9_-]*)(?:/[0-9]+)?=([A-Za-z0-9][A-Za-z0-9_-]*)")
_PROPERTY = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*)=(.*)", re.S)
_DOMAIN = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")
_LEX_BLANKS = re.compile(r"[ \t\r\n]++")
_LEX_QUOTED = re.compile(r'"((?:[^"\\]++|\\.)*+)"', re.S)
_LEX_IN_COMMENT = re.compile(r"[^()\\]*+")
_DIGITS = re.compile(r"[0-9]+")
_NONE = re.compile(r"none", re.I)


@dataclass(frozen=True)
class Resinfo:
    """One ``method=result`` of a payload and its ``name=value`` items (``reason``, ``ptype.property``
    and any other), each value as the pieces it was written in, without white space between them
    (``"a b"@example.org`` is a quoted piece and ``@example.org``)."""

    method: str  # lower case
    result: str  # lower case
    props: Mapping[str, tuple[Piece, ...]]  # name, lower case -> value


def _comment_end(text: str, i: int) -> int:
    """The index after the comment opening at ``i`` (nested, with quoted-pairs); -1 when the text
    ends inside it, -2 when it nests deeper than :data:`MAX_COMMENT_DEPTH`."""
    depth, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "(":
            depth += 1
            if depth > MAX_COMMENT_DEPTH:
                return -2
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i = _LEX_IN_COMMENT.match(text, i + 1).end()  # type: ignore[union-attr]
    return -1


def _lex(text: str) -> tuple[list[list[list[Piece]]], bool] | None:
    """The payload split at each ``;`` outside quoted-strings and comments into segments, each a
    list of items (pieces written with no white space or comment between them); and whether the
    text ended inside a quoted-string or comment. None when it holds what no RFC 8601 payload
    does outside those: a backslash, a ``)``, a control, format or other space character."""
    word = _classes().word
    segments: list[list[list[Piece]]] = [[]]
    item: list[Piece] | None = None
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i = _LEX_BLANKS.match(text, i).end()  # type: ignore[union-attr]
            item = None
            continue
        if ch == ";":
            segments.append([])
            item = None
            i += 1
            continue
        if ch == "(":
            end = _comment_end(text, i)
            if end == -2:
                return None
            if end == -1:
                return segments, True
            i, item = end, None
            continue
        if ch == '"':
            m = _LEX_QUOTED.match(text, i)
            if m is None:
                return segments, True
            piece = (True, _QUOTED_PAIR.sub(r"\1", m.group(1)))
        else:
            m = word.match(text, i)
            if m is None:
                return None
            piece = (False, m.group())
        i = m.end()
        if item is None:
            item = []
            segments[-1].append(item)
        item.append(piece)
    return segments, False


def _resinfo(segment: list[list[Piece]]) -> Resinfo | None:
    first = segment[0]
    m = _RESULT.fullmatch(first[0][1]) if len(first) == 1 and not first[0][0] else None
    if m is None:
        return None
    props: dict[str, tuple[Piece, ...]] = {}
    for item in segment[1:]:
        quoted, text = item[0]
        p = None if quoted else _PROPERTY.fullmatch(text)
        if p is None:
            return None
        name, rest = p.group(1).lower(), p.group(2)
        value = (((False, rest),) if rest else ()) + tuple(item[1:])
        if not value or name in props:  # a value after white space, or a name given twice: ambiguous
            return None
        props[name] = value
    return Resinfo(m.group(1).lower(), m.group(2).lower(), props)


def _plain(item: list[Piece], pattern: re.Pattern[str]) -> bool:
    """The item is one piece, not quoted, that matches ``pattern``."""
    return len(item) == 1 and not item[0][0] and pattern.fullmatch(item[0][1]) is not None


def resinfos(text: str, truncated: bool = False) -> list[Resinfo] | None:
    """The results of an A-R payload (``authserv-id [version]; resinfo; ...``, as in the value of
    an Authentication-Results or, after ``i=N;``, an ARC-Authentication-Results field), read
    strictly; None when it cannot be read as a whole: an unterminated quoted-string or comment,
    a comment deeper than 64, a stray backslash or ``)``, a control or odd space character outside
    quotes, an authserv-id segment that is not one value (and a version), a result that is not
    ``method[/version]=result`` followed by ``name=value`` items (no white space around ``=``),
    a name twice in one result. ``none`` and empty segments are skipped.

    With ``truncated`` (the text was cut at some length) its last segment, which may have been cut
    short, is dropped instead, and so is one the cut left inside a quoted-string or comment."""
    lexed = _lex(text)
    if lexed is None:
        return None
    segments, unterminated = lexed
    if unterminated and not truncated:
        return None
    if truncated:
        segments = segments[:-1]
    if not segments:
        return []
    head = segments[0]
    version = head[1] if len(head) == 2 else [(False, "1")]
    if not (len(head) in (1, 2) and len(head[0]) == 1 and _plain(version, _DIGITS)):
        return None
    out: list[Resinfo] = []
    for segment in segments[1:]:
        if not segment or (len(segment) == 1 and _plain(segment[0], _NONE)):
            continue
        r = _resinfo(segment)
        if r is None:
            return None
        out.append(r)
    return out


def domain_of(value: tuple[Piece, ...]) -> str | None:
    """The domain a property value names, lower case: ``example.org``, ``local@example.org``,
    ``@example.org`` or ``"quoted local"@example.org``. None for anything else -- in particular a
    value written as one quoted-string: its content is text, not a structure to read a domain
    from."""
    if len(value) == 1 and not value[0][0]:
        local, _, domain = value[0][1].rpartition("@")
        if "@" in local:
            return None
    elif len(value) == 2 and value[0][0] and not value[1][0] and value[1][1].startswith("@"):
        domain = value[1][1][1:]
    else:
        return None
    return domain.lower() if _DOMAIN.fullmatch(domain) else None
