"""Unit tests for mailpolicy.auth.dkim: every outcome is a defined RFC 8601 result."""

from __future__ import annotations

import base64
import random
import subprocess

import dkim as dkimpy
import dkim.crypto as dkim_crypto
import pytest

from mailpolicy import metrics
from mailpolicy.auth import dkim
from support import dkimkeys
from support.dnsserver import DnsServer


def signed(domain: str = "example.org", selector: str = "sel", key: dkimkeys.Key | None = None) -> bytes:
    return dkimkeys.sign(dkimkeys.message(), domain, selector, key or dkimkeys.rsa_key())


def verify(msg: bytes, **kw: object) -> list[tuple[str, str]]:
    args: dict[str, object] = {"max_signatures": 5, "min_key_bits": 1024, "timeout": 0.3}
    args.update(kw)
    return [(r.result, r.reason) for r in dkim.verify(msg, **args)]  # type: ignore[arg-type]


def test_rsa_and_ed25519_pass(dns: DnsServer) -> None:
    dns.add("sel._domainkey.example.org", "TXT", dkimkeys.rsa_key().record)
    dns.add("ed._domainkey.example.org", "TXT", dkimkeys.ed25519_key().record)
    msg = dkimkeys.sign(signed(), "example.org", "ed", dkimkeys.ed25519_key())
    res = dkim.verify(msg, 5, 1024, 0.3)
    assert [(r.result, r.algorithm, r.bits, r.domain, r.selector) for r in res] == [
        ("pass", "ed25519-sha256", 256, "example.org", "ed"),
        ("pass", "rsa-sha256", 2048, "example.org", "sel"),
    ]
    assert all(r.b and len(r.b) == 8 for r in res)


def test_tampered_body_and_header_fail(dns: DnsServer) -> None:
    dns.add("sel._domainkey.example.org", "TXT", dkimkeys.rsa_key().record)
    msg = signed()
    assert verify(msg.replace(b"This is a test.", b"This is a tesT.")) == [("fail", "body hash mismatch")]
    assert verify(msg.replace(b"Subject: test", b"Subject: tesT")) == [("fail", "signature did not verify")]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (None, "no key for signature"),
        ("v=DKIM1; k=rsa; p=", "key revoked"),
        ("v=DKIM1; k=rsa; p=bm90IGEga2V5", "bad key"),
        ("v=DKIM1; k=rsa; p", "malformed key record"),
        ("v=DKIM1; k=ed25519; p=" + base64.b64encode(b"x" * 32).decode(), "key type ed25519 does not match"),
        ("v=DKIM1; s=chat; p=AAAA", "key not for email"),
    ],
)
def test_key_problems_are_permerror(dns: DnsServer, record: str | None, reason: str) -> None:
    if record is not None:
        dns.add("sel._domainkey.example.org", "TXT", record)
    [(result, why)] = verify(signed())
    assert result == "permerror" and why.startswith(reason)


def test_key_hash_restriction_and_strict_flag(dns: DnsServer) -> None:
    rsa = dkimkeys.rsa_key()
    dns.add("sel._domainkey.example.org", "TXT", rsa.record.replace("h=sha256", "h=sha1"))
    assert verify(signed()) == [("permerror", "hash algorithm not allowed by key h=")]
    dns.clear()
    dns.add("sel._domainkey.example.org", "TXT", rsa.record + "; t=s")
    msg = dkimkeys.sign(dkimkeys.message(), "example.org", "sel", rsa, identity=b"a@mail.example.org")
    assert verify(msg) == [("permerror", "key t=s requires i= domain equal to d=")]


@pytest.mark.parametrize("how", ["timeout", "servfail"])
def test_key_lookup_failure_is_temperror(dns: DnsServer, how: str) -> None:
    getattr(dns, how)("sel._domainkey.example.org")
    assert verify(signed()) == [("temperror", f"key lookup {how}")]


def test_weak_rsa_key_and_rsa_sha1_are_policy(dns: DnsServer) -> None:
    small = subprocess.run(
        ["openssl", "genrsa", "768"], check=True, capture_output=True
    ).stdout  # 768-bit: RFC 8301 says at least 1024
    pub = subprocess.run(
        ["openssl", "rsa", "-pubout", "-outform", "DER"], input=small, check=True, capture_output=True
    ).stdout
    dns.add("weak._domainkey.example.org", "TXT", "v=DKIM1; p=" + base64.b64encode(pub).decode())
    weak = dkimkeys.Key(small, "", b"rsa-sha256")
    assert verify(dkimkeys.sign(dkimkeys.message(), "example.org", "weak", weak)) == [
        ("policy", "key too small (768 bits)")
    ]
    dns.add("sel._domainkey.example.org", "TXT", dkimkeys.rsa_key().record.replace("h=sha256; ", ""))
    sha1 = dkimkeys.Key(dkimkeys.rsa_key().private, "", b"rsa-sha1")
    assert verify(dkimkeys.sign(dkimkeys.message(), "example.org", "sel", sha1)) == [
        ("policy", "rsa-sha1 is not acceptable (RFC 8301)")
    ]


def test_signature_problems_are_permerror(dns: DnsServer) -> None:
    dns.add("sel._domainkey.example.org", "TXT", dkimkeys.rsa_key().record)
    msg = signed()
    assert verify(msg.replace(b"v=1;", b"v=2;", 1))[0][0] == "permerror"
    assert verify(msg.replace(b"a=rsa-sha256", b"a=rsa-md5", 1))[0][0] == "permerror"
    broken = b"DKIM-Signature: v=1; d=example.org; s=sel; b=\r\n" + dkimkeys.message()
    [(result, _)] = verify(broken)
    assert result == "permerror"


def test_truncated_message_is_neutral(dns: DnsServer) -> None:
    dns.add("sel._domainkey.example.org", "TXT", dkimkeys.rsa_key().record)
    assert verify(signed(), truncated=True) == [("neutral", "message larger than auth.max_message_bytes")]


def test_signature_cap(dns: DnsServer) -> None:
    dns.add("sel._domainkey.example.org", "TXT", dkimkeys.rsa_key().record)
    msg = signed()
    for _ in range(3):
        msg = dkimkeys.sign(msg, "example.org", "sel", dkimkeys.rsa_key())
    before = metrics.DKIM_SKIPPED._value.get()
    assert [r for r, _ in verify(msg, max_signatures=2)] == ["pass", "pass"]
    assert metrics.DKIM_SKIPPED._value.get() == before + 2


def test_unsigned_message_has_no_results(dns: DnsServer) -> None:
    assert verify(dkimkeys.message()) == []


def test_unparsable_message_reports_permerror(dns: DnsServer) -> None:
    msg = b"DKIM-Signature: v=1; d=example.org; s=sel; b=abc\r\nBroken header line\r\n\r\nbody\r\n"
    res = dkim.verify(msg, 5, 1024, 0.3)
    assert [(r.result, r.domain, r.selector) for r in res] == [("permerror", "example.org", "sel")]


def test_library_exception_is_a_defined_result(dns: DnsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    dns.add("sel._domainkey.example.org", "TXT", dkimkeys.rsa_key().record)

    def boom(*a: object) -> bool:
        raise IndexError("library bug")

    monkeypatch.setattr(dkimpy.DKIM, "verify_sig_process", boom)
    [(result, why)] = verify(signed())
    assert result == "permerror" and "library bug" in why


def test_message_bytes_as_received() -> None:
    headers = [("From", " a@example.org"), ("Subject", " folded\n\tline"), ("X", "\tx")]
    assert dkim.message_bytes(headers, b"body\r\n", leadspc=True) == (
        b"From: a@example.org\r\nSubject: folded\r\n\tline\r\nX:\tx\r\n\r\nbody\r\n"
    )
    headers = [("From", "a@example.org"), ("Subject", "folded\r\n line")]
    assert dkim.message_bytes(headers, b"", leadspc=False) == (
        b"From: a@example.org\r\nSubject: folded\r\n line\r\n\r\n"
    )
    raw = "caf\udcc3\udca9"  # pymilter's surrogateescape decoding of b"caf\xc3\xa9"
    assert dkim.message_bytes([("S", raw)], b"", leadspc=True) == b"S:caf\xc3\xa9\r\n\r\n"


def test_key_cache_gives_the_same_verdicts(dns: DnsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsed keys are cached by record text: the second message is verified without parsing the
    key again, with the same result, for RSA and Ed25519."""
    dkim.clear_key_cache()
    calls: list[bytes] = []
    real = dkimpy.evaluate_pk

    def counting(name: bytes, record: bytes) -> object:
        calls.append(record)
        return real(name, record)

    monkeypatch.setattr(dkimpy, "evaluate_pk", counting)
    dns.add("sel._domainkey.example.org", "TXT", dkimkeys.rsa_key().record)
    dns.add("ed._domainkey.example.org", "TXT", dkimkeys.ed25519_key().record)
    msg = dkimkeys.sign(signed(), "example.org", "ed", dkimkeys.ed25519_key())
    first = [(r.result, r.bits, r.reason) for r in dkim.verify(msg, 5, 1024, 0.3)]
    assert first == [("pass", 256, ""), ("pass", 2048, "")]
    assert len(calls) == 2
    for _ in range(3):
        assert [(r.result, r.bits, r.reason) for r in dkim.verify(msg, 5, 1024, 0.3)] == first
    assert len(calls) == 2
    tampered = msg.replace(b"Subject: test", b"Subject: tesT")
    assert verify(tampered) == [("fail", "signature did not verify")] * 2
    assert len(calls) == 2


def test_key_cache_follows_a_changed_record(dns: DnsServer) -> None:
    """A new record text (key rotated, revoked, restricted, broken) is a new cache entry: verdicts
    follow the record the resolver returns now."""
    dkim.clear_key_cache()
    rsa = dkimkeys.rsa_key()
    name = "sel._domainkey.example.org"
    msg = signed()

    def publish(record: str) -> None:
        dns.clear()
        dns.add(name, "TXT", record)

    publish(rsa.record)
    assert verify(msg) == [("pass", "")]
    publish(dkimkeys.rsa_key(1024).record)  # another key under the same name
    assert verify(msg) == [("fail", "signature did not verify")]
    publish(rsa.record.replace("h=sha256", "h=sha1"))
    assert verify(msg) == [("permerror", "hash algorithm not allowed by key h=")]
    publish("v=DKIM1; k=rsa; p=")
    assert verify(msg) == [("permerror", "key revoked")]
    publish("v=DKIM1; k=rsa; p=bm90IGEga2V5")
    [(result, why)] = verify(msg)
    assert result == "permerror" and why.startswith("bad key")
    [(result, why2)] = verify(msg)  # failures are not cached: the same reason again
    assert why2 == why
    publish(rsa.record)
    assert verify(msg) == [("pass", "")]


def test_key_cache_is_bounded(dns: DnsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    dkim.clear_key_cache()
    monkeypatch.setattr(dkim, "_CACHE_SIZE", 2)
    rsa = dkimkeys.rsa_key()
    for extra in ("", "; n=1", "; n=2", "; n=3"):
        dns.clear()
        dns.add("sel._domainkey.example.org", "TXT", rsa.record + extra)
        assert verify(signed()) == [("pass", "")]
    assert len(dkim._records) == 2 and len(dkim._keys) == 2


def test_fast_int_conversions_match_dkimpy() -> None:
    """The from_bytes/to_bytes versions installed into dkim.crypto behave as dkimpy's loops."""

    def str2int(s: bytes) -> int:
        r = 0
        for c in bytearray(s):
            r = (r << 8) | c
        return r

    def int2str(n: int, length: int = -1) -> bytearray:
        r = bytearray()
        while length < 0 or len(r) < length:
            r.append(n & 0xFF)
            n >>= 8
            if length < 0 and n == 0:
                break
        r.reverse()
        return r

    assert dkim_crypto.int2str is dkim._int2str and dkim_crypto.str2int is dkim._str2int
    rng = random.Random(8301)
    for bits in (0, 1, 7, 8, 9, 255, 1024, 2047, 2048, 4096):
        n = rng.getrandbits(bits) if bits else 0
        for length in (-1, 0, 1, 2, 128, 256, 257, 512):
            assert dkim._int2str(n, length) == int2str(n, length)
            assert type(dkim._int2str(n, length)) is bytearray
    for size in (0, 1, 2, 255, 256, 512):
        b = rng.randbytes(size)
        assert dkim._str2int(b) == str2int(b) == dkim._str2int(bytearray(b))


def test_message_without_signature_field_is_not_parsed(
    dns: DnsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No "dkim-signature" anywhere (any case): no result, without building dkimpy's parse; a
    field in any case still goes through the full path."""
    parsed: list[bytes] = []
    real = dkimpy.DKIM.__init__

    def spy(self: object, message: bytes, *a: object, **kw: object) -> None:
        parsed.append(message)
        real(self, message, *a, **kw)

    monkeypatch.setattr(dkimpy.DKIM, "__init__", spy)
    assert verify(dkimkeys.message()) == []
    assert verify(b"Broken header line\r\n\r\nbody mentions DKIM signatures\r\n") == []
    assert parsed == []
    dns.add("sel._domainkey.example.org", "TXT", dkimkeys.rsa_key().record)
    msg = signed().replace(b"DKIM-Signature:", b"dKiM-sIgNaTuRe:", 1)
    parsed.clear()  # signing parses too
    assert verify(msg) == [("pass", "")]
    broken = b"dkim-signature: v=1; d=example.org; s=sel; b=abc\r\nBroken header line\r\n\r\nbody\r\n"
    assert [r.result for r in dkim.verify(broken, 5, 1024, 0.3)] == ["permerror"]
    assert len(parsed) == 2
