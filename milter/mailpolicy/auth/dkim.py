"""DKIM verification (RFC 6376, RFC 8301, RFC 8463) with dkimpy, mapped to RFC 8601 results.

dkimpy's ``verify()`` only says True/False; here each signature is verified in steps so that every
outcome is a defined result:

- pass: the signature verifies with an acceptable key;
- fail: body hash or signature mismatch;
- policy: the signature verifies but is not acceptable (RFC 8301: rsa-sha1, or an RSA key shorter
  than ``auth.dkim_min_key_bits``);
- neutral: not verified because the message was larger than ``auth.max_message_bytes``;
- temperror: the key lookup failed (timeout, SERVFAIL);
- permerror: malformed or expired signature, unknown algorithm, missing/revoked/malformed key,
  key type not matching ``a=``, or any other library exception.
Signatures beyond ``auth.dkim_max_signatures`` are not verified (counted in a metric)."""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import dkim as dkimpy
import dkim.crypto
from dkim.util import parse_tag_value

from mailpolicy import dns, metrics
from mailpolicy.auth import DkimResult

log = logging.getLogger("mailpolicy.auth.dkim")

_SIG_RE = re.compile(rb"^dkim-signature$", re.I)


# dkimpy's RSA verification converts between byte strings and integers one byte at a time in
# Python (dkim.crypto.str2int/int2str, three calls of 256 steps per RSA-2048 signature). These are
# the same functions on int.from_bytes/int.to_bytes, installed once into dkim.crypto (whose
# RSASSA functions look them up as module globals).
def _str2int(s: bytes | bytearray) -> int:
    """dkim.crypto.str2int: a big-endian byte string as a non-negative integer."""
    return int.from_bytes(bytearray(s), "big")


def _int2str(n: int, length: int = -1) -> bytearray:
    """dkim.crypto.int2str: big-endian bytes of ``n``; with ``length`` exactly that many bytes
    (dkimpy keeps the low-order ``length`` bytes when ``n`` is larger)."""
    assert n >= 0
    if length < 0:
        return bytearray(n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big"))
    return bytearray((n & ((1 << (8 * length)) - 1)).to_bytes(length, "big"))


dkim.crypto.str2int = _str2int
dkim.crypto.int2str = _int2str


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip() or None


def _rough_tags(raw: bytes) -> dict[bytes, bytes]:
    """Best-effort tag=value parse of a signature that dkimpy refused (for reporting d=/s=/a=)."""
    try:
        return dict(parse_tag_value(raw))
    except Exception:
        out: dict[bytes, bytes] = {}
        for part in raw.split(b";"):
            k, eq, v = part.partition(b"=")
            if eq:
                out.setdefault(k.strip(), re.sub(rb"\s+", b"", v))
        return out


def _base(tags: dict[bytes, bytes], result: str, reason: str) -> DkimResult:
    b = _text(re.sub(rb"\s+", b"", tags.get(b"b", b"")))
    return DkimResult(
        result=result,
        domain=(_text(tags.get(b"d")) or "").lower() or None,
        selector=_text(tags.get(b"s")),
        algorithm=(_text(tags.get(b"a")) or "").lower() or None,
        b=b[:8] if b else None,
        reason=reason[:200],
    )


def _signature_headers(message: bytes) -> list[bytes]:
    """Raw values of the DKIM-Signature fields, for messages dkimpy cannot parse."""
    head = message.split(b"\r\n\r\n", 1)[0]
    out: list[bytes] = []
    for m in re.finditer(rb"^dkim-signature[ \t]*:(.*(?:\r\n[ \t].*)*)", head, re.I | re.M):
        out.append(m.group(1).replace(b"\r\n", b""))
    return out


def verify(
    message: bytes, max_signatures: int, min_key_bits: int, timeout: float, truncated: bool = False
) -> list[DkimResult]:
    """Verify every DKIM signature of ``message`` (CRLF line ends) up to the cap. Never raises."""
    if b"dkim-signature" not in message.lower():
        # No field can be a signature, whether dkimpy parses the message or not: skip the parse.
        return []
    try:
        d = dkimpy.DKIM(message, minkey=min_key_bits, timeout=timeout)
        sigs = [v for k, v in d.headers if _SIG_RE.match(k)]
    except Exception as exc:
        raw = _signature_headers(message)
        return [
            _base(_rough_tags(v), "permerror", f"unparsable message: {exc}") for v in raw[:max_signatures]
        ]
    if len(sigs) > max_signatures:
        metrics.DKIM_SKIPPED.inc(len(sigs) - max_signatures)
    results = []
    for idx in range(min(len(sigs), max_signatures)):
        try:
            results.append(_verify_one(d, idx, sigs[idx], timeout, truncated))
        except Exception as exc:  # never let a library bug escape
            log.warning("dkim verification raised %s: %s", type(exc).__name__, exc)
            results.append(_base(_rough_tags(sigs[idx]), "permerror", f"internal error: {exc}"))
    return results


@dataclass(frozen=True)
class _KeyRecord:
    """What a key record's text says, parsed once (a pure function of the text)."""

    revoked: bool
    for_email: bool
    strict: bool  # t=s
    hashes: tuple[bytes, ...] | None  # h=, lower case; None when absent
    record: bytes  # what dkimpy's evaluate_pk is given (s= left out)


_CACHE_SIZE = 1024
_records: OrderedDict[bytes, _KeyRecord] = OrderedDict()
_keys: OrderedDict[bytes, tuple[Any, Any, Any, Any]] = OrderedDict()
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


def _key_record(txt: bytes) -> _KeyRecord:
    """Parse a key record (raises on a malformed one, which is never cached). Cached by its text:
    the DNS answer itself stays TTL-bound in the resolver cache, a changed record is a new entry."""
    hit: _KeyRecord | None = _cached(_records, txt)
    if hit is not None:
        return hit
    tags = dict(parse_tag_value(txt))
    services = [x.strip().lower() for x in tags.get(b"s", b"*").split(b":")]
    flags = [x.strip().lower() for x in tags.get(b"t", b"").split(b":")]
    hashes = tags.get(b"h")
    rec = _KeyRecord(
        revoked=tags.get(b"p", b"x").strip() == b"",
        for_email=b"*" in services or b"email" in services,
        strict=b"s" in flags,
        hashes=None if hashes is None else tuple(h.strip().lower() for h in hashes.split(b":")),
        # dkimpy compares s= as a whole string; it was checked as RFC 6376 3.6.1 says.
        record=b"; ".join(k + b"=" + v for k, v in tags.items() if k != b"s"),
    )
    _remember(_records, txt, rec)
    return rec


def _public_key(name: bytes, record: bytes) -> tuple[Any, Any, Any, Any]:
    """dkimpy's ``evaluate_pk`` (ASN.1 parse of the key), cached by record text. Only successes
    are cached: a failing record raises again each time, with the same message."""
    hit: tuple[Any, Any, Any, Any] | None = _cached(_keys, record)
    if hit is not None:
        return hit
    value = tuple(dkimpy.evaluate_pk(name, record))
    assert len(value) == 4
    _remember(_keys, record, value)
    return value


def _verify_one(d: Any, idx: int, raw: bytes, timeout: float, truncated: bool) -> DkimResult:
    try:
        prep = d.verify_headerprep(idx)
    except dkimpy.DKIMException as exc:
        return _base(_rough_tags(raw), "permerror", str(exc))
    sig, include_headers, sigheaders = prep
    res = _base(sig, "permerror", "")
    alg = res.algorithm or ""
    name = sig[b"s"] + b"._domainkey." + sig[b"d"]
    if truncated:
        res.result, res.reason = "neutral", "message larger than auth.max_message_bytes"
        return res
    ans = dns.get().query(name, "TXT", timeout=timeout)
    if ans.failed:
        res.result, res.reason = "temperror", f"key lookup {ans.outcome}"
        return res
    txt = ans.txt()
    if not txt:
        res.reason = "no key for signature"
        return res
    try:
        key = _key_record(txt[0])
    except Exception:
        res.reason = "malformed key record"
        return res
    if key.revoked:
        res.reason = "key revoked"
        return res
    if not key.for_email:
        res.reason = "key not for email (s=)"
        return res
    auid = sig.get(b"i")
    if key.strict and auid is not None and auid.rpartition(b"@")[2].lower() != sig[b"d"].lower():
        res.reason = "key t=s requires i= domain equal to d="
        return res
    try:
        d.pk, d.keysize, d.ktag, d.seqtlsrpt = _public_key(name, key.record)
    except Exception as exc:
        res.reason = f"bad key: {exc}"
        return res
    if d.pk is None or d.ktag is None:
        res.reason = "unusable key"
        return res
    res.bits = int(d.keysize) if d.keysize else None
    ktag = d.ktag.decode() if isinstance(d.ktag, bytes) else str(d.ktag)
    if alg.split("-", 1)[0] != ktag:
        res.reason = f"key type {ktag} does not match a={alg}"
        return res
    if key.hashes is not None and alg.split("-")[-1].encode() not in key.hashes:
        res.reason = "hash algorithm not allowed by key h="
        return res
    try:
        ok = d.verify_sig_process(sig, include_headers, sigheaders[idx], dns.dkim_dnsfunc)
    except dkimpy.KeyFormatError as exc:
        if "too small" in str(exc):
            res.result, res.reason = "policy", f"key too small ({res.bits} bits)"
        else:
            res.reason = str(exc)
        return res
    except dkimpy.ValidationError as exc:
        if "body hash mismatch" in str(exc):
            res.result, res.reason = "fail", "body hash mismatch"
        else:
            res.reason = str(exc)
        return res
    except dkimpy.DKIMException as exc:
        res.reason = str(exc)
        return res
    if not ok:
        res.result, res.reason = "fail", "signature did not verify"
    elif alg == "rsa-sha1":
        res.result, res.reason = "policy", "rsa-sha1 is not acceptable (RFC 8301)"
    else:
        res.result, res.reason = "pass", ""
    return res


def message_bytes(headers: list[tuple[str, str]], body: bytes | bytearray, leadspc: bool) -> bytes:
    """The message as received, for DKIM. Header values come from pymilter as str decoded with
    surrogateescape (the original bytes are recovered); folded lines arrive with LF or CRLF and are
    rebuilt with CRLF. Without ``P_HDR_LEADSPC`` the MTA stripped the space after the colon: it is
    put back (exact for the usual ``Name: value`` form; relaxed canonicalization never cares)."""
    out = bytearray()
    for name, value in headers:
        v = value.encode("utf-8", "surrogateescape").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        out += name.encode("utf-8", "surrogateescape") + b":" + (v if leadspc else b" " + v) + b"\r\n"
    out += b"\r\n"
    out += body
    return bytes(out)
