"""DKIM verification (RFC 6376, RFC 8301, RFC 8463), streaming, with every cost bounded.

The message is never kept: header fields are collected as they arrive (:meth:`Verifier.header`),
the body is canonicalized and hashed chunk by chunk for each distinct (canonicalization, hash,
``l=``) of the signatures (:meth:`Verifier.body`), and at end of message each signature's key is
looked up and its header hash checked (:meth:`Verifier.finish`). Memory is the header fields plus a
few bytes per hash, whatever the body size.

Every step is linear in the size of what the sender controls. dkimpy supplies the hash and RSA
primitives, key parsing and its tag=value parser, but its signature-field checks and ``b=``
removal use regular expressions that backtrack quadratically on crafted whitespace (tens of seconds
for one 100 KB signature field), and its header selection is O(h= names x header fields); those
steps are reimplemented here, linear, with dkimpy's semantics (the corpora in tests/corpora keep
the same results). Hostile keys are refused before any arithmetic (RSA modulus over
``auth.dkim_max_key_bits``, public exponent over 64 bits or below 3, key data too long to be such
a key).

Results (RFC 8601 words):
- pass: the signature verifies with an acceptable key;
- fail: body hash or signature mismatch;
- policy: verifies but is not acceptable (RFC 8301: rsa-sha1, or an RSA key shorter than
  ``auth.dkim_min_key_bits``);
- neutral: not verified because of one of our limits (the body is larger than
  ``auth.max_message_bytes``, or the message has more than :data:`MAX_HEADER_FIELDS` header fields);
- temperror: the key lookup failed (timeout, SERVFAIL);
- permerror: malformed or expired signature, unknown algorithm, missing/revoked/malformed/hostile
  key, key type not matching ``a=``, or any other library exception.
Signatures beyond ``auth.dkim_max_signatures`` are not verified (counted in a metric)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dkim as dkimpy
import dkim.crypto
import nacl.exceptions
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError
from dkim.util import DuplicateTag, InvalidTagSpec

from mailpolicy import dns, metrics
from mailpolicy.auth import DkimResult, header
from mailpolicy.auth.base import MethodSpec
from mailpolicy.model import Stage

if TYPE_CHECKING:
    from mailpolicy.config import Config
    from mailpolicy.state import Transaction

log = logging.getLogger("mailpolicy.auth.dkim")

MAX_HEADER_FIELDS = 10_000
"""Header fields kept for DKIM header hashing. A message with more gets ``neutral`` for every
signature (a forged signature can never pass by it; DMARC then needs an aligned SPF pass)."""
MAX_EXPONENT_BITS = 64  # OpenSSL's limit for large moduli (OPENSSL_RSA_MAX_PUBEXP_BITS)
SIGNATURE_FIELD = b"dkim-signature"
HASHES: dict[bytes, Callable[[], Any]] = {
    b"rsa-sha1": hashlib.sha1,
    b"rsa-sha256": hashlib.sha256,
    b"ed25519-sha256": hashlib.sha256,
}
_B64 = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/")
_WSP = frozenset(b" \t\r\n\x0b\x0c")  # bytes.strip()'s whitespace, and the \s of a bytes regex
_BTAG_VALUE = _B64 | frozenset(b"=")
_WSP_BYTES = bytes(sorted(_WSP))
_B64_BYTES = bytes(sorted(_B64))
_B64_OR_WSP = _B64 | _WSP
_BTAG_BEFORE = _WSP | frozenset(b";")
# Linear regular expressions (no nested or overlapping repetition): in a bytes pattern \s is
# exactly _WSP.
_BTAG_START = re.compile(rb"[;\s]b\s*=")
_B_FWS_EQ = re.compile(rb"b\s*=")  # _BTAG_START without its first byte: a literal to search for
_BTAG_TRIES = 8
_BTAG_RUN = re.compile(rb"[\s0-9A-Za-z+/=]*")
DOMAIN_SPECIALS = re.compile(rb"[()<>\[\]:;@\\,]")
_RUNS = re.compile(rb"[\t ]+")
_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
_BARE_LF = re.compile(rb"(?<!\r)\n")
TIME_SLOP = 36000  # dkimpy's 10 h leeway for t= and x=


class SignatureError(Exception):
    """A signature field that cannot be verified: permerror with this reason."""


# ---- body: streaming canonicalization (RFC 6376 3.4.3 / 3.4.4) -------------------------------


def _compress(data: bytes) -> bytes:
    """``_RUNS.sub(b" ", data)``: every run of blanks one space. Without a tab or two spaces in a
    row there is no run to change, and the regex pass is skipped. (``9 in data`` and ``find``: a
    ``bytes in bytes`` test first fails to read its operand as an integer, which costs more.)"""
    if 9 in data or data.find(b"  ") >= 0:
        return _RUNS.sub(b" ", data)
    return data


class BodyHash:
    """One canonicalized body hash, fed chunk by chunk; byte-identical to dkimpy's
    ``canonicalize_body`` over the whole body (which first turns every bare LF into CRLF).

    Held back between chunks: at most a CR (it may start a CRLF) and, for relaxed, one blank
    standing for a run of WSP (it is dropped before CRLF), plus a count of empty lines (trailing
    ones are dropped). Memory is constant whatever the sender sends."""

    def __init__(self, relaxed: bool, hasher: Callable[[], Any], limit: int | None):
        self.relaxed = relaxed
        self._h = hasher()
        self._limit = limit
        self._fed = 0
        self._hold = b""  # unprocessed tail of the current line: [one blank][CR]
        self._line_has_content = False
        self._empty = 0  # empty lines not yet emitted
        self._emitted = False  # a line with content was emitted
        self._digest: bytes | None = None

    def _feed(self, data: bytes) -> None:
        if self._limit is not None:
            room = self._limit - self._fed
            if room <= 0:
                return
            data = data[:room]
        self._fed += len(data)
        self._h.update(data)

    def _content(self, data: bytes) -> None:
        """Emit non-empty content of the current line (empty lines held so far come first)."""
        if not self._line_has_content:
            if self._empty:
                self._feed(b"\r\n" * self._empty)
                self._empty = 0
            self._line_has_content = True
            self._emitted = True
        self._feed(data)

    def _canon(self, data: bytes) -> bytes:
        return _compress(data) if self.relaxed else data

    def update(self, chunk: bytes) -> None:
        data = self._hold + chunk
        if data.count(b"\n") != data.count(b"\r\n"):  # else no bare LF: nothing to replace
            data = _BARE_LF.sub(b"\r\n", data)
        end = data.rfind(b"\r\n")
        if end >= 0:
            block, rest = data[: end + 2], data[end + 2 :]
            self._lines(block)
        else:
            rest = data
        # An incomplete line: emit what cannot change any more, hold back the rest.
        cut = len(rest)
        if rest.endswith(b"\r"):
            cut -= 1
        if self.relaxed:
            while cut > 0 and rest[cut - 1] in (9, 32):
                cut -= 1
        if cut:
            self._content(self._canon(rest[:cut]))
        hold = rest[cut:]
        self._hold = _compress(hold) if self.relaxed else hold

    def _lines(self, block: bytes) -> None:
        """Complete lines (``block`` ends with CRLF); the first may continue an emitted line."""
        if self.relaxed:
            if block.find(b" \r\n") >= 0 or block.find(b"\t\r\n") >= 0:  # else no _TRAILING_WSP
                block = _TRAILING_WSP.sub(b"\r\n", block)
            block = _compress(block)
        # Trailing CRLF pairs: the first ends the last line, the others are empty lines.
        tail = block.rstrip(b"\r\n")
        seg = block[len(tail) :].replace(b"\r\n", b"\n")
        pairs = len(seg) - len(seg.rstrip(b"\n"))
        body = block[: len(block) - 2 * pairs]
        if not body:
            # Only line ends: the first ends the current line if it has content.
            if self._line_has_content:
                self._feed(b"\r\n")
                pairs -= 1
                self._line_has_content = False
            self._empty += pairs
            return
        self._content(body)
        self._feed(b"\r\n")
        self._line_has_content = False
        self._empty += pairs - 1

    def digest(self) -> bytes:
        if self._digest is None:
            hold = self._hold
            if hold:  # at the very end, a held blank or CR is content, not a line end
                self._content(hold)
                self._hold = b""
            if self._line_has_content:
                self._feed(b"\r\n")
            elif not self._emitted and not self.relaxed:
                self._feed(b"\r\n")  # simple: an empty body is one CRLF; relaxed: nothing
            self._digest = self._h.digest()
        return self._digest


class BodyHashes:
    """The distinct body hashes one message's signatures need (by key, e.g. canonicalization,
    hash and ``l=``), fed chunk by chunk. Past ``cap`` bytes nothing more is hashed and
    ``truncated`` is set: those signatures are then not verified."""

    def __init__(self, cap: int | None):
        self.cap = cap
        self.hashes: dict[Any, BodyHash] = {}
        self.bytes = 0
        self.truncated = False

    def get(self, key: Any, make: Callable[[], BodyHash], most: int | None = None) -> BodyHash | None:
        """The hash for ``key``, made on first use (None once ``most`` distinct hashes exist)."""
        hit = self.hashes.get(key)
        if hit is None and (most is None or len(self.hashes) < most):
            hit = self.hashes[key] = make()
        return hit

    def update(self, chunk: bytes) -> None:
        if self.hashes and not self.truncated:
            if self.cap is not None and self.bytes + len(chunk) > self.cap:
                self.truncated = True
                self.hashes.clear()
            else:
                for h in self.hashes.values():
                    h.update(chunk)
        self.bytes += len(chunk)


# ---- signature fields ----------------------------------------------------------------------


_TAG_NAME_START = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def parse_tag_value(tag_list: bytes) -> dict[bytes, bytes]:
    """dkimpy's ``dkim.util.parse_tag_value`` (RFC 6376 3.2) without its regular expression per
    tag: the same tags, or for a list it refuses the same exception (its ``InvalidTagSpec`` or
    ``DuplicateTag``, same argument). Its tag name test, ``re.match(rb"^[a-zA-Z](\\w)*", key)``,
    only looks at the first character: an ASCII letter. A property test compares the two."""
    tags: dict[bytes, bytes] = {}
    specs = tag_list.strip().split(b";")
    if not specs[-1]:  # trailing semicolons are valid
        specs.pop()
    for spec in specs:
        key, eq, value = spec.partition(b"=")
        if not eq:
            raise InvalidTagSpec(spec)
        key = key.strip()
        if not key or key[0] not in _TAG_NAME_START:
            raise InvalidTagSpec(spec)
        if key in tags:
            raise DuplicateTag(key)
        tags[key] = value.strip()
    return tags


def _canonicalization_table() -> dict[bytes, tuple[bool, bool]]:
    out: dict[bytes, tuple[bool, bool]] = {}
    for head in (b"simple", b"relaxed"):
        for c in (head, head + b"/simple", head + b"/relaxed"):
            policy = CanonicalizationPolicy.from_c_value(c)
            out[c] = (policy.header_algorithm.name == b"relaxed", policy.body_algorithm.name == b"relaxed")
    return out


_CANONICALIZATIONS = _canonicalization_table()
"""Every ``c=`` value dkimpy accepts (it compares case-sensitively), worked out by dkimpy itself."""


def canonicalization(c: bytes) -> tuple[bool, bool]:
    """(relaxed header, relaxed body) for a ``c=`` value, as dkimpy's
    ``CanonicalizationPolicy.from_c_value`` reads it; raises its
    ``InvalidCanonicalizationPolicyError`` (with the same argument) for any other value."""
    hit = _CANONICALIZATIONS.get(c)
    if hit is not None:
        return hit
    policy = CanonicalizationPolicy.from_c_value(c)  # raises: every accepted value is in the table
    return policy.header_algorithm.name == b"relaxed", policy.body_algorithm.name == b"relaxed"


def unspace(value: bytes) -> bytes:
    """``value`` without its whitespace bytes (_WSP): ``bytes.split()`` splits at exactly those,
    and is several times faster than ``value.translate(None, _WSP_BYTES)``."""
    return b"".join(value.split())


def b64_shape(value: bytes, unspaced: bytes | None = None) -> bool:
    """dkimpy's ``re.match(rb"[\\s0-9A-Za-z+/]+[\\s=]*$", value)``, in linear time. Whitespace
    is in both classes and ``=`` only in the second, so the value matches exactly when its first
    byte is whitespace or base64 and, whitespace left out, it is base64 characters then only ``=``
    (that is: nothing but base64 before its trailing ``=``). ``unspaced``: ``unspace(value)``, when
    the caller has it."""
    if not value or value[0] not in _B64_OR_WSP:
        return False
    rest = (unspace(value) if unspaced is None else unspaced).rstrip(b"=")
    return not rest.translate(None, _B64_BYTES)


def check_fields(sig: dict[bytes, bytes], now: float) -> None:
    """dkimpy's ``validate_signature_fields`` (same checks, same order), linear. Raises SignatureError."""
    for tag in (b"v", b"a", b"b", b"bh", b"d", b"h", b"s"):
        if tag not in sig:
            raise SignatureError(f"missing {tag.decode()}=")
    if sig[b"a"] not in HASHES:
        raise SignatureError("unknown signature algorithm")
    # dkimpy checks the shape of b= twice (its bh= check looks at b= too), then both lengths.
    b = unspace(sig[b"b"])
    if not b64_shape(sig[b"b"], b) or len(b) % 4:
        raise SignatureError("b= value is not valid base64")
    if len(unspace(sig[b"bh"])) % 4:
        raise SignatureError("bh= value is not valid base64")
    d = sig[b"d"]
    if d.isascii() and DOMAIN_SPECIALS.search(d):
        raise SignatureError("d= value is not valid")
    if b"i" in sig:
        i = sig[b"i"]
        if len(i) <= len(d) or not i.lower().endswith(d.lower()) or i[-len(d) - 1] not in (64, 46):
            raise SignatureError("i= domain is not a subdomain of d=")
    if b"l" in sig and (not sig[b"l"].isdigit() or len(sig[b"l"]) > 76):
        raise SignatureError("l= value is not a decimal integer")
    if b"q" in sig and sig[b"q"] != b"dns/txt":
        raise SignatureError("q= value is not dns/txt")
    t_sign = None
    if b"t" in sig:
        if not sig[b"t"].isdigit():
            raise SignatureError("t= value is not a decimal integer")
        t_sign = int(sig[b"t"])
        if t_sign > now + TIME_SLOP:
            raise SignatureError("t= value is in the future")
    if sig[b"v"] != b"1":
        raise SignatureError("v= value is not 1")
    if b"x" in sig:
        if not sig[b"x"].isdigit():
            raise SignatureError("x= value is not a decimal integer")
        x_sign = int(sig[b"x"])
        if x_sign < now - TIME_SLOP:
            raise SignatureError("x= value is past")
        if t_sign and x_sign < t_sign:
            raise SignatureError("x= value is less than t= value")


def _btag_end(value: bytes, start: int) -> int:
    """``_BTAG_START.search(value, start).end()``, or -1 when there is no match. A search for
    ``b FWS =`` (it starts with a literal, which the regex engine looks for quickly) whose byte
    before is then checked here finds the same leftmost match; after a few candidates refused by
    that byte (a crafted field) the plain search takes over, so the cost stays the regex's."""
    pos = start + 1  # every position below pos - 1 is known not to start a match
    for _ in range(_BTAG_TRIES):
        m = _B_FWS_EQ.search(value, pos)
        if m is None:
            return -1
        j = m.start()
        if value[j - 1] in _BTAG_BEFORE:
            return m.end()
        pos = j + 1  # nor does j - 1 (wrong byte) or j (a "b")
    found = _BTAG_START.search(value, pos - 1)
    return -1 if found is None else found.end()


def strip_b_value(value: bytes) -> bytes:
    """The signature field value with every ``b=`` tag's value removed, as dkimpy's ``RE_BTAG``
    substitution does (``[;\\s]b FWS =`` kept, then greedy units of FWS + one base64 character,
    then a final line end), in linear time: the units cover the longest run of whitespace and
    value characters up to its last value character."""
    out = bytearray()
    start = 0
    while (k := _btag_end(value, start)) >= 0:  # k: just after "="
        out += value[start:k]
        run = _BTAG_RUN.match(value, k)
        p = k + len(value[k : run.end() if run else k].rstrip(_WSP_BYTES))
        if value[p:] in (b"\r\n", b"\n"):
            p = len(value)
        start = p
    out += value[start:]
    return bytes(out)


def relaxed_header(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    unfolded = value.replace(b"\r\n", b"").replace(b"\n", b"")
    return name.lower().rstrip(), _compress(unfolded).strip() + b"\r\n"


def header_hash(
    hasher: Callable[[], Any],
    relaxed: bool,
    fields: Sequence[tuple[bytes, bytes]],
    index: dict[bytes, list[int]],
    include: list[bytes],
    signature: tuple[bytes, bytes],
) -> Any:
    """The header hash (RFC 6376 3.7): the fields named in ``h=`` (bottom-up, each instance once,
    a missing one skipped), then the signature field without its ``b=`` value and final CRLF.
    What is hashed is gathered first and hashed in one update (the same digest as one update per
    field; the transient copy is at most the size of the fields hashed)."""
    parts: list[bytes] = []
    taken: dict[bytes, int] = {}
    for name in include:
        positions = index.get(name)
        if not positions:
            continue
        used = taken.get(name, 0)
        if used >= len(positions):
            continue
        taken[name] = used + 1
        fname, fvalue = fields[positions[len(positions) - 1 - used]]
        if relaxed:
            fname, fvalue = relaxed_header(fname, fvalue)
        parts += (fname, b":", fvalue)
    sname, svalue = signature
    svalue = strip_b_value(svalue)
    if relaxed:
        sname, svalue = relaxed_header(sname, svalue)
    parts += (sname, b":", svalue.rstrip())
    h = hasher()
    h.update(b"".join(parts))
    return h


# ---- keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRecord:
    """What a key record's text says, parsed once (a pure function of the text)."""

    revoked: bool
    for_email: bool
    strict: bool  # t=s
    hashes: tuple[bytes, ...] | None  # h=, lower case; None when absent
    key_type: bytes  # k=, rsa by default
    data_len: int  # length of p= in base64 characters
    record: bytes  # what dkimpy's evaluate_pk is given (s= left out)


_CACHE_SIZE = 1024
_records: OrderedDict[bytes, KeyRecord] = OrderedDict()
_keys: OrderedDict[bytes, tuple[Any, Any, Any, rsa.RSAPublicKey | None]] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(cache: OrderedDict[bytes, Any], key: bytes) -> Any:
    with _cache_lock:
        hit = cache.get(key)
        if hit is not None:
            cache.move_to_end(key)
        return hit


def _remember(cache: OrderedDict[bytes, Any], key: bytes, value: Any) -> None:
    with _cache_lock:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)


def clear_key_cache() -> None:
    with _cache_lock:
        _records.clear()
        _keys.clear()


def key_record(txt: bytes) -> KeyRecord:
    """Parse a key record (raises on a malformed one, which is never cached). Cached by its text:
    the DNS answer itself stays TTL-bound in the resolver cache, a changed record is a new entry."""
    hit: KeyRecord | None = _cached(_records, txt)
    if hit is not None:
        return hit
    tags = parse_tag_value(txt)
    services = [x.strip().lower() for x in tags.get(b"s", b"*").split(b":")]
    flags = [x.strip().lower() for x in tags.get(b"t", b"").split(b":")]
    hashes = tags.get(b"h")
    rec = KeyRecord(
        revoked=tags.get(b"p", b"x").strip() == b"",
        for_email=b"*" in services or b"email" in services,
        strict=b"s" in flags,
        hashes=None if hashes is None else tuple(h.strip().lower() for h in hashes.split(b":")),
        key_type=tags.get(b"k", b"rsa"),
        data_len=len(unspace(tags.get(b"p", b""))),
        # dkimpy compares s= as a whole string; it was checked as RFC 6376 3.6.1 says.
        record=b"; ".join(k + b"=" + v for k, v in tags.items() if k != b"s"),
    )
    _remember(_records, txt, rec)
    return rec


def public_key(name: bytes, record: bytes) -> tuple[Any, Any, Any, rsa.RSAPublicKey | None]:
    """dkimpy's ``evaluate_pk`` (ASN.1 parse of the key) and, for RSA, the same key for OpenSSL;
    cached by record text. Only successes are cached: a failing record raises again each time,
    with the same message."""
    hit: tuple[Any, Any, Any, rsa.RSAPublicKey | None] | None = _cached(_keys, record)
    if hit is not None:
        return hit
    pk, keysize, ktag, _tlsrpt = dkimpy.evaluate_pk(name, record)
    fast = _openssl_key(pk) if ktag == b"rsa" and pk is not None else None
    value = (pk, keysize, ktag, fast)
    _remember(_keys, record, value)
    return value


def rsa_key_problem(pk: Any, max_bits: int) -> str | None:
    """Why an RSA public key is refused before any arithmetic, or None. The cost of a verification
    is that of ``pow(s, e, n)``: bounded by the modulus size and the exponent's bit length."""
    n, e = pk.get("modulus"), pk.get("publicExponent")
    if not isinstance(n, int) or not isinstance(e, int):
        return "bad key: no modulus or exponent"
    if n.bit_length() > max_bits:
        return f"key too large ({n.bit_length()} bits, limit {max_bits})"
    if e < 3 or e % 2 == 0 or e.bit_length() > MAX_EXPONENT_BITS or e >= n:
        return f"bad key: public exponent of {e.bit_length()} bits is not acceptable"
    return None


_PREHASHED = {"sha1": utils.Prehashed(hashes.SHA1()), "sha256": utils.Prehashed(hashes.SHA256())}
_PKCS1 = padding.PKCS1v15()
_FAST_MIN_BITS = 1024  # below this, dkimpy's encoding may not fit: the reference path decides


def rsa_verify_reference(digest_hash: Any, signature: bytes, pk: Any) -> bool:
    """RSASSA-PKCS1-v1_5 verification as dkimpy does it (its EMSA encoding, Python's ``pow``)."""
    n: int = pk["modulus"]
    modlen = (n.bit_length() + 7) // 8
    encoded = dkim.crypto.EMSA_PKCS1_v1_5_encode(digest_hash, modlen)
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    return bytes(encoded) == pow(s, pk["publicExponent"], n).to_bytes(modlen, "big")


def _openssl_key(pk: Any) -> rsa.RSAPublicKey | None:
    """The key for OpenSSL (through ``cryptography``), or None to use the reference path."""
    n, e = pk["modulus"], pk["publicExponent"]
    if n.bit_length() < _FAST_MIN_BITS or n % 2 == 0:  # OpenSSL needs an odd modulus
        return None
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None


def rsa_verify(digest_hash: Any, signature: bytes, pk: Any, key: rsa.RSAPublicKey | None = None) -> bool:
    """RSASSA-PKCS1-v1_5 verification with the same answer as :func:`rsa_verify_reference`,
    through OpenSSL when ``key`` is given (about 7x faster for RSA-2048). dkimpy reads ``b=`` as
    an integer, so a signature with its leading zero bytes left out is the same signature: it is
    brought to the modulus length first (OpenSSL requires exactly that length)."""
    prehashed = _PREHASHED.get(digest_hash.name)
    if key is None or prehashed is None:
        return rsa_verify_reference(digest_hash, signature, pk)
    modlen = (key.key_size + 7) // 8
    trimmed = signature.lstrip(b"\0")
    if len(trimmed) > modlen:
        return False
    try:
        key.verify(trimmed.rjust(modlen, b"\0"), digest_hash.digest(), _PKCS1, prehashed)
    except InvalidSignature:
        return False
    return True


# ---- the verifier ---------------------------------------------------------------------------


@dataclass
class _Signature:
    raw: tuple[bytes, bytes]  # (field name, value) as stored
    tags: dict[bytes, bytes] | None = None
    problem: str | None = None  # a permerror found before end of message
    body: BodyHash | None = None
    relaxed_headers: bool = False
    include: list[bytes] | None = None


@dataclass(frozen=True)
class Limits:
    max_signatures: int = 5
    min_key_bits: int = 1024
    max_key_bits: int = 4096
    timeout: float = 5.0
    max_body_bytes: int | None = None


class Verifier:
    """DKIM for one message: feed :meth:`header` for every field, :meth:`body` for every chunk,
    then :meth:`finish` once. Never raises."""

    def __init__(self, limits: Limits, now: Callable[[], float] = time.time):
        self.limits = limits
        self._now = now
        self.fields: list[tuple[bytes, bytes]] = []
        self.field_count = 0
        self.signature_count = 0
        self._signatures: list[_Signature] = []
        self._bodies = BodyHashes(limits.max_body_bytes)
        self._body_started = False

    @property
    def too_many_fields(self) -> bool:
        return self.field_count > MAX_HEADER_FIELDS

    def header(self, name: bytes, value: bytes) -> None:
        """One header field: ``value`` is everything after the colon with CRLF line ends and a
        final CRLF (what dkimpy keeps)."""
        self.field_count += 1
        if self.field_count <= MAX_HEADER_FIELDS:
            self.fields.append((name, value))
        if name.lower() == SIGNATURE_FIELD:
            self.signature_count += 1
            if self.signature_count <= self.limits.max_signatures:
                self._signatures.append(_Signature(raw=(name, value)))

    def _start_body(self) -> None:
        self._body_started = True
        for sig in self._signatures:
            try:
                self._prepare(sig)
            except SignatureError as exc:
                sig.problem = str(exc)
            except Exception as exc:  # dkimpy's tag parser and friends: never escape
                sig.problem = f"{type(exc).__name__}: {exc}"[:200]

    def _prepare(self, sig: _Signature) -> None:
        try:
            tags = parse_tag_value(sig.raw[1])
        except dkimpy.DKIMException as exc:
            raise SignatureError(str(exc) or type(exc).__name__) from None
        sig.tags = tags
        check_fields(tags, self._now())
        try:
            sig.relaxed_headers, relaxed_body = canonicalization(tags.get(b"c", b"simple/simple"))
        except InvalidCanonicalizationPolicyError as exc:
            raise SignatureError(f"invalid c= value: {exc}") from None
        sig.include = [x.strip().lower() for x in tags[b"h"].split(b":")]
        limit = int(tags[b"l"]) if b"l" in tags else None
        alg = tags[b"a"]
        sig.body = self._bodies.get(
            (relaxed_body, alg, limit), lambda: BodyHash(relaxed_body, HASHES[alg], limit)
        )

    def body(self, chunk: bytes) -> None:
        if not self._body_started:
            self._start_body()
        self._bodies.update(chunk)

    def finish(self) -> list[DkimResult]:
        if not self._body_started:
            self._start_body()
        if self.signature_count > self.limits.max_signatures:
            metrics.DKIM_SKIPPED.inc(self.signature_count - self.limits.max_signatures)
        index: dict[bytes, list[int]] = {}
        for i, (name, _value) in enumerate(self.fields):
            index.setdefault(name.lower(), []).append(i)
        results = []
        for sig in self._signatures:
            try:
                results.append(self._verify(sig, index))
            except Exception as exc:  # never let a library bug escape
                log.warning("dkim verification raised %s: %s", type(exc).__name__, exc)
                results.append(_result(sig, "permerror", f"internal error: {type(exc).__name__}"))
        return results

    def _verify(self, sig: _Signature, index: dict[bytes, list[int]]) -> DkimResult:
        if sig.problem is not None or sig.tags is None:
            return _result(sig, "permerror", sig.problem or "unparsable signature")
        tags = sig.tags
        res = _result(sig, "permerror", "")
        if self.too_many_fields:
            res.result, res.reason = "neutral", f"more than {MAX_HEADER_FIELDS} header fields"
            return res
        if self._bodies.truncated:
            res.result, res.reason = "neutral", "message larger than auth.max_message_bytes"
            return res
        alg = tags[b"a"]
        name = tags[b"s"] + b"._domainkey." + tags[b"d"]
        ans = dns.get().query(name, "TXT", timeout=self.limits.timeout)
        if ans.failed:
            res.result, res.reason = "temperror", f"key lookup {ans.outcome}"
            return res
        txt = ans.txt()
        if not txt:
            res.reason = "no key for signature"
            return res
        try:
            key = key_record(txt[0])
        except Exception:
            res.reason = "malformed key record"
            return res
        if key.revoked:
            res.reason = "key revoked"
            return res
        if not key.for_email:
            res.reason = "key not for email (s=)"
            return res
        auid = tags.get(b"i")
        if key.strict and auid is not None and auid.rpartition(b"@")[2].lower() != tags[b"d"].lower():
            res.reason = "key t=s requires i= domain equal to d="
            return res
        # A base64 RSA SubjectPublicKeyInfo is about 1.4 characters per modulus bit (plus a small
        # header): refuse anything longer than the largest acceptable key before parsing it.
        if key.key_type == b"rsa" and key.data_len > self.limits.max_key_bits // 4 + 200:
            res.reason = f"key too large (over {self.limits.max_key_bits} bits)"
            return res
        try:
            pk, keysize, ktag, fast_key = public_key(name, key.record)
        except Exception as exc:
            res.reason = f"bad key: {exc}"[:200]
            return res
        if pk is None or ktag is None:
            res.reason = "unusable key"
            return res
        res.bits = int(keysize) if keysize else None
        ktag_text = ktag.decode() if isinstance(ktag, bytes) else str(ktag)
        if alg.split(b"-", 1)[0].decode() != ktag_text:
            res.reason = f"key type {ktag_text} does not match a={alg.decode()}"
            return res
        if key.hashes is not None and alg.split(b"-")[-1] not in key.hashes:
            res.reason = "hash algorithm not allowed by key h="
            return res
        if ktag == b"rsa":
            problem = rsa_key_problem(pk, self.limits.max_key_bits)
            if problem is not None:
                res.reason = problem
                return res
        # Body hash, then header hash and signature (RFC 6376 6.1.3).
        assert sig.body is not None and sig.include is not None
        try:
            expected_bh = base64.b64decode(unspace(tags[b"bh"]))
            signature = base64.b64decode(unspace(tags[b"b"]))
        except (binascii.Error, ValueError) as exc:
            res.reason = f"bad base64: {exc}"
            return res
        if sig.body.digest() != expected_bh:
            res.result, res.reason = "fail", "body hash mismatch"
            return res
        include = list(sig.include)
        if b"from" in include:  # dkimpy (bug 644046): an extra From field must be signed too
            include.append(b"from")
        h = header_hash(HASHES[alg], sig.relaxed_headers, self.fields, index, include, sig.raw)
        if ktag == b"rsa":
            try:
                ok = rsa_verify(h, signature, pk, fast_key)
            except dkim.crypto.DigestTooLargeError:
                res.reason = "digest too large for modulus"
                return res
            if ok and res.bits is not None and res.bits < self.limits.min_key_bits:
                res.result, res.reason = "policy", f"key too small ({res.bits} bits)"
                return res
        else:
            try:
                pk.verify(h.digest(), signature)
                ok = True
            except nacl.exceptions.BadSignatureError:
                ok = False
            except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
                res.reason = f"bad signature: {exc}"[:200]
                return res
        if not ok:
            res.result, res.reason = "fail", "signature did not verify"
        elif alg == b"rsa-sha1":
            res.result, res.reason = "policy", "rsa-sha1 is not acceptable (RFC 8301)"
        else:
            res.result, res.reason = "pass", ""
        return res


def _text(value: bytes | None, limit: int = 253) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace").strip()[:limit] or None


def _rough_tags(raw: bytes) -> dict[bytes, bytes]:
    """Best-effort tag=value parse of a signature that could not be parsed (for reporting d=/s=/a=)."""
    out: dict[bytes, bytes] = {}
    for part in raw.split(b";"):
        k, eq, v = part.partition(b"=")
        if eq:
            out.setdefault(k.strip(), unspace(v))
    return out


def _result(sig: _Signature, result: str, reason: str) -> DkimResult:
    tags = sig.tags if sig.tags is not None else _rough_tags(sig.raw[1])
    b = _text(unspace(tags.get(b"b", b"")))
    return DkimResult(
        result=result,
        domain=(_text(tags.get(b"d")) or "").lower() or None,
        selector=_text(tags.get(b"s")),
        algorithm=(_text(tags.get(b"a")) or "").lower() or None,
        b=b[:8] if b else None,
        reason=reason[:200],
    )


# ---- whole messages (tests, corpora, tools) --------------------------------------------------


def split_message(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
    """Header fields (name, value as the verifier keeps it) and body of a message given as bytes,
    parsed as dkimpy does (LF or CRLF line ends; a leading ``From `` line skipped); None when a
    header line is neither a field nor a continuation."""
    lines = re.split(b"\r?\n", message)
    fields: list[tuple[bytes, list[bytes]]] = []  # (name, value lines): joined once at the end
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            break
        if line[0] in (9, 32):
            if not fields:
                return None
            fields[-1][1].append(line)
            continue
        m = re.match(rb"([\x21-\x7e]+?):", line)
        if m is not None:
            fields.append((m.group(1), [line[m.end(0) :]]))
        elif not line.startswith(b"From "):
            return None
    else:
        i = len(lines)
    body = b"\r\n".join(lines[i:])
    return [(n, b"\r\n".join(parts) + b"\r\n") for n, parts in fields], body


def verify(
    message: bytes,
    max_signatures: int,
    min_key_bits: int,
    timeout: float,
    max_key_bits: int = 4096,
    chunk: int = 65535,
) -> list[DkimResult]:
    """Verify every DKIM signature of a whole message through the streaming verifier (in MTA-sized
    body chunks). Never raises."""
    v = Verifier(Limits(max_signatures, min_key_bits, max_key_bits, timeout))
    parsed = split_message(message)
    if parsed is None:
        return _unparsable(message, max_signatures)
    fields, body = parsed
    for name, value in fields:
        v.header(name, value)
    for start in range(0, len(body), chunk):
        v.body(body[start : start + chunk])
    return v.finish()


def _unparsable(message: bytes, max_signatures: int) -> list[DkimResult]:
    head = re.split(rb"\r?\n\r?\n", message, maxsplit=1)[0]
    raws: Iterable[bytes] = (
        m.group(1).replace(b"\r\n", b"").replace(b"\n", b"")
        for m in re.finditer(rb"^dkim-signature[ \t]*:(.*(?:\r?\n[ \t].*)*)", head, re.I | re.M)
    )
    out = []
    for raw in list(raws)[:max_signatures]:
        out.append(_result(_Signature(raw=(b"DKIM-Signature", raw)), "permerror", "unparsable message"))
    return out


# ---- the method --------------------------------------------------------------------------------


def limits_of(config: Config) -> Limits:
    """The verification limits a configuration sets (shared with ARC)."""
    a = config.auth
    return Limits(
        max_signatures=a.dkim_max_signatures,
        min_key_bits=a.dkim_min_key_bits,
        max_key_bits=a.dkim_max_key_bits,
        timeout=config.dns.timeout,
        max_body_bytes=a.max_message_bytes,
    )


def _feed(txn: Transaction) -> Verifier:
    return Verifier(limits_of(txn.setup.config))


def _run(txn: Transaction) -> list[DkimResult]:
    assert txn.auth is not None
    feed = txn.auth.feeds.get("dkim")
    return feed.finish() if isinstance(feed, Verifier) else []


def _clauses(results: list[DkimResult], note: str | None) -> list[str]:
    out = []
    for d in results:
        bits = f"{d.bits}-bit key" if d.bits and d.result in ("pass", "fail", "policy") else None
        comment = f"{bits}; {note}" if bits and note else bits or note or None
        out.append(
            header.resinfo(
                "dkim",
                d.result,
                comment,
                d.reason if d.reason and d.result != "pass" else None,
                [
                    ("header.d", d.domain or ""),
                    ("header.b", d.b or ""),
                    ("header.s", d.selector or ""),
                    ("header.a", d.algorithm or ""),
                ],
            )
        )
    return out


METHOD = MethodSpec(
    name="dkim",
    stage=Stage.EOM,
    run=_run,
    results=("pass", "fail", "neutral", "policy", "temperror", "permerror"),
    words=lambda results: [d.result for d in results],
    clauses=_clauses,
    record=lambda results: [d.record() for d in results],
    unavailable=lambda why: [],
    feed=_feed,
    empty=[],
)
