"""Look-alike senders: inbound mail whose From domain imitates one of our domains.

Which domains are ours
    The events carry no recipient address (only ``rcpt_count``), so the domains we receive mail for
    cannot be read from them. They are configured (``mailpolicy report --our-domain example.org``,
    repeatable). Without that, the report guesses them from the events' ``host`` names
    (``milter.hostname``: ``mx1.example.org`` gives ``example.org``) and says so; a host name
    without a dot (the default when ``milter.hostname`` is unset on many systems) gives nothing, and
    the section then asks for ``--our-domain``. Nothing else in the events says what is ours: DMARC
    passes, DKIM and SPF domains, HELO and client names all belong to the senders.

What is ours, and never flagged
    Our domains, their subdomains and every name under the same registrable domain
    (``mail.example.com`` and ``news.example.com`` for ``example.com``). A domain of ours below
    someone else's registrable domain (``example.zendesk.com``, a service sending for us) is ours
    with its subdomains, and nothing is matched against it: naming it silences it, without making
    ``zendesk.com`` ours. Look-alikes are searched for the registrable domains of ours.

Registrable domain
    The project has no Public Suffix List (the DMARC code walks the DNS tree instead). A name's
    public suffix is taken to be its last label, or its last two when the last is a two-letter
    country code and the one before a generic second-level word (``co.uk``, ``com.au``, ``co.jp``,
    ``org.ru``; see ``_SLD``). The registrable label ("name") is the label before the suffix. An
    unusual suffix only changes how a look-alike is labelled (``tld-swap`` or ``extra-labels``),
    never whether our own names are recognised, since ours are split by the same rule.

Techniques (a look-alike may show several; the report lists all for the domain it imitates best)
    ``confusable``   the name looks the same as ours: equal Unicode TR39 skeletons (``paypal``
                     spelt with a Cyrillic a U+0430, ``paypa1``, ``exarnple``; ``vv`` for ``w``
                     and ``cl`` for ``d`` are added to TR39's table), or a homoglyph helped
                     another technique.
    ``punycode``     the imitating label is an internationalised (``xn--``) label.
    ``hyphen``       the same name once hyphens are removed (``pay-pal``).
    ``edit-1``       one typing error under the same suffix, of the kinds typosquatters use:
                     an adjacent transposition, an omission, an insertion, or a substitution by a
                     neighbouring key (QWERTY), a vowel, a similar letter (i/l/j, u/v, g/q, c/e)
                     or the same letter with a diacritic. Names of 4-5 characters: only a
                     transposition, a doubled letter or a doubled letter dropped (``bnak``,
                     ``bannk``), since one substitution in a short name makes another word;
                     but a similar letter from another script counts at any length (``apple``
                     spelt with a Cyrillic palochka for the l, xn--80ak6aa92e.com).
    ``edit-2``       two edits of any kind, for names of 10 characters or more.
    ``tld-swap``     the same (or a confusable, or hyphenated) name under another public suffix
                     (``paypal.co``, ``paypal.co.uk``); names of 5 characters or more only:
                     ``bank.com`` is not an imitation of ``bank.example``.
    ``extra-labels`` our domain written in front of another registrable domain: as labels
                     (``paypal.com.evil.net``), with hyphens for dots (``paypal-com.login.example``,
                     ``paypal-com.net``), without its dots (``paypalcom.net``), or our name of 6
                     characters or more as a label or a hyphen-separated word of one
                     (``paypal.secure-login.net``).
    ``combo``        our name of 5 characters or more as a hyphen-separated word of the registrable
                     label (``paypal-login.com``, ``secure-paypal.net``, ``paypal-community.com``:
                     flagged, it is not ours unless configured as ours).

    Never flagged: names shorter than 4 characters by an edit, a substitution in a name of 4-5
    characters, an edit under another suffix (``paypay.ne.jp``), our name merely contained in a
    longer word (``paypalobjects.com``, ``microsoftonline.com``).

Cost
    :class:`Collector` judges each distinct From domain once, when it is first seen (our domains are
    known from the start); a transaction from a domain already judged costs one dict look-up, and
    only look-alike transactions have their SPF/DKIM/DMARC objects decoded. Judging is a handful of
    dict look-ups: each of our names' accepted one-edit typos is built once (a few hundred strings
    a name), two edits and non-ASCII labels go through a deletion index. The verdict cache holds at
    most ``max_domains`` domains and is emptied when full (the frequent ones come back); at most
    ``max_lookalikes`` look-alike domains are tracked, the rest are counted.

Confusables come from ``confusable_homoglyphs`` (Unicode's confusables.txt as data), loaded on the
first non-ASCII label; ASCII labels use a built-in table of TR39's ASCII mappings (checked against
the data by the tests). IDN labels are decoded with the standard library's punycode codec: the
report needs the Unicode form, not IDNA 2008 validation; but a label that does not decode to valid
Unicode text (a lone surrogate, a control, private-use or unassigned code point, text not in NFC,
or an encoding that is not the one punycode gives for it) is kept as written (``xn--...``), as
mail clients and browsers show it (:func:`decode_label`)."""

from __future__ import annotations

import argparse
import textwrap
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any, NamedTuple, Protocol

import msgspec

from mailpolicy.report import safe
from mailpolicy.report.reader import DKIM_DECODER, RESULT_DECODER

MAX_DOMAINS = 100_000
"""Verdicts (look-alike or not) cached per distinct From domain; the cache is emptied when full."""
MAX_LOOKALIKES = 10_000
"""Look-alike domains tracked with their counters; transactions of others are counted apart."""
MAX_CLIENTS = 1_000
"""Distinct client IPs counted per look-alike domain (and ``max_domains`` over all of them); the
rest are counted apart."""
MAX_HOSTS = 1_000
"""Host names looked at for our domains when none are configured."""
TOP_CLIENTS = 5
"""Clients shown per look-alike domain."""

TECHNIQUES = ("confusable", "punycode", "hyphen", "edit-1", "edit-2", "tld-swap", "extra-labels", "combo")
"""Every technique word, in the order they are listed."""

MIN_EDIT = 4  # shortest name an edit can imitate
MIN_ANY_EDIT = 6  # shortest name for which any typo-shaped edit counts (4-5: transposition, doubling)
MIN_EDIT2 = 10  # shortest name for which two edits count
MIN_SWAP = 5  # shortest name imitated under another public suffix
MIN_COMBO = 5  # shortest name imitated as a hyphen-separated word of the registrable label
MIN_LABEL = 6  # shortest name imitated as a label (or a word of one) in front of another domain

_ORDER = {t: i for i, t in enumerate(TECHNIQUES)}
# How strong a match is, to pick the domain a look-alike imitates best (lower is stronger).
_SAME, _HYPHEN, _EDIT1, _DOMAIN_LABELS, _NAME_LABEL, _COMBO, _EDIT2 = range(7)

# Generic second-level words under a two-letter country code that form a public suffix
# (co.uk, com.au, co.jp, ne.jp, org.ru, gov.br, ...).
_SLD = frozenset({
    "ac", "co", "com", "edu", "gob", "gov", "go", "govt", "gv", "ltd", "mil", "ne", "net", "nhs", "nic",
    "nom", "or", "org", "plc", "sch", "gouv", "asso",
})  # fmt: skip
# Host names under these are not a domain of anyone's.
_PRIVATE_TLDS = frozenset({
    "localdomain", "local", "localhost", "lan", "home", "internal", "intranet", "private", "corp",
    "invalid", "arpa",
})  # fmt: skip

# TR39 prototypes of the characters a domain label can hold in ASCII (0 -> O, 1 -> l, m -> rn,
# lower-cased), plus two look-alike pairs TR39 does not list: vv for w, cl for d.
_ASCII_SKELETON = str.maketrans({"0": "o", "1": "l", "m": "rn", "w": "vv", "d": "cl"})
# The same, one character for one: what the edit distance is computed on.
_ASCII_FOLD = str.maketrans({"0": "o", "1": "l"})

_VOWELS = frozenset("aeiou")
# similar letters, and digits written for letters
_SIMILAR = frozenset(frozenset(p) for p in ("il", "ij", "lj", "uv", "gq", "ce", "a4", "e3", "s5", "t7", "b8"))
_KEYS = {
    "1": "2q", "2": "3wq1", "3": "4ew2", "4": "5re3", "5": "6tr4", "6": "7yt5", "7": "8uy6",
    "8": "9iu7", "9": "0oi8", "0": "po9",
    "q": "12wa", "w": "3esaq2", "e": "4rdsw3", "r": "5tfde4", "t": "6ygfr5", "y": "7uhgt6",
    "u": "8ijhy7", "i": "9okju8", "o": "0plki9", "p": "lo0",
    "a": "qwsz", "s": "edxzaw", "d": "rfcxse", "f": "tgvcdr", "g": "yhbvft", "h": "ujnbgy",
    "j": "ikmnhu", "k": "olmji", "l": "kop",
    "z": "asx", "x": "zsdc", "c": "xdfv", "v": "cfgb", "b": "vghn", "n": "bhjm", "m": "njk",
}  # fmt: skip
"""QWERTY neighbours of each key."""


# ---- names ------------------------------------------------------------------------------------


class Name(NamedTuple):
    """A domain name as labels: ``alabels`` lower-case A-labels (``xn--...`` for IDN labels),
    ``ulabels`` their Unicode forms, and how many trailing labels are the public suffix."""

    alabels: tuple[str, ...]
    ulabels: tuple[str, ...]
    suffix_labels: int

    @property
    def ascii(self) -> str:
        return ".".join(self.alabels)

    @property
    def unicode(self) -> str:
        return ".".join(self.ulabels)

    @property
    def registrable(self) -> str:
        """The registrable domain (A-labels), ``""`` when the name is a public suffix itself."""
        n = self.suffix_labels + 1
        return ".".join(self.alabels[-n:]) if len(self.alabels) >= n else ""


def parse_name(text: str) -> Name | None:
    """``text`` (A-labels or Unicode, any case, with or without a trailing dot) as a :class:`Name`;
    None when it is not a domain name of at least two labels."""
    t = text.strip()
    if not t.isascii():
        t = unicodedata.normalize("NFC", t)
        for dot in "\u3002\uff0e\uff61":  # the dots IDNA maps to "."
            t = t.replace(dot, ".")
    t = t.lower().rstrip(".")
    if not t or len(t) > 253:
        return None
    labels = t.split(".")
    if len(labels) < 2:
        return None
    if t.isascii() and "xn--" not in t and " " not in t:  # the usual case
        plain = tuple(labels)
        if "" in plain or max(map(len, plain)) > 63:
            return None
        return Name(plain, plain, _suffix_labels(plain))
    alabels: list[str] = []
    ulabels: list[str] = []
    for label in labels:
        if not label or len(label) > 63 or label.isspace():
            return None
        if label.isascii():
            ulabel = label
            if label.startswith("xn--"):
                ulabel = decode_label(label) or label
            alabels.append(label)
            ulabels.append(ulabel)
        else:
            try:
                alabel = "xn--" + label.encode("punycode").decode("ascii")
            except UnicodeError:
                return None
            if len(alabel) > 63:
                return None
            alabels.append(alabel)
            ulabels.append(label)
    return Name(tuple(alabels), tuple(ulabels), _suffix_labels(alabels))


_NOT_TEXT = frozenset({"Cs", "Cc", "Co", "Cn"})  # surrogate, control, private use, unassigned


def decode_label(alabel: str) -> str | None:
    """The Unicode form of an ``xn--`` label (lower-case ASCII), or None when it has none: it does
    not decode, decodes to ASCII, to text that is not valid Unicode or not a label's (a lone
    surrogate, which no output can write; a control, private-use or unassigned code point), to
    text not in NFC, or is not the encoding punycode gives for what it decodes to."""
    try:
        decoded = alabel[4:].encode("ascii").decode("punycode")
    except UnicodeError:
        return None
    if decoded.isascii() or any(unicodedata.category(c) in _NOT_TEXT for c in decoded):
        return None
    if unicodedata.normalize("NFC", decoded) != decoded:
        return None
    try:
        if decoded.encode("punycode").decode("ascii") != alabel[4:]:
            return None
    except UnicodeError:
        return None
    return decoded


def _suffix_labels(alabels: list[str] | tuple[str, ...]) -> int:
    if len(alabels) >= 2 and len(alabels[-1]) == 2 and alabels[-2] in _SLD:
        return 2
    return 1


def normalise_domain(text: str) -> str:
    """A domain of ours as given on the command line, as lower-case A-labels; ValueError when it is
    not a domain name, or is a public suffix (``co.uk``, ``com``)."""
    name = parse_name(text)
    if name is None:
        raise ValueError(f"not a domain name of two labels or more: {text!r}")
    if not name.registrable:
        raise ValueError(f"a public suffix, not a domain: {text!r}")
    return name.ascii


def our_domain_arg(text: str) -> str:
    """argparse ``type=`` for ``--our-domain``."""
    try:
        return normalise_domain(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---- confusables --------------------------------------------------------------------------------

_prototypes: dict[int, str] | None = None


def prototypes() -> dict[int, str]:
    """TR39 prototype of every confusable code point, for ``str.translate``, from
    ``confusable_homoglyphs``' copy of confusables.txt. That copy records each mapping in both
    directions; confusables.txt maps each source to one prototype and never maps a prototype, so a
    code point with one partner that itself has several partners (or is a sequence, ``rn``) is a
    source. A code point and its only partner form a pair whose direction is not recorded: both
    map to one of the two (ASCII first, then the lower code point), which keeps equal skeletons
    equal."""
    global _prototypes
    if _prototypes is None:
        from confusable_homoglyphs import confusables  # type: ignore[import-untyped]

        def clean(s: str) -> str:
            return s.replace("\u200e", "").replace("\u200f", "")

        data: dict[str, list[dict[str, str]]] = confusables.confusables_data
        partners: dict[str, dict[str, None]] = {}
        for char, entries in data.items():
            bucket = partners.setdefault(clean(char), {})
            for entry in entries:
                bucket[clean(entry["c"])] = None
        table: dict[int, str] = {}
        for char, bucket in partners.items():
            if len(char) != 1 or len(bucket) != 1:
                continue
            (target,) = bucket
            if not target or target == char:
                continue
            if len(target) == 1 and len(partners.get(target, {})) == 1:
                target = min(char, target, key=lambda c: (not c.isascii(), ord(c)))
                if target == char:
                    continue
            table[ord(char)] = target
        _prototypes = table
    return _prototypes


def _ignorable(c: str) -> bool:
    """Default_Ignorable_Code_Point, near enough: format characters (ZWJ, ZWNJ, soft hyphen, bidi
    controls), variation selectors, the combining grapheme joiner and the Hangul fillers."""
    o = ord(c)
    return (
        unicodedata.category(c) == "Cf"
        or 0xFE00 <= o <= 0xFE0F
        or 0xE0100 <= o <= 0xE01EF
        or 0x180B <= o <= 0x180F
        or o in (0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0)
    )


def skeleton(label: str) -> str:
    """The TR39 skeleton of a label, lower-cased, with ``vv`` for ``w`` and ``cl`` for ``d``: two
    labels that look alike have equal skeletons."""
    if label.isascii():
        return label.lower().translate(_ASCII_SKELETON)
    table = prototypes()
    s = "".join(c for c in unicodedata.normalize("NFD", label) if not _ignorable(c))
    s = unicodedata.normalize("NFD", s.translate(table)).lower()
    return s.translate(table).translate(_ASCII_SKELETON)


def fold(label: str) -> str:
    """The label with each confusable character replaced by its one-character prototype (Cyrillic
    a U+0430 -> ``a``, ``0`` -> ``o``) and ``rn``, ``vv``, ``cl`` by ``m``, ``w``, ``d``,
    lower-cased: what typing edits are counted on."""
    if label.isascii():
        s = label.lower().translate(_ASCII_FOLD)
    else:
        table = prototypes()
        out = []
        for c in unicodedata.normalize("NFC", label).lower():
            if not _ignorable(c):
                p = table.get(ord(c))
                out.append(p.lower() if p is not None and len(p) == 1 else c)
        s = "".join(out).translate(_ASCII_FOLD)
    return (
        s.replace("rn", "m").replace("vv", "w").replace("cl", "d")
        if "rn" in s or "vv" in s or "cl" in s
        else s
    )


def _homoglyph(label: str) -> bool:
    """``label`` has a character of another script that looks like an ASCII one."""
    return not label.isascii() and any(not c.isascii() and fold(c).isascii() for c in label)


def _base(c: str) -> str:
    return "".join(x for x in unicodedata.normalize("NFD", c) if not unicodedata.combining(x))


def osa_distance(a: str, b: str, limit: int = 2) -> int:
    """Optimal string alignment distance (insertions, deletions, substitutions, adjacent
    transpositions), or ``limit + 1`` when it is larger than ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        ai = a[i - 1]
        for j in range(1, len(b) + 1):
            cost = 0 if ai == b[j - 1] else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ai == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1] if prev[-1] <= limit else limit + 1


def edit_kind(ours: str, other: str) -> str | None:
    """What single edit turns ``ours`` into ``other``: ``transposition``, ``doubling`` (a letter
    typed twice), ``undoubling`` (a doubled letter typed once), ``insertion``, ``omission``,
    ``near-substitution`` (a neighbouring key, a vowel for a vowel, a similar letter, the same
    letter with another diacritic) or ``substitution``; None when it is not one edit."""
    la, lb = len(ours), len(other)
    if la == lb:
        diff = [i for i in range(la) if ours[i] != other[i]]
        if len(diff) == 2 and diff[1] == diff[0] + 1:
            i = diff[0]
            if ours[i] == other[i + 1] and ours[i + 1] == other[i]:
                return "transposition"
            return None
        if len(diff) != 1:
            return None
        x, y = ours[diff[0]], other[diff[0]]
        if (
            y in _KEYS.get(x, "")
            or (x in _VOWELS and y in _VOWELS)
            or frozenset((x, y)) in _SIMILAR
            or _base(x) == _base(y)
        ):
            return "near-substitution"
        return "substitution"
    if lb == la + 1:
        short, long_ = ours, other
    elif la == lb + 1:
        short, long_ = other, ours
    else:
        return None
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    if short[i:] != long_[i + 1 :]:
        return None
    c = long_[i]
    doubled = (i > 0 and long_[i - 1] == c) or (i + 1 < len(long_) and long_[i + 1] == c)
    if lb > la:
        return "doubling" if doubled else "insertion"
    return "undoubling" if doubled else "omission"


def _edit_ok(n: int, kind: str | None) -> bool:
    if kind is None or n < MIN_EDIT:
        return False
    if n < MIN_ANY_EDIT:
        return kind in ("transposition", "doubling", "undoubling")
    if n < MIN_EDIT2:
        return kind != "substitution"
    return True


def _deletes(s: str) -> set[str]:
    return {s[:i] + s[i + 1 :] for i in range(len(s))}


_ALPHABET = "abcdefghijklmnopqrstuvwxyz23456789"  # what a folded ASCII label holds, but "-"


def _fold_ascii(s: str) -> str:
    return s.replace("rn", "m").replace("vv", "w").replace("cl", "d")


def typos(word: str, n: int) -> set[str]:
    """Every folded ASCII label one typing error away from ``word`` (a folded name of ``n``
    characters) that counts as ``edit-1`` (see :func:`edit_kind`)."""
    found = _deletes(word)
    for i in range(len(word) - 1):
        found.add(word[:i] + word[i + 1] + word[i] + word[i + 2 :])
    for i in range(len(word) + 1):
        found.update(word[:i] + c + word[i:] for c in _ALPHABET)
    for i in range(len(word)):
        found.update(word[:i] + c + word[i + 1 :] for c in _ALPHABET)
    found.discard(word)
    return {_fold_ascii(t) for t in found if _edit_ok(n, edit_kind(word, t))}


# ---- our domains and the matching -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Match:
    """A look-alike: ``domain`` (A-labels, as in the events), ``unicode`` (its Unicode form), the
    domain of ours it imitates and how."""

    domain: str
    unicode: str
    imitates: str
    techniques: tuple[str, ...]


@dataclass(frozen=True, slots=True, eq=False)
class _Ours:
    domain: str  # as configured (A-labels)
    registrable: str
    suffix: str
    name: str  # the registrable label, Unicode
    skel: str
    fold: str
    bare: str  # skeleton without hyphens
    seq: tuple[str, ...]  # skeletons of the registrable domain's labels
    raw_seq: tuple[str, ...]  # the registrable domain's labels, Unicode
    n: int  # length of the name

    @property
    def dashed(self) -> str:
        """The registrable domain's skeletons joined by hyphens (``paypal-corn`` for paypal.com:
        a skeleton spells m as rn)."""
        return "-".join(self.seq)


Hits = dict[_Ours, tuple[int, set[str]]]  # our domain -> (best score, techniques)


def _hit(hits: Hits, o: _Ours, score: int, techniques: Iterable[str], confusable: bool, idn: bool) -> None:
    best, found = hits.get(o, (score, set()))
    found.update(techniques)
    if confusable:
        found.add("confusable")
    if idn:
        found.add("punycode")
    hits[o] = (min(best, score), found)


def _closer(f: str, ulabel: str, o: _Ours, d: int) -> bool:
    """Look-alike characters (``rn``, ``0``, a Cyrillic a) bring ``ulabel``, folded to ``f``,
    closer to our name than its plain letters are: confusable too."""
    raw = ulabel.lower()
    return f != raw and (_homoglyph(raw) or osa_distance(raw, o.name.lower(), 2) > d)


def _within(word: str, text: str) -> bool:
    """``word`` is ``text`` or a run of its hyphen-separated words."""
    return f"-{word}-" in f"-{text}-"


class OurDomains:
    """Our domains, indexed for :meth:`judge`. Raises ValueError for a name that is not a domain."""

    def __init__(self, domains: Iterable[str]):
        self.domains: tuple[str, ...] = tuple(dict.fromkeys(normalise_domain(d) for d in domains))
        self._ours: list[_Ours] = []
        self._registrable: dict[str, _Ours] = {}
        self._by_skel: dict[str, list[_Ours]] = {}
        self._by_bare: dict[str, list[_Ours]] = {}
        self._by_glued: dict[str, list[_Ours]] = {}  # our registrable domain without its dots
        # folded ASCII labels one accepted typing error away from our names
        self._typos: dict[str, list[_Ours]] = {}
        # deletion neighbourhoods (two deep for names of MIN_EDIT2 characters or more), for the
        # labels the typo table cannot answer: two edits, non-ASCII characters
        self._by_delete: dict[str, list[_Ours]] = {}
        self._edit_lengths: set[int] = set()  # label lengths an edit can reach
        self._edit2_lengths: set[int] = set()  # label lengths two edits can reach
        # our domains below a registrable domain (example.zendesk.com): ours, never imitated
        self._exempt: tuple[str, ...] = ()
        for domain in self.domains:
            name = parse_name(domain)
            assert name is not None  # normalise_domain parsed it
            if name.registrable != domain:
                self._exempt += (domain,)
                continue
            k = name.suffix_labels + 1
            raw_seq = name.ulabels[-k:]
            seq = tuple(skeleton(u) for u in raw_seq)
            folded = fold(raw_seq[0])
            o = _Ours(
                domain=domain,
                registrable=name.registrable,
                suffix=".".join(name.alabels[-name.suffix_labels :]),
                name=raw_seq[0],
                skel=seq[0],
                fold=folded,
                bare=seq[0].replace("-", ""),
                seq=seq,
                raw_seq=raw_seq,
                n=len(raw_seq[0]),
            )
            if o.registrable in self._registrable:
                continue
            self._registrable[o.registrable] = o
            self._ours.append(o)
            self._by_skel.setdefault(o.skel, []).append(o)
            self._by_bare.setdefault(o.bare, []).append(o)
            self._by_glued.setdefault("".join(o.seq), []).append(o)
            if o.n >= MIN_EDIT:
                if o.fold.isascii():
                    for typo in typos(o.fold, o.n):
                        self._typos.setdefault(typo, []).append(o)
                reach = 2 if o.n >= MIN_EDIT2 else 1
                keys = {o.fold} | _deletes(o.fold)
                lengths = range(len(o.fold) - reach, len(o.fold) + reach + 1)
                if reach == 2:
                    keys |= {d2 for d in _deletes(o.fold) for d2 in _deletes(d)}
                    self._edit2_lengths.update(lengths)
                for key in keys:
                    self._by_delete.setdefault(key, []).append(o)
                self._edit_lengths.update(lengths)
        self._combo = [o for o in self._ours if o.n >= MIN_COMBO]

    def __bool__(self) -> bool:
        return bool(self._ours or self._exempt)

    def is_ours(self, domain: str) -> bool:
        return self.judge(domain) is True

    def match(self, domain: str) -> Match | None:
        """The look-alike match of ``domain``, None when it is ours or imitates none of ours."""
        v = self.judge(domain)
        return v if isinstance(v, Match) else None

    def judge(self, domain: str) -> Match | bool:
        """True when ``domain`` is ours (one of ours, a subdomain, or under the same registrable
        domain), a :class:`Match` when it imitates one of ours, else False."""
        name = parse_name(domain)
        if name is None:
            return False
        registrable = name.registrable
        if not registrable:
            return False
        if registrable in self._registrable:
            return True
        if self._exempt:
            a = name.ascii
            if any(a == e or a.endswith("." + e) for e in self._exempt):
                return True
        if not self._ours:
            return False
        idx = len(name.alabels) - name.suffix_labels - 1
        hits: Hits = {}
        self._name_rules(hits, name.alabels[idx], name.ulabels[idx], ".".join(name.alabels[idx + 1 :]))
        if idx > 0:
            self._label_rules(hits, name.alabels[:idx], name.ulabels[:idx])
        if not hits:
            return False
        o, (_, techniques) = min(hits.items(), key=lambda kv: (kv[1][0], self._ours.index(kv[0])))
        return Match(name.ascii, name.unicode, o.domain, tuple(sorted(techniques, key=_ORDER.__getitem__)))

    def _name_rules(self, hits: Hits, alabel: str, ulabel: str, suffix: str) -> None:
        """The registrable label against our names."""
        idn = alabel.startswith("xn--")
        s = skeleton(ulabel)
        # the same name to the eye: confusable, or exactly ours under another suffix
        for o in self._by_skel.get(s, ()):
            if suffix == o.suffix:
                _hit(hits, o, _SAME, (), ulabel != o.name, idn)
            elif o.n >= MIN_SWAP:
                _hit(hits, o, _SAME, ("tld-swap",), ulabel != o.name, idn)
        # hyphens added or removed
        bare = s.replace("-", "")
        for o in self._by_bare.get(bare, ()):
            if s != o.skel and (suffix == o.suffix or o.n >= MIN_SWAP):
                swap = () if suffix == o.suffix else ("tld-swap",)
                differs = ulabel.replace("-", "") != o.name.replace("-", "")
                _hit(hits, o, _HYPHEN, ("hyphen", *swap), differs, idn)
        # our domain with its dots dropped: paypalcom.net
        for o in self._by_glued.get(bare, ()):
            if o.n >= MIN_COMBO:
                _hit(
                    hits,
                    o,
                    _DOMAIN_LABELS,
                    ("extra-labels",),
                    ulabel.replace("-", "") != "".join(o.raw_seq),
                    idn,
                )
        # typing errors, under the same suffix
        f = fold(ulabel)
        if ulabel.isascii():
            for o in self._typos.get(f, ()):
                if o.suffix == suffix and s != o.skel and bare != o.bare:
                    _hit(hits, o, _EDIT1, ("edit-1",), _closer(f, ulabel, o, 1), idn)
            if len(f) in self._edit2_lengths:
                self._edits(hits, f, ulabel, s, suffix, idn, two_only=True)
        elif len(f) in self._edit_lengths:
            self._edits(hits, f, ulabel, s, suffix, idn, two_only=False)
        # our domain, or our name, as words of the registrable label
        if "-" in s:
            for o in self._combo:
                if s == o.skel:
                    continue
                if _within(o.dashed, s):
                    differs = not _within("-".join(o.raw_seq), ulabel)
                    _hit(hits, o, _DOMAIN_LABELS, ("extra-labels",), differs, idn)
                elif _within(o.skel, s):
                    _hit(hits, o, _COMBO, ("combo",), not _within(o.name, ulabel), idn)

    def _edits(self, hits: Hits, f: str, ulabel: str, s: str, suffix: str, idn: bool, two_only: bool) -> None:
        """Edits found through the deletion index: two edits, or any for a non-ASCII label (whose
        folded form the typo table, built from ASCII letters, may not hold)."""
        keys = {f} | _deletes(f)
        if len(f) in self._edit2_lengths:
            keys |= {d2 for d in _deletes(f) for d2 in _deletes(d)}
        bare = s.replace("-", "")
        done: set[_Ours] = set()
        for key in keys:
            for o in self._by_delete.get(key, ()):
                if o in done or o.suffix != suffix or s == o.skel or bare == o.bare:
                    continue
                done.add(o)
                d = osa_distance(f, o.fold, 2 if o.n >= MIN_EDIT2 else 1)
                if d == 0 and not two_only:
                    _hit(hits, o, _SAME, (), True, idn)
                elif d == 1 and not two_only:
                    kind = edit_kind(o.fold, f)
                    # a letter of another script that looks like ours is no accident, even in a
                    # short name: apple in Cyrillic letters, a palochka for the l (xn--80ak6aa92e.com)
                    homoglyph = kind == "near-substitution" and o.n >= MIN_EDIT and _homoglyph(ulabel)
                    if homoglyph or _edit_ok(o.n, kind):
                        _hit(hits, o, _EDIT1, ("edit-1",), _closer(f, ulabel, o, 1), idn)
                elif d == 2 and o.n >= MIN_EDIT2:
                    _hit(hits, o, _EDIT2, ("edit-2",), _closer(f, ulabel, o, 2), idn)

    def _label_rules(self, hits: Hits, alabels: tuple[str, ...], ulabels: tuple[str, ...]) -> None:
        """The labels in front of the registrable domain: our domain as labels
        (``paypal.com.evil.net``), with hyphens (``paypal-com.evil.net``), or our name as a label
        or a word of one (``paypal.login.example``, ``secure-paypal.login.example``)."""
        subs = [skeleton(u) for u in ulabels]
        for o in self._ours:
            k = len(o.seq)
            for i in range(len(subs) - k + 1):
                if tuple(subs[i : i + k]) == o.seq:
                    idn = any(a.startswith("xn--") for a in alabels[i : i + k])
                    _hit(hits, o, _DOMAIN_LABELS, ("extra-labels",), ulabels[i : i + k] != o.raw_seq, idn)
            for a, u, x in zip(alabels, ulabels, subs, strict=True):
                if _within(o.dashed, x):
                    score, differs = _DOMAIN_LABELS, not _within("-".join(o.raw_seq), u)
                elif o.n >= MIN_LABEL and _within(o.skel, x):
                    score, differs = _NAME_LABEL, not _within(o.name, u)
                else:
                    continue
                _hit(hits, o, score, ("extra-labels",), differs, a.startswith("xn--"))


# ---- collection -------------------------------------------------------------------------------


class TransactionEvent(Protocol):
    """What :meth:`Collector.add_event` reads of a transaction event (``reader.Event``)."""

    @property
    def ts(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def header_from_domain(self) -> str | None: ...
    @property
    def client_ip(self) -> str | None: ...
    @property
    def client_name(self) -> str | None: ...
    @property
    def outcome(self) -> str | None: ...
    @property
    def rcpt_count(self) -> int: ...
    @property
    def spf(self) -> msgspec.Raw: ...
    @property
    def dkim(self) -> msgspec.Raw: ...
    @property
    def dmarc(self) -> msgspec.Raw: ...


UNKNOWN = "unknown"


def dkim_outcome(signatures: Iterable[tuple[str, bool]]) -> str:
    """One word for a transaction's DKIM signatures ``(result, aligned)``: ``pass`` (an aligned
    pass: signed by the From domain itself), ``pass-unaligned`` (signed by another domain), else
    the first other result (``fail``, ``permerror``, ...), ``none`` when unsigned."""
    first = ""
    unaligned = False
    for result, aligned in signatures:
        if result == "pass":
            if aligned:
                return "pass"
            unaligned = True
        elif not first:
            first = result or UNKNOWN
    return "pass-unaligned" if unaligned else (first or "none")


def _decode_result(raw: msgspec.Raw) -> str:
    """The result word of an spf or dmarc object; ``unknown`` when absent or malformed."""
    try:
        rec = RESULT_DECODER.decode(raw) if raw else None
    except msgspec.DecodeError:
        return UNKNOWN
    return (rec.result or UNKNOWN) if rec is not None else UNKNOWN


def _decode_dkim(raw: msgspec.Raw) -> str:
    try:
        sigs = DKIM_DECODER.decode(raw) if raw else None
    except msgspec.DecodeError:
        return UNKNOWN
    if sigs is None:
        return UNKNOWN
    return dkim_outcome((s.result, s.aligned) for s in sigs)


def _bump(counts: dict[str, int], key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


@dataclass(slots=True)
class _Seen:
    match: Match
    transactions: int = 0
    recipients: int = 0
    spf: dict[str, int] = field(default_factory=dict)
    dkim: dict[str, int] = field(default_factory=dict)
    dmarc: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    clients: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    other_clients: int = 0  # transactions from clients past MAX_CLIENTS
    first: str = ""
    last: str = ""


class Collector:
    """Folds transaction events into look-alike counters. ``our_domains`` empty: guessed from the
    events' host names (see the module documentation)."""

    def __init__(
        self,
        our_domains: Iterable[str] = (),
        *,
        max_domains: int = MAX_DOMAINS,
        max_lookalikes: int = MAX_LOOKALIKES,
        max_clients: int = MAX_CLIENTS,
    ):
        self.ours = OurDomains(our_domains)
        self.derived = not self.ours
        self.max_domains = max_domains
        self.max_lookalikes = max_lookalikes
        self.max_clients = max_clients
        # The host names looked at (see note_host), while they can still change our domains, and
        # the verdict on each From domain judged: False (neither ours nor a look-alike), True
        # (ours) or the Match. The report's aggregator reads these three to count the transactions
        # of a domain judged False without calling add_event.
        self.hosts: set[str] = set()
        self.watch_hosts = self.derived  # until MAX_HOSTS host names were seen
        self.verdicts: dict[str, Match | bool] = {}
        self._client_slots = max_domains  # client entries left over all look-alikes
        self.seen: dict[str, _Seen] = {}
        self.transactions = 0  # with a From domain
        self.without_from = 0
        self.own = 0  # From one of our domains
        self.examined = 0  # verdicts computed
        self.untracked_domains: set[str] = set()  # bounded by max_domains, see _record
        self.untracked_transactions = 0

    # ---- per event

    def add_event(self, ev: TransactionEvent) -> None:
        """One transaction event. A From domain already judged costs one dict look-up; the
        authentication objects are decoded only for look-alikes."""
        v = self._look_alike(ev.header_from_domain, ev.host)
        if v is None:
            return
        self._record(
            v,
            _decode_result(ev.spf),
            _decode_dkim(ev.dkim),
            _decode_result(ev.dmarc),
            ev.client_ip,
            ev.client_name,
            ev.rcpt_count,
            ev.outcome,
            ev.ts,
        )

    def add(
        self,
        from_domain: str | None,
        *,
        spf: str | None = None,
        dkim: str | None = None,
        dmarc: str | None = None,
        client_ip: str | None = None,
        client_name: str | None = None,
        recipients: int = 1,
        outcome: str | None = None,
        ts: str = "",
        host: str | None = None,
    ) -> None:
        """One transaction from decoded values: ``spf``/``dmarc`` the result words, ``dkim`` a word
        of :func:`dkim_outcome`; None for a method that did not run."""
        v = self._look_alike(from_domain, host)
        if v is None:
            return
        self._record(
            v,
            spf or UNKNOWN,
            dkim or UNKNOWN,
            dmarc or UNKNOWN,
            client_ip,
            client_name,
            recipients,
            outcome,
            ts,
        )

    def _look_alike(self, domain: str | None, host: str | None) -> Match | None:
        """Count one transaction; the Match when its From domain is a look-alike (its details are
        then recorded by the caller), None otherwise."""
        if not domain:
            self.without_from += 1
            return None
        if self.watch_hosts and host is not None and host not in self.hosts:
            self.note_host(host)
        self.transactions += 1
        v = self.verdicts.get(domain)
        if v is None:
            v = self._judge(domain)
        if v is True:
            self.own += 1
        return None if isinstance(v, bool) else v

    def note_host(self, host: str) -> None:
        """A host name seen in the events: without configured domains, its registrable domain is
        taken as ours (and every From domain judged again)."""
        self.hosts.add(host)
        if len(self.hosts) >= MAX_HOSTS:
            self.watch_hosts = False
        if not self.derived:
            return
        name = parse_name(host)
        if name is None or not name.registrable or name.alabels[-1] in _PRIVATE_TLDS:
            return
        if all(label.isdigit() for label in name.alabels):  # an IPv4 address
            return
        if name.registrable in self.ours.domains:
            return
        self.ours = OurDomains((*self.ours.domains, name.registrable))
        self.verdicts.clear()

    def _judge(self, domain: str) -> Match | bool:
        self.examined += 1
        v = self.ours.judge(domain)
        verdicts = self.verdicts
        if len(verdicts) >= self.max_domains:
            verdicts.clear()  # bounded memory; the frequent domains come back
        verdicts[domain] = v
        return v

    def _record(
        self,
        m: Match,
        spf: str,
        dkim: str,
        dmarc: str,
        ip: str | None,
        name: str | None,
        recipients: int,
        outcome: str | None,
        ts: str,
    ) -> None:
        s = self.seen.get(m.domain)
        if s is None:
            if len(self.seen) >= self.max_lookalikes:
                if len(self.untracked_domains) < self.max_domains:
                    self.untracked_domains.add(m.domain)
                self.untracked_transactions += 1
                return
            s = self.seen[m.domain] = _Seen(m)
        s.transactions += 1
        s.recipients += recipients
        _bump(s.spf, spf)
        _bump(s.dkim, dkim)
        _bump(s.dmarc, dmarc)
        _bump(s.outcomes, outcome or UNKNOWN)
        ip = ip or UNKNOWN
        clients = s.clients
        if ip in clients:
            clients[ip] += 1
        elif len(clients) < self.max_clients and self._client_slots > 0:
            self._client_slots -= 1
            clients[ip] = 1
            s.names[ip] = name or ""
        else:
            s.other_clients += 1
        if ts:
            if not s.first or ts < s.first:
                s.first = ts
            if ts > s.last:
                s.last = ts

    # ---- output

    def result(self, top: int = 10) -> LookalikeResult:
        """The ``top`` look-alike domains by transactions (ties by name)."""
        ranked = sorted(self.seen.values(), key=lambda s: (-s.transactions, s.match.domain))
        rows = tuple(_row(s) for s in ranked[: max(0, top)])
        source = "configured" if not self.derived else ("host names" if self.ours else "none")
        return LookalikeResult(
            our_domains=self.ours.domains,
            source=source,
            transactions=self.transactions,
            without_from=self.without_from,
            own=self.own,
            examined=self.examined,
            lookalike_domains=len(self.seen) + len(self.untracked_domains),
            lookalike_transactions=sum(s.transactions for s in self.seen.values())
            + self.untracked_transactions,
            untracked_domains=len(self.untracked_domains),
            untracked_transactions=self.untracked_transactions,
            rows=rows,
        )


def _ranked(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def characters(text: str) -> tuple[str, ...]:
    """The distinct non-ASCII characters of ``text``, as ``U+0430 CYRILLIC SMALL LETTER A``."""
    out = dict.fromkeys(f"U+{ord(c):04X} {unicodedata.name(c, 'UNNAMED')}" for c in text if not c.isascii())
    return tuple(out)[:8]


@dataclass(frozen=True, slots=True)
class Client:
    ip: str
    name: str
    transactions: int


@dataclass(frozen=True, slots=True)
class LookalikeRow:
    domain: str
    unicode: str
    imitates: str
    techniques: tuple[str, ...]
    transactions: int
    recipients: int
    spf: dict[str, int]
    dkim: dict[str, int]
    dmarc: dict[str, int]
    outcomes: dict[str, int]
    clients: int
    other_client_transactions: int
    top_clients: tuple[Client, ...]
    first: str
    last: str
    characters: tuple[str, ...]


def _row(s: _Seen) -> LookalikeRow:
    top = sorted(s.clients.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CLIENTS]
    return LookalikeRow(
        domain=s.match.domain,
        unicode=s.match.unicode,
        imitates=s.match.imitates,
        techniques=s.match.techniques,
        transactions=s.transactions,
        recipients=s.recipients,
        spf=_ranked(s.spf),
        dkim=_ranked(s.dkim),
        dmarc=_ranked(s.dmarc),
        outcomes=_ranked(s.outcomes),
        clients=len(s.clients),
        other_client_transactions=s.other_clients,
        top_clients=tuple(Client(ip, s.names.get(ip, ""), n) for ip, n in top),
        first=s.first,
        last=s.last,
        characters=characters(s.match.unicode),
    )


@dataclass(frozen=True, slots=True)
class LookalikeResult:
    our_domains: tuple[str, ...]
    source: str  # "configured", "host names" or "none"
    transactions: int  # transactions with a From domain
    without_from: int
    own: int  # From one of our domains (or under one)
    examined: int  # From domains judged
    lookalike_domains: int
    lookalike_transactions: int
    untracked_domains: int
    untracked_transactions: int
    rows: tuple[LookalikeRow, ...]


def find(collector: Collector, top: int = 10) -> LookalikeResult:
    """The look-alike section's result: ``collector.result(top)``."""
    return collector.result(top)


# ---- rendering --------------------------------------------------------------------------------


def to_json(result: LookalikeResult) -> dict[str, Any]:
    """The report document's ``lookalikes`` object."""
    return {
        "our_domains": list(result.our_domains),
        "our_domains_source": result.source,
        "transactions": result.transactions,
        "without_from_domain": result.without_from,
        "from_our_domains": result.own,
        "domains_examined": result.examined,
        "lookalike_domains": result.lookalike_domains,
        "lookalike_transactions": result.lookalike_transactions,
        "untracked": {"domains": result.untracked_domains, "transactions": result.untracked_transactions},
        "domains": [
            {
                "domain": r.domain,
                "unicode": r.unicode,
                "imitates": r.imitates,
                "techniques": list(r.techniques),
                "characters": list(r.characters),
                "transactions": r.transactions,
                "recipients": r.recipients,
                "spf": r.spf,
                "dkim": r.dkim,
                "dmarc": r.dmarc,
                "outcomes": r.outcomes,
                "clients": r.clients,
                "other_client_transactions": r.other_client_transactions,
                "top_clients": [
                    {"ip": c.ip, "name": c.name, "transactions": c.transactions} for c in r.top_clients
                ],
                "first": r.first or None,
                "last": r.last or None,
            }
            for r in result.rows
        ],
    }


def _doc(section: LookalikeResult | Mapping[str, Any]) -> Mapping[str, Any]:
    return to_json(section) if isinstance(section, LookalikeResult) else section


def printable(text: str) -> str:
    """``text`` with every character a terminal or browser would not show as itself (controls,
    bidi overrides, zero-width and other format characters, line separators, and a space: a domain
    holds none, in text that is not all ASCII) as ``\\uXXXX``: a decoded IDN label can hold any code
    point."""
    if text.isascii() and text.isprintable():
        return text
    return safe.printable(text, space=False)


def display_domain(d: Mapping[str, Any]) -> str:
    """``p\u0430ypal.com (xn--pypal-4ve.com)`` (with a Cyrillic a), or the domain alone when it
    has no IDN label."""
    if d["unicode"] and d["unicode"] != d["domain"]:
        return f"{printable(d['unicode'])} ({printable(d['domain'])})"
    return printable(d["domain"])


def _counts(c: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in c.items())


def _client(c: Mapping[str, Any]) -> str:
    """``name [ip]``, or the IP alone when the client has no other name (the MTA's ``[ip]``)."""
    name, ip = c.get("name") or "", str(c["ip"])
    return f"{name} [{ip}]" if name and name not in (ip, f"[{ip}]") else ip


def _clients(d: Mapping[str, Any]) -> str:
    shown = ", ".join(f"{printable(_client(c))} {c['transactions']}" for c in d["top_clients"])
    rest = d["clients"] - len(d["top_clients"])
    return shown + (f" (+{rest} more)" if rest > 0 else "")


HEADERS = [
    "look-alike domain",
    "imitates",
    "how",
    "transactions",
    "recipients",
    "SPF",
    "DKIM",
    "DMARC",
    "outcome",
]


def table_rows(section: LookalikeResult | Mapping[str, Any]) -> list[list[str]]:
    """One row per look-alike domain under :data:`HEADERS`, every log value made printable."""
    return [
        [
            display_domain(d),
            printable(d["imitates"]),
            ", ".join(d["techniques"]),
            str(d["transactions"]),
            str(d["recipients"]),
            printable(_counts(d["spf"])),
            printable(_counts(d["dkim"])),
            printable(_counts(d["dmarc"])),
            printable(_counts(d["outcomes"])),
        ]
        for d in _doc(section)["domains"]
    ]


def our_domains_line(section: LookalikeResult | Mapping[str, Any]) -> str:
    """``our domains (configured): paypal.com, example.org``."""
    doc = _doc(section)
    ours = ", ".join(printable(d) for d in doc["our_domains"])
    how = {"configured": "configured", "host names": "guessed from the milter host names"}.get(
        doc["our_domains_source"], doc["our_domains_source"]
    )
    return f"our domains ({how}): {ours}"


def summary(section: LookalikeResult | Mapping[str, Any]) -> str:
    """``4 look-alike domains, 18 of 108 transactions with a From domain (...)``."""
    doc = _doc(section)
    return (
        f"{_n(doc['lookalike_domains'], 'look-alike domain')}, {doc['lookalike_transactions']:,} of"
        f" {_n(doc['transactions'], 'transaction')} with a From domain"
        f" ({_n(doc['domains_examined'], 'From domain')} examined;"
        f" {_n(doc['from_our_domains'], 'transaction')} From our own domains)"
    )


def _n(count: int, word: str) -> str:
    """``1 transaction``, ``2 transactions``, ``1,234 From domains``."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


NO_DOMAINS = (
    "no domain of ours is known: the events carry no recipient addresses, and no host name gave a"
    " domain; name them with --our-domain DOMAIN (repeatable)"
)
GUESSED = (
    "our domains were guessed from the milter host names; name the domains you receive mail for"
    " with --our-domain DOMAIN (repeatable)"
)
RULES = (
    "how: confusable = looks the same (Unicode TR39 skeleton, rn/m, vv/w, 0/o, 1/l); punycode = an"
    " IDN label; hyphen; edit-1/edit-2 = typing errors; tld-swap = another public suffix;"
    " extra-labels = our domain in front of another (paypal.com.evil.net); combo = our name with a"
    " word (paypal-login.com)"
)


def _text_table(headers: list[str], rows: list[list[str]], indent: str) -> list[str]:
    cells = [headers, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for n, r in enumerate(cells):
        parts = [c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        out.append(indent + "  ".join(parts).rstrip())
        if n == 0:
            out.append(indent + "  ".join("-" * w for w in widths))
    return out


def text_lines(section: LookalikeResult | Mapping[str, Any]) -> list[str]:
    """The terminal report's section, heading included."""
    doc = _doc(section)
    out = ["== Look-alike senders: From domains imitating ours =="]
    if doc["our_domains_source"] == "none":
        out.append(f"  {NO_DOMAINS}")
        return out
    out.append(f"  {our_domains_line(doc)}")
    out.append(f"  {summary(doc)}")
    if doc["our_domains_source"] == "host names":
        out.append(f"  {GUESSED}")
    u = doc["untracked"]
    if u["transactions"]:
        out.append(
            f"  plus {_n(u['transactions'], 'transaction')} from {u['domains']:,} more look-alike"
            f" domains past the {MAX_LOOKALIKES} tracked"
        )
    if not doc["domains"]:
        out.append("  none found")
        return out
    out += textwrap.wrap(RULES, 106, initial_indent="  ", subsequent_indent="       ")
    out += _text_table(HEADERS, table_rows(doc), "    ")
    out.append("  clients (name [ip] transactions) and characters outside ASCII:")
    for d in doc["domains"]:
        out.append(f"    {display_domain(d)}: {_clients(d)}; seen {d['first'] or '-'} .. {d['last'] or '-'}")
        if d["characters"]:
            out.append(f"      {printable(', '.join(d['characters']))}")
    return out


def _e(value: Any) -> str:
    return escape(printable(str(value)), quote=True)


def _marked(unicode: str) -> str:
    """The Unicode form with each non-ASCII character in a ``<mark>`` naming it."""
    out = []
    for c in unicode:
        if c.isascii():
            out.append(_e(c))
        else:
            title = f"U+{ord(c):04X} {unicodedata.name(c, 'UNNAMED')}"
            out.append(f'<mark title="{_e(title)}">{_e(c)}</mark>')
    return "".join(out)


def _html_table(headers: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def html_section(section: LookalikeResult | Mapping[str, Any]) -> str:
    """The HTML report's section (``<section id="lookalikes">``): no script, every value from the
    logs escaped."""
    doc = _doc(section)
    out = ['<section id="lookalikes"><h2>Look-alike senders: From domains imitating ours</h2>']
    if doc["our_domains_source"] == "none":
        out.append(f'<div class="warn">{_e(NO_DOMAINS)}.</div></section>')
        return "".join(out)
    guessed = doc["our_domains_source"] == "host names"
    if not doc["domains"] and not doc["untracked"]["transactions"]:
        # Nothing found: one paragraph (the page stays short; the JSON has the details).
        note = f' <span class="note">{_e(GUESSED)}.</span>' if guessed else ""
        out.append(f"<p>{_e(our_domains_line(doc))}. {_e(summary(doc))}. None found.{note}</p></section>")
        return "".join(out)
    out.append(f"<p>{_e(our_domains_line(doc))}. {_e(summary(doc))}.</p>")
    if guessed:
        out.append(f'<div class="warn">{_e(GUESSED)}.</div>')
    u = doc["untracked"]
    if u["transactions"]:
        out.append(
            f'<p class="note">Plus {_n(u["transactions"], "transaction")} from {u["domains"]:,} more'
            f" look-alike domains past the {MAX_LOOKALIKES} tracked.</p>"
        )
    if not doc["domains"]:
        out.append("<p>None found.</p></section>")
        return "".join(out)
    out.append(f'<p class="note">{_e(RULES)}.</p>')
    body = []
    for d, row in zip(doc["domains"], table_rows(doc), strict=True):
        name = _marked(d["unicode"]) if d["unicode"] and d["unicode"] != d["domain"] else ""
        cell = f'{name}<br><span class="note">{_e(d["domain"])}</span>' if name else _e(d["domain"])
        chars = f'<br><span class="note">{_e(", ".join(d["characters"]))}</span>' if d["characters"] else ""
        body.append(f"<tr><td>{cell}{chars}</td>" + "".join(f"<td>{_e(c)}</td>" for c in row[1:]) + "</tr>")
    out.append(_html_table(HEADERS, body))
    out.append("<h3>Who sent them</h3>")
    rows = []
    for d in doc["domains"]:
        first = True
        for c in d["top_clients"]:
            seen = f"{d['first'] or '-'} .. {d['last'] or '-'}" if first else ""
            label = d["domain"] if first else ""  # the A-label: no look-alike characters
            rows.append(
                f"<tr><td>{_e(label)}</td><td>{_e(_client(c))}</td><td>{c['transactions']}</td><td>{_e(seen)}</td></tr>"
            )
            first = False
        rest = d["clients"] - len(d["top_clients"])
        if rest > 0:
            rows.append(f"<tr><td></td><td>{_e(_n(rest, 'more client'))}</td><td></td><td></td></tr>")
    out.append(_html_table(["look-alike domain", "client", "transactions", "first .. last seen"], rows))
    out.append("</section>")
    return "".join(out)
