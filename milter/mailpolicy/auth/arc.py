"""ARC chain validation (RFC 8617 5.2, the validator's side), streaming, with every cost bounded.

Built on the DKIM verifier's primitives (:mod:`mailpolicy.auth.dkim`): its streaming body hash, its
linear header hashing and ``b=`` removal, its key cache, key checks and OpenSSL RSA path. Header
fields are collected as they arrive (:meth:`Verifier.header`); at end of headers the ARC sets are
parsed and checked, and one body hash is set up per distinct (canonicalization, ``l=``) of the
ARC-Message-Signatures (:data:`MAX_BODY_HASHES` at most, the newest always first); the body is then
hashed chunk by chunk (:meth:`Verifier.body`), and at end of message the keys are looked up and the
signatures checked (:meth:`Verifier.finish`). A message without ARC header fields costs a name
comparison per header field and nothing per body chunk.

Every step is linear in the size of what the sender controls (dkimpy's ARC code, the reference for
the semantics, uses regular expressions that backtrack quadratically on crafted whitespace, keeps
the whole message and does pure-Python RSA with no limit on the key). The ARC-Seal hashes of the
instances share one running hash of the sets below them, so validating N seals hashes each ARC
field once. Key lookups are shared within one message (an ARC-Seal and an ARC-Message-Signature
often use the same key) and take :data:`DNS_BUDGET` lookup timeouts at most altogether.

Results (RFC 8601 ``arc=`` words, plus our two error words):
- none: the message has no ARC header field;
- pass: the sets 1..N are complete, their ``cv=`` say none (i=1) then pass, the newest
  ARC-Message-Signature verifies and every ARC-Seal from N down to 1 verifies, each with an
  acceptable key (RSA, at least ``auth.dkim_min_key_bits``, at most ``auth.dkim_max_key_bits``);
- fail: anything else found wrong: more than :data:`MAX_SETS` sets, a field without a valid instance,
  a missing, duplicate or out-of-range member, a gap, the newest seal saying ``cv=fail`` (or no
  ``cv``), a ``cv`` out of sequence, a malformed seal or newest signature (missing or bad tag,
  ``a=`` other than rsa-sha256, ``h=`` on a seal, a signature covering ARC-Seal, ``t=`` in the
  future), a body hash or signature mismatch, and a missing, revoked, malformed, hostile (see
  :func:`mailpolicy.auth.dkim.rsa_key_problem`) or too small key;
- temperror: a key lookup failed (timeout, SERVFAIL) or the lookups went over their time budget,
  and nothing else made the chain fail (a failure found without DNS, or by another key, wins);
- permerror: not validated because of one of our limits (more than
  :data:`mailpolicy.auth.dkim.MAX_HEADER_FIELDS` header fields, a body larger than
  ``auth.max_message_bytes``) or an internal error (``reason`` says which). Never a pass.

On a pass, ``oldest_pass`` (the A-R ``header.oldest-pass``) is 0 when every older
ARC-Message-Signature verifies too, else the lowest instance k such that those of k..N all verify
(an older signature whose body hash is not computed, beyond :data:`MAX_BODY_HASHES`, or whose
lookup fails counts as not verifying)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import rsa
from dkim.canonicalization import InvalidCanonicalizationPolicyError
from dkim.crypto import DigestTooLargeError
from dkim.util import InvalidTagValueList

from mailpolicy import dns
from mailpolicy.auth import dkim, header
from mailpolicy.auth.base import MethodSpec
from mailpolicy.model import Stage

if TYPE_CHECKING:
    from mailpolicy.state import Transaction

log = logging.getLogger("mailpolicy.auth.arc")

ARC_SEAL = b"arc-seal"
ARC_MESSAGE_SIGNATURE = b"arc-message-signature"
ARC_AUTHENTICATION_RESULTS = b"arc-authentication-results"
_TITLES = {
    ARC_SEAL: "ARC-Seal",
    ARC_MESSAGE_SIGNATURE: "ARC-Message-Signature",
    ARC_AUTHENTICATION_RESULTS: "ARC-Authentication-Results",
}
MAX_SETS = 50  # RFC 8617 5.2 step 1
MAX_BODY_HASHES = 4
"""Distinct body hashes computed per message (the newest signature's first). Legitimate chains use
relaxed/relaxed without ``l=``: one hash for all their signatures."""
DNS_BUDGET = 3
"""All key lookups of one message together take at most this many lookup timeouts; beyond, a
lookup is a temperror (a chain of 50 sets could otherwise wait for 100 slow names in a row)."""
MAX_AAR_CHARS = 1000
MAX_REASON_CHARS = 200
ALGORITHM = b"rsa-sha256"  # the only algorithm RFC 8617 defines (dkimpy's ARC_HASH_ALGORITHMS)
_AMS_TAGS = (b"i", b"a", b"b", b"bh", b"d", b"h", b"s")
_AS_TAGS = (b"i", b"a", b"b", b"cv", b"d", b"s")
_CV = (b"none", b"pass", b"fail")
_MAX_INSTANCE_DIGITS = 5  # int() of a longer run is never needed (and a huge one is refused)
# On the relaxed value (no CR/LF, every run of blanks one space, stripped): linear.
_AAR_INSTANCE = re.compile(rb"i ?= ?([0-9]+) ?;")
_ARC_LINE = re.compile(rb"^arc-(?:seal|message-signature|authentication-results)[ \t]*:", re.I | re.M)


@dataclass
class ArcResult:
    result: str  # "none" | "pass" | "fail" | "temperror" | "permerror"
    instances: int = 0  # N, the highest instance seen (0 when none)
    sealers: list[str] = field(default_factory=list)  # ARC-Seal d= per instance, ascending, lower case
    oldest_pass: int | None = None  # header.oldest-pass; None unless result == "pass"
    reason: str = ""  # short (at most MAX_REASON_CHARS), printable
    aar: list[str] = field(default_factory=list)  # AAR text per instance ascending, only on pass
    remote_ip: str | None = None  # the client that handed the chain to us (A-R smtp.remote-ip)

    def record(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "instances": self.instances,
            "sealers": list(self.sealers),
            "oldest_pass": self.oldest_pass,
            "reason": self.reason,
        }


def _printable(text: str, limit: int) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _text(value: bytes, limit: int) -> str:
    return _printable(value[: limit * 4].decode("utf-8", "replace").strip(), limit)


# ---- fields and sets --------------------------------------------------------------------------


@dataclass
class _Field:
    kind: bytes  # one of the three lower-case names
    raw: tuple[bytes, bytes]  # (name, value) as stored
    canon: bytes  # relaxed "name:value\r\n" (RFC 6376 3.4.2)
    value: bytes  # the relaxed value, without the final CRLF
    instance: int | None = None
    tags: dict[bytes, bytes] | None = None  # AS / AMS
    problem: str = ""  # why there is no instance


def _instance(text: bytes | None) -> int | None:
    if text is None or not text.isdigit() or len(text) > _MAX_INSTANCE_DIGITS:
        return None
    return int(text)


def _parse_field(kind: bytes, raw: tuple[bytes, bytes]) -> _Field:
    name, value = dkim.relaxed_header(*raw)
    value = value[:-2]  # the relaxed value ends with CRLF
    f = _Field(kind, raw, name + b":" + value + b"\r\n", value)
    if kind == ARC_AUTHENTICATION_RESULTS:
        m = _AAR_INSTANCE.match(value)
        f.instance = _instance(m.group(1)) if m else None
        if f.instance is None:
            f.problem = "does not start with a valid i=N;"
        return f
    try:
        f.tags = dkim.parse_tag_value(value)
    except InvalidTagValueList as exc:
        f.problem = f"has an unparsable tag list ({type(exc).__name__})"
        return f
    f.instance = _instance(f.tags.get(b"i"))
    if f.instance is None:
        f.problem = "has no valid i= tag"
    return f


@dataclass
class _Set:
    aar: _Field
    ams: _Field
    seal: _Field


@dataclass
class _Ams:
    """One ARC-Message-Signature, checked at end of headers."""

    instance: int
    source: _Field
    tags: dict[bytes, bytes]
    problem: str = ""  # why it cannot verify, found without DNS
    relaxed_headers: bool = True
    include: list[bytes] = field(default_factory=list)
    body: dkim.BodyHash | None = None


def _check_fields(sig: dict[bytes, bytes], required: tuple[bytes, ...], now: float) -> None:
    """dkimpy's ``validate_signature_fields(sig, required, arc=True)`` (same checks, same order),
    linear; empty d= and s= are refused too (no key can be found for them). Raises
    :class:`mailpolicy.auth.dkim.SignatureError`."""
    for tag in required:
        if tag not in sig:
            raise dkim.SignatureError(f"missing {tag.decode()}=")
    alg = sig[b"a"]
    if alg != ALGORITHM:
        if alg == b"rsa-sha1":
            raise dkim.SignatureError("rsa-sha1 is not acceptable (RFC 8301, RFC 8617)")
        raise dkim.SignatureError("unknown signature algorithm")
    if not dkim.b64_shape(sig[b"b"]) or len(dkim.unspace(sig[b"b"])) % 4:
        raise dkim.SignatureError("b= value is not valid base64")
    if b"bh" in sig and len(dkim.unspace(sig[b"bh"])) % 4:
        raise dkim.SignatureError("bh= value is not valid base64")
    if b"cv" in sig and sig[b"cv"] not in _CV:
        raise dkim.SignatureError("cv= value is not valid")
    d = sig[b"d"]
    if not d:
        raise dkim.SignatureError("d= value is empty")
    if d.isascii() and dkim.DOMAIN_SPECIALS.search(d):
        raise dkim.SignatureError("d= value is not valid")
    if not sig[b"s"]:
        raise dkim.SignatureError("s= value is empty")
    if b"l" in sig and (not sig[b"l"].isdigit() or len(sig[b"l"]) > 76):
        raise dkim.SignatureError("l= value is not a decimal integer")
    if b"q" in sig and sig[b"q"] != b"dns/txt":
        raise dkim.SignatureError("q= value is not dns/txt")
    t_sign = None
    if b"t" in sig:
        if not sig[b"t"].isdigit():
            raise dkim.SignatureError("t= value is not a decimal integer")
        t_sign = int(sig[b"t"])
        if t_sign > now + dkim.TIME_SLOP:
            raise dkim.SignatureError("t= value is in the future")
    if b"v" in sig and sig[b"v"] != b"1":
        raise dkim.SignatureError("v= value is not 1")
    if b"x" in sig:
        if not sig[b"x"].isdigit():
            raise dkim.SignatureError("x= value is not a decimal integer")
        x_sign = int(sig[b"x"])
        if x_sign < now - dkim.TIME_SLOP:
            raise dkim.SignatureError("x= value is past")
        if t_sign and x_sign < t_sign:
            raise dkim.SignatureError("x= value is less than t= value")


@dataclass(frozen=True)
class _Key:
    outcome: str  # "ok" | "fail" | "temperror"
    reason: str = ""
    pk: Any = None
    fast: rsa.RSAPublicKey | None = None


# ---- the verifier -----------------------------------------------------------------------------


class Verifier:
    """ARC for one message: feed :meth:`header` for every field, :meth:`body` for every chunk, then
    :meth:`finish` once. Never raises."""

    def __init__(self, limits: dkim.Limits, now: Callable[[], float] = time.time):
        self.limits = limits
        self._now = now
        self.fields: list[tuple[bytes, bytes]] = []
        self.field_count = 0
        self.arc_count = 0  # ARC header fields seen, kept or not
        self._arc: list[tuple[bytes, int]] = []  # (kind, position in self.fields)
        self._started = False
        self._error = ""  # an internal error before finish()
        self._problem = ""  # a structural failure found at end of headers
        self._instances = 0
        self._sets: dict[int, _Set] = {}
        self._n = 0
        self._ams: dict[int, _Ams] = {}
        self._bodies = dkim.BodyHashes(limits.max_body_bytes)
        self._keys: dict[bytes, _Key] = {}
        self._deadline = 0.0
        self._result: ArcResult | None = None

    @property
    def too_many_fields(self) -> bool:
        return self.field_count > dkim.MAX_HEADER_FIELDS

    def header(self, name: bytes, value: bytes) -> None:
        """One header field, as :meth:`mailpolicy.auth.dkim.Verifier.header` takes it."""
        self.field_count += 1
        if self.field_count <= dkim.MAX_HEADER_FIELDS:
            self.fields.append((name, value))
        kind = name.lower()
        if kind in _TITLES:
            self.arc_count += 1
            if self.field_count <= dkim.MAX_HEADER_FIELDS and len(self._arc) <= 3 * MAX_SETS:
                self._arc.append((kind, len(self.fields) - 1))

    # -- end of headers: structure, field checks, body hashes ----------------------------------

    def _start_body(self) -> None:
        self._started = True
        if not self.arc_count or self.too_many_fields:
            return
        try:
            self._problem = self._prepare()
            if self._problem:
                self._bodies.hashes.clear()  # decided: nothing to hash
        except Exception as exc:  # never let a library bug escape
            log.warning("arc preparation raised %s: %s", type(exc).__name__, exc)
            self._error = f"internal error: {type(exc).__name__}"
            self._bodies.hashes.clear()

    def _prepare(self) -> str:
        """Parse the ARC fields; the reason the chain fails without DNS, or ""."""
        parsed = [_parse_field(kind, self.fields[pos]) for kind, pos in self._arc]
        self._instances = max((f.instance for f in parsed if f.instance is not None), default=0)
        members: dict[int, dict[bytes, _Field]] = {}
        problem = ""
        for f in parsed:
            if f.instance is None:
                problem = problem or f"{_TITLES[f.kind]} {f.problem}"
                continue
            if not 1 <= f.instance <= MAX_SETS:
                problem = problem or (
                    f"more than {MAX_SETS} ARC sets"
                    if f.instance > MAX_SETS
                    else f"{_TITLES[f.kind]} has instance i={f.instance}"
                )
                continue
            group = members.setdefault(f.instance, {})
            if f.kind in group:
                problem = problem or f"duplicate {_TITLES[f.kind]} for instance {f.instance}"
                continue
            group[f.kind] = f
        if self.arc_count > 3 * MAX_SETS:
            problem = problem or f"more than {MAX_SETS} ARC sets"
        # The complete sets from 1 up (for the sealers reported, whatever the outcome).
        k = 1
        while (complete := members.get(k)) is not None and len(complete) == 3:
            self._sets[k] = _Set(
                complete[ARC_AUTHENTICATION_RESULTS], complete[ARC_MESSAGE_SIGNATURE], complete[ARC_SEAL]
            )
            k += 1
        if problem:
            return problem
        if not members:
            return "no ARC set with a valid instance"
        n = self._n = max(members)
        for k in range(1, n + 1):
            group = members.get(k, {})
            if not group:
                return f"ARC set {k} is missing"
            for kind in (ARC_AUTHENTICATION_RESULTS, ARC_MESSAGE_SIGNATURE, ARC_SEAL):
                if kind not in group:
                    return f"ARC set {k} has no {_TITLES[kind]}"
        # Chain validation status (RFC 8617 5.2 steps 2 and 3).
        newest_cv = (self._sets[n].seal.tags or {}).get(b"cv", b"")
        if newest_cv == b"fail" or not newest_cv:
            return f"newest ARC-Seal (i={n}) says cv={newest_cv.decode('ascii', 'replace') or '(none)'}"
        for k in range(n, 0, -1):
            cv = (self._sets[k].seal.tags or {}).get(b"cv", b"")
            want = b"none" if k == 1 else b"pass"
            if cv != want:
                shown = cv[:20].decode("ascii", "replace")
                return f"ARC-Seal i={k} says cv={shown or '(none)'}, not {want.decode()}"
        now = self._now()
        for k in range(n, 0, -1):
            tags = self._sets[k].seal.tags or {}
            try:
                _check_fields(tags, _AS_TAGS, now)
            except dkim.SignatureError as exc:
                return f"ARC-Seal i={k}: {exc}"
            if b"h" in tags:
                return f"ARC-Seal i={k}: h= tag not permitted"
        for k in range(n, 0, -1):
            self._ams[k] = self._prepare_ams(k, now)
        return f"ARC-Message-Signature i={n}: {self._ams[n].problem}" if self._ams[n].problem else ""

    def _prepare_ams(self, k: int, now: float) -> _Ams:
        f = self._sets[k].ams
        ams = _Ams(k, f, f.tags or {})
        tags = ams.tags
        try:
            _check_fields(tags, _AMS_TAGS, now)
            try:
                relaxed_headers, relaxed_body = dkim.canonicalization(tags.get(b"c", b"relaxed/relaxed"))
            except InvalidCanonicalizationPolicyError:
                raise dkim.SignatureError("invalid c= value") from None
        except dkim.SignatureError as exc:
            ams.problem = str(exc)
            return ams
        ams.include = [x.strip().lower() for x in tags[b"h"].split(b":")]
        if ARC_SEAL in ams.include:
            ams.problem = "h= includes ARC-Seal"
            return ams
        ams.relaxed_headers = relaxed_headers
        limit = int(tags[b"l"]) if b"l" in tags else None
        key = (relaxed_body, limit)
        ams.body = self._bodies.get(
            key, lambda: dkim.BodyHash(relaxed_body, hashlib.sha256, limit), MAX_BODY_HASHES
        )
        return ams

    # -- body ----------------------------------------------------------------------------------

    def body(self, chunk: bytes) -> None:
        if not self._started:
            self._start_body()
        try:
            self._bodies.update(chunk)
        except Exception as exc:  # never let a library bug escape
            self._error = f"internal error: {type(exc).__name__}"
            self._bodies.hashes.clear()

    # -- end of message --------------------------------------------------------------------------

    def finish(self) -> ArcResult:
        if self._result is not None:
            return self._result
        try:
            res = self._finish()
        except Exception as exc:  # never let a library bug escape
            log.warning("arc verification raised %s: %s", type(exc).__name__, exc)
            res = self._outcome("permerror", f"internal error: {type(exc).__name__}")
        self._result = res
        return res

    def _outcome(self, result: str, reason: str = "") -> ArcResult:
        sealers = []
        for k in sorted(self._sets):
            d = (self._sets[k].seal.tags or {}).get(b"d")
            if d is None:
                break
            sealers.append(_text(d, 253).lower())
        return ArcResult(result, self._instances, sealers, reason=_printable(reason, MAX_REASON_CHARS))

    def _finish(self) -> ArcResult:
        if not self._started:
            self._start_body()
        if not self.arc_count:
            return ArcResult("none")
        if self.too_many_fields:
            return self._outcome("permerror", f"more than {dkim.MAX_HEADER_FIELDS} header fields")
        if self._error:
            return self._outcome("permerror", self._error)
        if self._problem:
            return self._outcome("fail", self._problem)
        if self._bodies.truncated:
            return self._outcome("permerror", "message larger than auth.max_message_bytes")
        n = self._n
        newest = self._ams[n]
        problem = self._body_problem(newest)
        if problem:
            return self._outcome("fail", f"ARC-Message-Signature i={n}: {problem}")
        # With DNS: the newest signature, then every seal from N down; a failure decides at once,
        # a lookup failure only when nothing fails.
        self._deadline = time.monotonic() + DNS_BUDGET * self.limits.timeout
        index: dict[bytes, list[int]] = {}
        for i, (name, _value) in enumerate(self.fields):
            index.setdefault(name.lower(), []).append(i)
        temporary = ""
        outcome, why = self._verify_ams(newest, index)
        if outcome == "fail":
            return self._outcome("fail", f"ARC-Message-Signature i={n}: {why}")
        if outcome == "temperror":
            temporary = f"ARC-Message-Signature i={n}: {why}"
        for k, digest in sorted(self._seal_hashes().items(), reverse=True):
            outcome, why = self._verify_rsa(self._sets[k].seal.tags or {}, digest)
            if outcome == "fail":
                return self._outcome("fail", f"ARC-Seal i={k}: {why}")
            if outcome == "temperror" and not temporary:
                temporary = f"ARC-Seal i={k}: {why}"
        if temporary:
            return self._outcome("temperror", temporary)
        res = self._outcome("pass")
        res.oldest_pass = 0
        for k in range(n - 1, 0, -1):
            ams = self._ams[k]
            if self._body_problem(ams) or self._verify_ams(ams, index)[0] != "pass":
                res.oldest_pass = k + 1
                break
        for k in range(1, n + 1):
            aar = self._sets[k].aar.value
            m = _AAR_INSTANCE.match(aar)
            res.aar.append(_text(aar[m.end() if m else 0 :], MAX_AAR_CHARS))
        return res

    def _body_problem(self, ams: _Ams) -> str:
        if ams.problem:
            return ams.problem
        if ams.body is None:
            return f"body hash not computed (more than {MAX_BODY_HASHES} kinds)"
        try:
            expected = base64.b64decode(dkim.unspace(ams.tags[b"bh"]))
        except (binascii.Error, ValueError):
            return "bh= value is not valid base64"
        if ams.body.digest() != expected:
            return "body hash mismatch"
        return ""

    def _verify_ams(self, ams: _Ams, index: dict[bytes, list[int]]) -> tuple[str, str]:
        """The header hash and signature of a signature whose body hash matched."""
        include = list(ams.include)
        if b"from" in include:  # as dkimpy (bug 644046): an extra From field must be signed too
            include.append(b"from")
        h = dkim.header_hash(hashlib.sha256, ams.relaxed_headers, self.fields, index, include, ams.source.raw)
        return self._verify_rsa(ams.tags, h)

    def _seal_hashes(self) -> dict[int, Any]:
        """The header hash of every seal (RFC 8617 5.1.1): the relaxed AAR, AMS and AS of each
        instance below it, in ascending order, then its own AAR, AMS, and itself without its ``b=``
        value and final CRLF. One running hash, copied at each instance: linear."""
        running = hashlib.sha256()
        out: dict[int, Any] = {}
        for k in range(1, self._n + 1):
            s = self._sets[k]
            running.update(s.aar.canon)
            running.update(s.ams.canon)
            h = running.copy()
            name, value = dkim.relaxed_header(s.seal.raw[0], dkim.strip_b_value(b" " + s.seal.raw[1]))
            h.update(name + b":" + value.rstrip())
            out[k] = h
            running.update(s.seal.canon)
        return out

    def _verify_rsa(self, tags: dict[bytes, bytes], digest: Any) -> tuple[str, str]:
        key = self._key(tags[b"s"] + b"._domainkey." + tags[b"d"])
        if key.outcome != "ok":
            return key.outcome, key.reason
        try:
            signature = base64.b64decode(dkim.unspace(tags[b"b"]))
        except (binascii.Error, ValueError):
            return "fail", "b= value is not valid base64"
        try:
            ok = dkim.rsa_verify(digest, signature, key.pk, key.fast)
        except DigestTooLargeError:
            return "fail", "digest too large for modulus"
        return ("pass", "") if ok else ("fail", "signature did not verify")

    def _key(self, name: bytes) -> _Key:
        hit = self._keys.get(name)
        if hit is None:
            hit = self._keys[name] = self._fetch_key(name)
        return hit

    def _fetch_key(self, name: bytes) -> _Key:
        """The key at ``name``, checked as the DKIM verifier checks keys (same caches, same limits),
        or why it cannot be used."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            return _Key("temperror", "key lookups over their time budget")
        ans = dns.get().query(name, "TXT", timeout=min(self.limits.timeout, remaining))
        if ans.failed:
            return _Key("temperror", f"key lookup {ans.outcome}")
        txt = ans.txt()
        if not txt:
            return _Key("fail", "no key for signature")
        try:
            record = dkim.key_record(txt[0])
        except Exception:
            return _Key("fail", "malformed key record")
        if record.revoked:
            return _Key("fail", "key revoked")
        if not record.for_email:
            return _Key("fail", "key not for email (s=)")
        if record.key_type != b"rsa":
            return _Key("fail", f"key type {_text(record.key_type, 20)} does not match a=rsa-sha256")
        if record.hashes is not None and b"sha256" not in record.hashes:
            return _Key("fail", "hash algorithm not allowed by key h=")
        max_bits = self.limits.max_key_bits
        if record.data_len > max_bits // 4 + 200:  # as dkim: refused before parsing
            return _Key("fail", f"key too large (over {max_bits} bits)")
        try:
            pk, keysize, ktag, fast = dkim.public_key(name, record.record)
        except Exception as exc:
            return _Key("fail", f"bad key: {exc}")
        if pk is None or ktag != b"rsa":
            return _Key("fail", "unusable key")
        problem = dkim.rsa_key_problem(pk, max_bits)
        if problem is not None:
            return _Key("fail", problem)
        bits = int(keysize)
        if bits < self.limits.min_key_bits:
            return _Key("fail", f"key too small ({bits} bits)")
        return _Key("ok", pk=pk, fast=fast)


# ---- whole messages (tests, corpora, tools) --------------------------------------------------


def verify(message: bytes, limits: dkim.Limits | None = None, chunk: int = 65535) -> ArcResult:
    """Validate the ARC chain of a whole message through the streaming verifier (in MTA-sized body
    chunks). Never raises."""
    parsed = dkim.split_message(message)
    if parsed is None:
        head = re.split(rb"\r?\n\r?\n", message, maxsplit=1)[0]
        if _ARC_LINE.search(head):
            return ArcResult("permerror", reason="unparsable message")
        return ArcResult("none")
    v = Verifier(limits or dkim.Limits())
    fields, body = parsed
    for name, value in fields:
        v.header(name, value)
    for start in range(0, len(body), chunk):
        v.body(body[start : start + chunk])
    return v.finish()


# ---- the method --------------------------------------------------------------------------------


def _feed(txn: Transaction) -> Verifier:
    return Verifier(dkim.limits_of(txn.setup.config))


def _run(txn: Transaction) -> ArcResult:
    assert txn.auth is not None
    feed = txn.auth.feeds.get("arc")
    res = feed.finish() if isinstance(feed, Verifier) else ArcResult("permerror", reason="no verifier")
    res.remote_ip = txn.conn.client_ip_text if txn.conn.client_ip is not None else None
    return res


def _clauses(res: ArcResult, note: str | None) -> list[str]:
    sets = f"{res.instances} set{'s' if res.instances != 1 else ''}" if res.instances else None
    comment = f"{sets}; {note}" if sets and note else sets or note or None
    props = [("smtp.remote-ip", res.remote_ip or "")]
    if res.result == "pass" and res.oldest_pass is not None:
        props.insert(0, ("header.oldest-pass", str(res.oldest_pass)))
    reason = res.reason if res.result not in ("pass", "none") else None
    return [header.resinfo("arc", res.result, comment, reason, props)]


METHOD = MethodSpec(
    name="arc",
    stage=Stage.EOM,
    run=_run,
    results=("pass", "fail", "none", "temperror", "permerror"),
    words=lambda res: (res.result,),
    clauses=_clauses,
    record=lambda res: res.record(),
    unavailable=lambda why: ArcResult("temperror", reason=why),
    feed=_feed,
)
