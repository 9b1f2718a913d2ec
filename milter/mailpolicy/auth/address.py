"""Strict parsing of the RFC5322.From field (RFC 5322 3.4 address syntax, RFC 6854 groups, the
obsolete forms of RFC 5322 4.4 that real mail still uses, RFC 6532 UTF-8), for DMARC's Author
Domain (RFC 9989 5.3.1).

Unlike ``email.utils.getaddresses``, which silently drops what it cannot parse (so that
``ceo@victim.example, <garbage`` would leave one harmless-looking domain), a field value either
parses completely into mailboxes or is refused with a reason. The parser is a single left-to-right
pass (comments nest, quoted-pairs are honoured), linear in the value's length whatever its content.

Leniency, all of it deliberate:
- bytes above 0x7f are accepted in display names, comments and quoted strings (RFC 6532 UTF-8, and
  the raw 8-bit names old mailers still send), never in a domain unless they decode as UTF-8 and
  convert to an IDNA A-label;
- obsolete syntax: empty list elements (``a@x, , b@y``), CFWS around the dots of a domain or local
  part, a source route in an angle address, dots and quoted strings in display names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPECIALS = frozenset('()<>[]:;@\\,."')
_WSP = frozenset(" \t\r\n")


class AddressError(ValueError):
    """The value is not a valid address list; the message says where and why."""


@dataclass(frozen=True)
class Mailbox:
    local: str
    domain: str | None  # lower case A-label, no trailing dot; None for an address literal
    literal: str | None = None  # the [domain-literal], when that is what the address has


def skip_cfws(text: str, i: int) -> tuple[int, bool]:
    """Skip folding white space and comments from ``i`` (RFC 5322 3.2.2: comments nest and take
    quoted-pairs). Returns the index after them and whether every comment was closed. Linear."""
    n = len(text)
    while i < n:
        c = text[i]
        if c in _WSP:
            i += 1
        elif c == "(":
            depth = 0
            while i < n:
                c = text[i]
                if c == "\\":
                    i += 2
                    continue
                if c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
            else:
                return n, False
        else:
            break
    return min(i, n), True


def _atext(c: str) -> bool:
    return c > "\x7f" or ("!" <= c <= "~" and c not in _SPECIALS)


class _Parser:
    def __init__(self, text: str):
        self.s = text
        self.i = 0

    def fail(self, why: str) -> AddressError:
        return AddressError(f"{why} at offset {self.i}")

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def cfws(self) -> None:
        """Skip folding white space and (nested) comments."""
        self.i, closed = skip_cfws(self.s, self.i)
        if not closed:
            raise self.fail("unterminated comment")

    def atom(self) -> str:
        start = self.i
        s, n = self.s, len(self.s)
        while self.i < n and _atext(s[self.i]):
            self.i += 1
        return s[start : self.i]

    def quoted(self) -> str:
        assert self.peek() == '"'
        self.i += 1
        out = []
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c == "\\":
                if self.i + 1 >= n:
                    break
                out.append(s[self.i + 1])
                self.i += 2
            elif c == '"':
                self.i += 1
                return "".join(out)
            else:
                out.append(c)
                self.i += 1
        raise self.fail("unterminated quoted string")

    def word(self) -> str | None:
        self.cfws()
        if self.peek() == '"':
            return self.quoted()
        a = self.atom()
        return a or None

    def literal(self) -> str:
        assert self.peek() == "["
        start = self.i
        self.i += 1
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c == "\\":
                self.i += 2
                continue
            if c == "[":
                break
            if c == "]":
                self.i += 1
                return s[start : self.i]
            self.i += 1
        raise self.fail("unterminated domain literal")

    def dotted(self, what: str) -> str:
        """word *("." word), CFWS allowed around the dots (obs-local-part / obs-domain)."""
        parts = []
        while True:
            w = self.word()
            if w is None:
                raise self.fail(f"expected {what}")
            parts.append(w)
            self.cfws()
            if self.peek() != ".":
                return ".".join(parts)
            self.i += 1

    def addr_spec(self) -> Mailbox:
        local = self.dotted("local part")
        self.cfws()
        if self.peek() != "@":
            raise self.fail("expected '@'")
        self.i += 1
        self.cfws()
        if self.peek() == "[":
            lit = self.literal()
            self.cfws()
            return Mailbox(local, None, lit)
        domain = self.dotted("domain")
        if '"' in domain:
            raise self.fail("quoted string in domain")
        return Mailbox(local, domain)

    def angle_addr(self) -> Mailbox:
        assert self.peek() == "<"
        self.i += 1
        self.cfws()
        if self.peek() in ("@", ","):  # obs-route: "@a,@b:" before the address
            while self.peek() in ("@", ","):
                self.i += 1
                self.cfws()
                if self.peek() == "[":
                    self.literal()
                elif self.s[self.i - 1] == "@":
                    self.dotted("route domain")
                self.cfws()
            if self.peek() != ":":
                raise self.fail("expected ':' after source route")
            self.i += 1
        mbox = self.addr_spec()
        self.cfws()
        if self.peek() != ">":
            raise self.fail("expected '>'")
        self.i += 1
        self.cfws()
        return mbox

    def phrase_then(self) -> tuple[bool, str]:
        """Skip a display name (words, dots, CFWS). Returns (saw words, the next character)."""
        saw = False
        while True:
            self.cfws()
            c = self.peek()
            if c == '"':
                self.quoted()
                saw = True
            elif c == ".":
                self.i += 1
            elif c and _atext(c):
                self.atom()
                saw = True
            else:
                return saw, c

    def address(self, out: list[Mailbox], in_group: bool) -> None:
        """One mailbox, or (outside a group) one group; appends its mailboxes to ``out``."""
        start = self.i
        saw, c = self.phrase_then()
        if c == "<":
            out.append(self.angle_addr())
            return
        if c == ":" and saw and not in_group:
            self.i += 1
            self.group(out)
            return
        # Not a display name after all: an addr-spec.
        self.i = start
        out.append(self.addr_spec())

    def group(self, out: list[Mailbox]) -> None:
        while True:
            self.cfws()
            c = self.peek()
            if c == ";":
                self.i += 1
                self.cfws()
                return
            if c == ",":
                self.i += 1
                continue
            if not c:
                raise self.fail("unterminated group")
            self.address(out, in_group=True)
            self.cfws()
            if self.peek() not in (",", ";"):
                raise self.fail("expected ',' or ';' in group")

    def address_list(self) -> list[Mailbox]:
        out: list[Mailbox] = []
        while True:
            self.cfws()
            c = self.peek()
            if not c:
                return out
            if c == ",":
                self.i += 1
                continue
            self.address(out, in_group=False)
            self.cfws()
            if self.peek() not in (",", ""):
                raise self.fail("expected ','")


def domain_key(domain: str) -> str:
    """A domain as DMARC compares and looks it up: lower case A-labels, no trailing dot.
    Raises AddressError for a name that is not a usable domain."""
    d = domain.rstrip(".").lower()
    if not d or d.startswith(".") or ".." in d:
        raise AddressError(f"empty label in domain {domain!r}")
    if not d.isascii():
        try:
            d = d.encode("idna").decode("ascii")
        except UnicodeError:
            raise AddressError(f"domain {domain!r} has no IDNA A-label form") from None
    if len(d) > 253 or (len(d) > 63 and any(len(label) > 63 for label in d.split("."))):
        raise AddressError(f"domain {domain[:64]!r}... is too long")
    return d


# The From field of nearly every message: one address, bare or in angle brackets after a display
# name of plain atoms and simple quoted strings, all ASCII. Such a value gives exactly what the
# full parser gives (a property test checks it); anything else goes to the parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_QUOTED = r'"[ !#-\[\]-~]*"'
_ADDR = rf"({_ATOM}(?:\.{_ATOM})*)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)"
_PHRASE = rf"(?:{_ATOM}|{_QUOTED})(?:[ \t]+(?:{_ATOM}|{_QUOTED}))*[ \t]*"
_SIMPLE_FROM = re.compile(rf"[ \t\r\n]*(?:{_ADDR}|(?:{_PHRASE})?<{_ADDR}>)[ \t\r\n]*")


def _decode(value: str | bytes) -> str:
    if not isinstance(value, bytes):
        return value
    # Raw 8-bit bytes that are not UTF-8 stay one character each (latin-1): they can only be
    # text in a display name or comment; a domain containing them fails domain_key below.
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        text = value.decode("latin-1")
        if any(c > "\x7f" for c in text):
            text = "".join(c if c <= "\x7f" else "\ufffd" for c in text)
        return text


_PARSED: dict[str, tuple[Mailbox, ...]] = {}
_PARSED_MAX = 1024  # entries
_PARSED_TEXT_MAX = 256  # characters: a longer value is parsed each time


def parse_mailboxes(value: str | bytes) -> list[Mailbox]:
    """The mailboxes of one From field value (groups flattened; an empty group gives none), domains
    normalized with :func:`domain_key`. Raises AddressError when the value is not valid.

    A pure function of the decoded text: the mailboxes of short values that parse are remembered
    (the same senders write the same From), in a table of bounded size; a refusal is not."""
    text = _decode(value)
    hit = _PARSED.get(text)
    if hit is not None:
        return list(hit)
    boxes = _parse(text)
    if len(text) <= _PARSED_TEXT_MAX:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[text] = tuple(boxes)
    return boxes


def _parse(text: str) -> list[Mailbox]:
    m = _SIMPLE_FROM.fullmatch(text)
    if m is not None:
        if m.group(1) is not None:
            return [Mailbox(m.group(1), domain_key(m.group(2)))]
        return [Mailbox(m.group(3), domain_key(m.group(4)))]
    return _parse_full(text)


def _parse_full(text: str) -> list[Mailbox]:
    p = _Parser(text)
    boxes = p.address_list()
    out = []
    for b in boxes:
        if b.domain is not None:
            if "\ufffd" in b.domain:
                raise AddressError(f"domain {b.domain!r} is not valid UTF-8")
            out.append(Mailbox(b.local, domain_key(b.domain)))
        else:
            out.append(b)
    return out
