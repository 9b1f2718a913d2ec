"""Unit tests for mailpolicy.auth.dkim: every outcome is a defined RFC 8601 result."""

from __future__ import annotations

import base64
import subprocess

import dkim as dkimpy
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
