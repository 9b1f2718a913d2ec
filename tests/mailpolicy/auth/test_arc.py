"""Unit tests for mailpolicy.auth.arc: chains sealed with dkimpy's ``arc_sign``, broken on purpose,
and hostile inputs. Every outcome is one of none, pass, fail, temperror, permerror."""

from __future__ import annotations

import base64
import random
from typing import Any

import dkim as dkimpy
import pytest

from mailpolicy.auth import arc, dkim
from support import dkimkeys, fakedns
from support.dnsserver import DnsServer

DOMAINS = ("example.org", "example.net", "example.com", "example.edu", "example.info")
LIMITS = dkim.Limits(timeout=0.3)


def publish(dns: DnsServer, record: str | None = None) -> None:
    for domain in DOMAINS:
        dns.add(f"sel._domainkey.{domain}", "TXT", record or dkimkeys.rsa_key().record)


def seal(msg: bytes, domain: str, cv: str | None = None, key: dkimkeys.Key | None = None) -> bytes:
    """One hop: the hop's Authentication-Results (with arc=CV when the message came sealed), then
    dkimpy's ARC set for it on top."""
    srv = f"mx.{domain}"
    ar = f"Authentication-Results: {srv}; spf=pass smtp.mailfrom=example.org"
    if cv is not None:
        ar += f"; arc={cv}"
    msg = ar.encode() + b"\r\n" + msg
    sets = dkimpy.arc_sign(msg, b"sel", domain.encode(), (key or dkimkeys.rsa_key()).private, srv.encode())
    assert len(sets) == 3
    return b"".join(sets) + msg


def chain(hops: int, body: bytes = b"Hello.\r\n\r\nThis is a test.\r\n") -> bytes:
    msg = seal(dkimkeys.message(body=body), DOMAINS[0])
    for hop in range(1, hops):
        msg = seal(msg, DOMAINS[hop], "pass")
    return msg


def verify(msg: bytes, limits: dkim.Limits = LIMITS, chunk: int = 65535) -> arc.ArcResult:
    return arc.verify(msg, limits, chunk)


def fields_of(msg: bytes) -> list[tuple[bytes, bytes]]:
    parsed = dkim.split_message(msg)
    assert parsed is not None
    return parsed[0]


def replace_field(msg: bytes, name: bytes, instance: int, new: bytes | None) -> bytes:
    """The message with the ``name`` field of ``instance`` replaced by ``new`` (None: removed)."""
    body = msg.partition(b"\r\n\r\n")[2]
    out: list[bytes] = []
    for fname, value in fields_of(msg):
        raw = fname + b":" + value
        relaxed = value.replace(b"\r\n", b" ").strip()
        if fname.lower() == name and (
            relaxed.startswith(f"i={instance};".encode()) or f" i={instance};".encode() in b" " + relaxed
        ):
            if new is not None:
                out.append(new)
            continue
        out.append(raw)
    return b"".join(out) + b"\r\n" + body


# ---- none, pass ---------------------------------------------------------------------------------


def test_no_arc_fields_is_none_without_dns_or_hashing() -> None:
    resolver = fakedns.install({})
    msg = dkimkeys.sign(dkimkeys.message(body=b"x\r\n" * 1000), "example.org", "sel", dkimkeys.rsa_key())
    v = arc.Verifier(LIMITS)
    for name, value in fields_of(msg):
        v.header(name, value)
    for _ in range(100):
        v.body(b"y" * 1000 + b"\r\n")
    assert not v._bodies.hashes  # nothing is hashed
    res = v.finish()
    assert res == arc.ArcResult("none")
    assert res.record() == {
        "result": "none",
        "instances": 0,
        "sealers": [],
        "oldest_pass": None,
        "reason": "",
    }
    assert resolver.queries == []
    assert verify(b"") == arc.ArcResult("none")


def test_one_hop_passes(dns: DnsServer) -> None:
    publish(dns)
    res = verify(chain(1))
    assert (res.result, res.instances, res.sealers, res.oldest_pass, res.reason) == (
        "pass",
        1,
        ["example.org"],
        0,
        "",
    )
    assert res.aar == ["mx.example.org; spf=pass smtp.mailfrom=example.org"]
    assert res.record() == {
        "result": "pass",
        "instances": 1,
        "sealers": ["example.org"],
        "oldest_pass": 0,
        "reason": "",
    }


def test_two_and_five_hops_pass(dns: DnsServer) -> None:
    publish(dns)
    res = verify(chain(2))
    assert (res.result, res.instances, res.sealers, res.oldest_pass) == (
        "pass",
        2,
        ["example.org", "example.net"],
        0,
    )
    assert res.aar[1] == "mx.example.net; spf=pass smtp.mailfrom=example.org; arc=pass"
    res = verify(chain(5))
    assert (res.result, res.instances, res.sealers, res.oldest_pass) == ("pass", 5, list(DOMAINS), 0)


def test_body_streamed_byte_by_byte_gives_the_same_result(dns: DnsServer) -> None:
    publish(dns)
    msg = chain(2, body=b"line  one \t\r\n\r\n\r\nline two\r\n\r\n")
    assert verify(msg, chunk=1) == verify(msg)
    assert verify(msg, chunk=1).result == "pass"


def test_key_lookups_are_shared(dns: DnsServer) -> None:
    """The newest signature and the seals of one domain use one key: one lookup per key name."""
    publish(dns)
    msg = seal(seal(dkimkeys.message(), "example.org"), "example.org", "pass")
    assert verify(msg).result == "pass"
    assert dns.queries == [("sel._domainkey.example.org", "TXT")]


def test_a_header_field_added_after_sealing_does_not_break_the_chain(dns: DnsServer) -> None:
    publish(dns)
    msg = b"Received: from somewhere \xff\xfe by relay\r\nX-Junk: \x80\x81\r\n" + chain(2)
    res = verify(msg)
    assert (res.result, res.oldest_pass) == ("pass", 0)


# ---- broken chains ----------------------------------------------------------------------------


def test_body_modified_after_sealing_fails(dns: DnsServer) -> None:
    publish(dns)
    msg = chain(2).replace(b"This is a test.", b"This is a tesT.")
    res = verify(msg)
    assert (res.result, res.reason) == ("fail", "ARC-Message-Signature i=2: body hash mismatch")
    assert (res.instances, res.sealers, res.oldest_pass, res.aar) == (
        2,
        ["example.org", "example.net"],
        None,
        [],
    )
    assert dns.queries == []  # decided without DNS


def test_header_modified_after_sealing_fails(dns: DnsServer) -> None:
    publish(dns)
    res = verify(chain(2).replace(b"Subject: test", b"Subject: tesT"))
    assert (res.result, res.reason) == ("fail", "ARC-Message-Signature i=2: signature did not verify")


def test_body_modified_between_hops_passes_with_oldest_pass(dns: DnsServer) -> None:
    """The first hop's signature breaks, the chain (seals) stays intact: header.oldest-pass=2."""
    publish(dns)
    first = seal(dkimkeys.message(), DOMAINS[0]).replace(b"This is a test.", b"This is a tesT.")
    res = verify(seal(first, DOMAINS[1], "pass"))
    assert (res.result, res.instances, res.oldest_pass) == ("pass", 2, 2)
    # Three hops, broken between the second and the third: AMS 1 and 2 fail, oldest-pass=3.
    second = seal(seal(dkimkeys.message(), DOMAINS[0]), DOMAINS[1], "pass")
    second = second.replace(b"Subject: test", b"Subject: changed")
    res = verify(seal(second, DOMAINS[2], "pass"))
    assert (res.result, res.instances, res.oldest_pass) == ("pass", 3, 3)


def test_modified_aar_breaks_the_seals(dns: DnsServer) -> None:
    publish(dns)
    msg = chain(2).replace(b"i=1; mx.example.org;", b"i=1; mx.example.org; dkim=pass;")
    res = verify(msg)
    assert res.result == "fail" and res.reason.startswith("ARC-Seal i=2: signature did not verify")


@pytest.mark.parametrize(
    ("name", "instance", "new", "reason"),
    [
        (b"arc-seal", 1, None, "ARC set 1 has no ARC-Seal"),
        (b"arc-message-signature", 2, None, "ARC set 2 has no ARC-Message-Signature"),
        (b"arc-authentication-results", 1, None, "ARC set 1 has no ARC-Authentication-Results"),
        (b"arc-authentication-results", 1, b"ARC-Authentication-Results: i=2; x; spf=none\r\n", "duplicate"),
        (
            b"arc-authentication-results",
            1,
            b"ARC-Authentication-Results: mx; i=1; spf=none\r\n",
            "valid i=N;",
        ),
        (b"arc-seal", 1, b"ARC-Seal: i=0; cv=none; a=rsa-sha256; d=x; s=y; b=AAAA\r\n", "instance i=0"),
        (b"arc-seal", 1, b"ARC-Seal: i=1; i=1; cv=none\r\n", "unparsable tag list"),
        (b"arc-seal", 2, b"ARC-Seal: cv=pass; a=rsa-sha256; d=x; s=y; b=AAAA\r\n", "no valid i= tag"),
        (b"arc-seal", 2, b"ARC-Seal: i=2; cv=fail; a=rsa-sha256; d=x; s=y; b=AAAA\r\n", "says cv=fail"),
        (b"arc-seal", 2, b"ARC-Seal: i=2; a=rsa-sha256; d=x; s=y; b=AAAA\r\n", "says cv=(none)"),
        (b"arc-seal", 2, b"ARC-Seal: i=2; cv=none; a=rsa-sha256; d=x; s=y; b=AAAA\r\n", "not pass"),
        (b"arc-seal", 1, b"ARC-Seal: i=1; cv=pass; a=rsa-sha256; d=x; s=y; b=AAAA\r\n", "not none"),
        (b"arc-seal", 1, b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x; s=y; b=AAAA; h=from\r\n", "h= tag"),
        (b"arc-seal", 1, b"ARC-Seal: i=1; cv=none; a=rsa-sha1; d=x; s=y; b=AAAA\r\n", "rsa-sha1"),
        (
            b"arc-seal",
            1,
            b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x; s=y; b=AAAA; t=9999999999\r\n",
            "future",
        ),
    ],
)
def test_structural_failures_fail_without_dns(
    dns: DnsServer, name: bytes, instance: int, new: bytes | None, reason: str
) -> None:
    publish(dns)
    res = verify(replace_field(chain(2), name, instance, new))
    assert res.result == "fail" and reason in res.reason, res.reason
    assert dns.queries == []


def test_newest_signature_covering_arc_seal_fails(dns: DnsServer) -> None:
    publish(dns)
    base = seal(dkimkeys.message(), "example.org")
    msg = seal(base, "example.net", "pass").replace(b"h=from : to", b"h=arc-seal : from : to", 1)
    res = verify(msg)
    assert (res.result, res.reason) == ("fail", "ARC-Message-Signature i=2: h= includes ARC-Seal")


def test_more_than_50_sets_fail(dns: DnsServer) -> None:
    sets = []
    for i in range(51, 0, -1):
        cv = "none" if i == 1 else "pass"
        sets.append(f"ARC-Seal: i={i}; cv={cv}; a=rsa-sha256; d=example.org; s=sel; b=AAAA\r\n")
        sets.append(
            f"ARC-Message-Signature: i={i}; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AAAA; b=AAAA\r\n"
        )
        sets.append(f"ARC-Authentication-Results: i={i}; mx.example.org; spf=pass\r\n")
    res = verify("".join(sets).encode() + dkimkeys.message())
    assert (res.result, res.reason, res.instances) == ("fail", "more than 50 ARC sets", 51)
    assert dns.queries == []
    # 50 sets are structurally fine (the signatures then fail).
    res = verify("".join(sets[3:]).encode() + dkimkeys.message())
    assert res.result == "fail" and res.instances == 50 and "more than" not in res.reason
    # And 200 copies of one set: refused by count, whatever their content.
    res = verify(("".join(sets[-3:]) * 200).encode() + dkimkeys.message())
    assert (res.result, res.reason) == ("fail", "duplicate ARC-Seal for instance 1")


# ---- keys and DNS -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exponent_bits", "modulus_bits", "reason"),
    [
        (65, 2048, "public exponent of 65 bits"),
        (2048, 2048, "public exponent of 2048 bits"),
        (17, 8192, "key too large"),
        (17, 4200, "key too large (4200 bits"),
    ],
)
def test_hostile_keys_are_refused_before_any_arithmetic(
    dns: DnsServer, exponent_bits: int, modulus_bits: int, reason: str
) -> None:
    rng = random.Random(exponent_bits * modulus_bits)
    n = rng.getrandbits(modulus_bits) | (1 << (modulus_bits - 1)) | 1
    e = min(rng.getrandbits(exponent_bits) | (1 << (exponent_bits - 1)) | 1, n - 2) | 1
    dns.add(
        "sel._domainkey.example.org", "TXT", "v=DKIM1; p=" + base64.b64encode(dkimkeys.spki(n, e)).decode()
    )
    dkim.clear_key_cache()
    # 4,200 bits passes the length pre-check under a 4,199-bit limit, not the modulus check.
    limits = dkim.Limits(timeout=0.3, max_key_bits=4096 if modulus_bits != 4200 else 4199)
    res = verify(chain(1), limits)
    assert res.result == "fail" and reason in res.reason, res.reason
    assert res.reason.startswith("ARC-Message-Signature i=1: ")


def test_small_key_is_not_acceptable(dns: DnsServer) -> None:
    publish(dns)
    res = verify(chain(1), dkim.Limits(timeout=0.3, min_key_bits=4096))
    assert (res.result, res.reason) == ("fail", "ARC-Message-Signature i=1: key too small (2048 bits)")


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (None, "no key for signature"),
        ("v=DKIM1; k=rsa; p=", "key revoked"),
        ("v=DKIM1; k=rsa; p", "malformed key record"),
        ("v=DKIM1; k=rsa; p=bm90IGEga2V5", "bad key"),
        ("v=DKIM1; k=ed25519; p=" + base64.b64encode(b"x" * 32).decode(), "key type ed25519 does not match"),
        ("v=DKIM1; s=chat; p=AAAA", "key not for email"),
        ("v=DKIM1; h=sha1; p=AAAA", "hash algorithm not allowed by key h="),
    ],
)
def test_key_problems_fail(dns: DnsServer, record: str | None, reason: str) -> None:
    if record is not None:
        dns.add("sel._domainkey.example.org", "TXT", record)
    dkim.clear_key_cache()
    res = verify(chain(1))
    assert res.result == "fail" and reason in res.reason, res.reason


@pytest.mark.parametrize("how", ["timeout", "servfail"])
def test_key_lookup_failure_is_temperror(dns: DnsServer, how: str) -> None:
    publish(dns)
    getattr(dns, how)("sel._domainkey.example.net")
    res = verify(chain(2))
    assert (res.result, res.reason) == ("temperror", f"ARC-Message-Signature i=2: key lookup {how}")
    assert res.oldest_pass is None and res.sealers == ["example.org", "example.net"]


def test_a_failure_decides_over_a_lookup_failure(dns: DnsServer) -> None:
    """The newest key does not answer, the first seal fails with its own key: fail. A structural
    failure is found before any lookup."""
    publish(dns)
    dns.timeout("sel._domainkey.example.net")
    msg = chain(2)
    seal1 = next(v for n, v in fields_of(msg) if n == b"ARC-Seal" and b"i=1;" in v)
    broken = msg.replace(seal1, seal1.replace(b"t=", b"x=9999999999; t=", 1))
    res = verify(broken)
    assert (res.result, res.reason) == ("fail", "ARC-Seal i=1: signature did not verify")
    dns.queries.clear()
    res = verify(msg.replace(b"This is a test.", b"Changed."))
    assert res.result == "fail" and dns.queries == []


def test_key_lookups_have_a_time_budget(dns: DnsServer) -> None:
    """Five hops, five keys that never answer: the lookups stop after DNS_BUDGET timeouts."""
    publish(dns)
    msg = chain(5)
    for domain in DOMAINS:
        dns.timeout(f"sel._domainkey.{domain}")
    res = verify(msg)
    assert res.result == "temperror"
    assert res.reason == "ARC-Message-Signature i=5: key lookup timeout"
    assert 1 <= len({q for q in dns.queries if q[1] == "TXT"}) <= arc.DNS_BUDGET + 1


# ---- our limits, hostile fields, robustness -----------------------------------------------------


def test_body_over_the_limit_is_permerror(dns: DnsServer) -> None:
    publish(dns)
    msg = chain(1, body=b"x" * 5000 + b"\r\n")
    res = verify(msg, dkim.Limits(timeout=0.3, max_body_bytes=1000), chunk=700)
    assert (res.result, res.reason) == ("permerror", "message larger than auth.max_message_bytes")
    assert res.sealers == ["example.org"] and res.oldest_pass is None
    # A chain that fails without its body still fails.
    broken = replace_field(msg, b"arc-seal", 1, None)
    assert verify(broken, dkim.Limits(timeout=0.3, max_body_bytes=1000)).result == "fail"


def test_too_many_header_fields_is_permerror(dns: DnsServer) -> None:
    publish(dns)
    junk = b"X-Junk: 1\r\n" * (dkim.MAX_HEADER_FIELDS + 1)
    res = verify(chain(1).replace(b"From:", junk + b"From:", 1))
    assert (res.result, res.reason) == ("permerror", f"more than {dkim.MAX_HEADER_FIELDS} header fields")
    assert verify(junk + dkimkeys.message()).result == "none"


def crafted_set(
    ams: bytes, seal: bytes = b" i=1; a=rsa-sha256; cv=none; d=example.org; s=sel; b=AAAA"
) -> bytes:
    return (
        b"ARC-Seal:"
        + seal
        + b"\r\nARC-Message-Signature:"
        + ams
        + b"\r\nARC-Authentication-Results: i=1; mx.example.org; spf=pass\r\n"
        + dkimkeys.message()
    )


def body_hash() -> bytes:
    bh = dkim.BodyHash(True, dkim.HASHES[b"rsa-sha256"], None)
    bh.update(dkimkeys.message().partition(b"\r\n\r\n")[2])
    return base64.b64encode(bh.digest())


@pytest.mark.parametrize(
    "ams",
    [
        b" i=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AAAA; b=A" + b" " * 100_000 + b"!",
        b" i=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AAAA; b=" + b" \r\n\t" * 35_000 + b"!",
        b" i=1; a=rsa-sha256; d=example.org; s=sel; bh=BH; b=AAAA; h=a" + b" " * 100_000 + b"b",
        b" i=1; a=rsa-sha256; d=example.org; s=sel; bh=BH; b=AAAA; h=" + b"x:" * 50_000 + b"from",
        b" i=1; a=rsa-sha256; d=example.org; s=sel; bh=BH; h=from; b=" + b"\r\n\tA" * 30_000,
        b" i=1; a=rsa-sha256; d=example.org; s=sel; bh=BH; h=from; b=AAAA; x=" + b"\t;" * 50_000,
    ],
)
def test_crafted_100k_fields_finish(dns: DnsServer, ams: bytes) -> None:
    """dkimpy's ARC regexes backtrack quadratically on such fields; ours are linear (these take
    milliseconds; no timing is asserted)."""
    publish(dns)
    res = verify(crafted_set(ams.replace(b"bh=BH", b"bh=" + body_hash())))
    assert res.result == "fail"
    assert len(res.reason) <= arc.MAX_REASON_CHARS


def test_crafted_whitespace_in_the_newest_seal_b_value_still_passes(dns: DnsServer) -> None:
    """Folding whitespace inside b= is not signed: 100 KB of it in the newest seal is harmless and
    costs linear time."""
    publish(dns)
    msg = chain(2)
    newest = next(v for n, v in fields_of(msg) if n == b"ARC-Seal" and b"i=2;" in v)
    padded = newest.replace(b" b=", b" b=" + b" \r\n\t" * 30_000, 1)
    assert verify(msg.replace(newest, padded)).result == "pass"
    crafted_seal = b" i=1; a=rsa-sha256; cv=none; d=example.org; s=sel; b=" + b" \t" * 50_000 + b"AAAA"
    assert verify(
        crafted_set(b" i=1; a=rsa-sha256; d=x; s=y; h=from; bh=AAAA; b=AAAA", crafted_seal)
    ).result == ("fail")


def test_non_utf8_header_bytes_raise_nothing(dns: DnsServer) -> None:
    publish(dns)
    msg = crafted_set(
        b" i=1; a=rsa-sha256; d=\xff\xfe.example; s=\xc3(; h=from; bh=AAAA; b=AAAA",
        b" i=1; a=rsa-sha256; cv=none; d=\xff\xfe\x00.example; s=sel\x80; b=AAAA",
    ).replace(b"spf=pass", b"spf=pass \xe9\xff\x01")
    res = verify(msg)
    assert res.result == "fail" and res.reason.isprintable()
    assert res.sealers == ["\ufffd\ufffd?.example"]
    assert res.aar == []
    # Reported text (sealers, AAR, reasons) is decoded with replacement and made printable.
    assert arc._text(b" caf\xc3\xa9 \xff\x01\x7f ", 100) == "caf\u00e9 \ufffd??"
    assert arc._text(b"x" * 5000, 1000) == "x" * 1000


def test_aar_text_is_bounded(dns: DnsServer) -> None:
    publish(dns)
    long_ar = "Authentication-Results: mx.example.org; " + "; ".join(
        f"dkim=pass header.d=d{i}.example" for i in range(200)
    )
    msg = long_ar.encode() + b"\r\n" + dkimkeys.message()
    sets = dkimpy.arc_sign(msg, b"sel", b"example.org", dkimkeys.rsa_key().private, b"mx.example.org")
    res = verify(b"".join(sets) + msg)
    assert res.result == "pass"
    assert len(res.aar[0]) == arc.MAX_AAR_CHARS and res.aar[0].startswith("mx.example.org; dkim=pass")


def test_unexpected_exception_is_permerror(dns: DnsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(dns)

    def boom(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(dkim, "header_hash", boom)
    res = verify(chain(1))
    assert (res.result, res.reason) == ("permerror", "internal error: RuntimeError")
    monkeypatch.setattr(arc, "_parse_field", boom)
    res = verify(chain(1))
    assert (res.result, res.reason) == ("permerror", "internal error: RuntimeError")


def test_unparsable_message(dns: DnsServer) -> None:
    assert verify(b"ARC-Seal: i=1\r\nnot a header line\r\n\r\nbody\r\n").result == "permerror"
    assert verify(b"Subject: x\r\nnot a header line\r\n\r\nbody\r\n").result == "none"


def test_finish_is_idempotent(dns: DnsServer) -> None:
    publish(dns)
    v = arc.Verifier(LIMITS)
    parsed = dkim.split_message(chain(1))
    assert parsed is not None
    for name, value in parsed[0]:
        v.header(name, value)
    v.body(parsed[1])
    first = v.finish()
    assert first.result == "pass" and v.finish() is first
