"""Unit tests for mailpolicy.auth.dkim: every outcome is a defined RFC 8601 result."""

from __future__ import annotations

import base64
import random
import re
import subprocess
import time
from typing import Any

import dkim as dkimpy
import dkim.crypto as dkim_crypto
import pytest
from dkim.canonicalization import CanonicalizationPolicy
from hypothesis import given, settings
from hypothesis import strategies as st

from mailpolicy import metrics
from mailpolicy.auth import dkim
from mailpolicy.message import dkim_value
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


def test_body_over_the_limit_is_neutral(dns: DnsServer) -> None:
    dns.add("sel._domainkey.example.org", "TXT", dkimkeys.rsa_key().record)
    msg = signed()
    fields, body = split(msg)
    v = dkim.Verifier(dkim.Limits(timeout=0.3, max_body_bytes=len(body) - 1))
    for name, value in fields:
        v.header(name, value)
    v.body(body)
    assert [(r.result, r.reason) for r in v.finish()] == [
        ("neutral", "message larger than auth.max_message_bytes")
    ]


def test_more_header_fields_than_kept_is_neutral(dns: DnsServer) -> None:
    dns.add("sel._domainkey.example.org", "TXT", dkimkeys.rsa_key().record)
    head, _, body = signed().partition(b"\r\n\r\n")
    padded = head + b"\r\n" + b"X-Pad: x\r\n" * dkim.MAX_HEADER_FIELDS + b"\r\n" + body
    assert verify(padded) == [("neutral", f"more than {dkim.MAX_HEADER_FIELDS} header fields")]


def split(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    parsed = dkim.split_message(message)
    assert parsed is not None
    return parsed


def test_signature_cap(dns: DnsServer) -> None:
    dns.add("sel._domainkey.example.org", "TXT", dkimkeys.rsa_key().record)
    msg = signed()
    for _ in range(3):
        msg = dkimkeys.sign(msg, "example.org", "sel", dkimkeys.rsa_key())
    before = metrics.DKIM_SKIPPED.labels().value
    assert [r for r, _ in verify(msg, max_signatures=2)] == ["pass", "pass"]
    assert metrics.DKIM_SKIPPED.labels().value == before + 2


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

    monkeypatch.setattr(dkim, "rsa_verify", boom)
    [(result, why)] = verify(signed())
    assert result == "permerror" and "IndexError" in why


def test_milter_header_values_as_dkim_hashes_them() -> None:
    assert dkim_value(b" a@example.org", True) == b" a@example.org\r\n"
    assert dkim_value(b" folded\n\tline", True) == b" folded\r\n\tline\r\n"
    assert dkim_value(b"folded\r\n line", False) == b" folded\r\n line\r\n"
    assert dkim_value(b"caf\xc3\xa9\xff", True) == b"caf\xc3\xa9\xff\r\n"  # bytes kept as sent


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


@pytest.mark.parametrize("bits", [1024, 1536, 2048, 4096])
def test_rsa_verify_agrees_with_dkimpy(bits: int) -> None:
    """Both of our RSA paths (OpenSSL through cryptography, and the reference: dkimpy's EMSA
    encoding + pow) accept and refuse exactly what dkimpy's RSASSA_PKCS1_v1_5_verify does, on real
    signatures and tampered ones: another message, another hash, a flipped bit, a byte cut off,
    a leading zero added, a signature whose own leading zero byte was left out, s >= n, empty."""
    import hashlib

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

    pem = dkimkeys.rsa_key(bits).private
    key = dkim_crypto.parse_pem_private_key(pem)
    pub = {"modulus": key["modulus"], "publicExponent": key["publicExponent"]}
    fast = dkim._openssl_key(pub)
    assert fast is not None and fast.key_size == bits
    private = serialization.load_pem_private_key(pem, None)
    assert isinstance(private, rsa.RSAPrivateKey)

    def sign(h: Any) -> bytes:
        alg = hashes.SHA256() if h.name == "sha256" else hashes.SHA1()
        return private.sign(h.digest(), padding.PKCS1v15(), utils.Prehashed(alg))

    rng = random.Random(6376 + bits)
    modlen = bits // 8
    cases: list[tuple[Any, bytes]] = []
    zero_led = None
    i = 0
    while i < 15 or zero_led is None:  # about one signature in 256 starts with a zero byte
        assert i < 20_000
        i += 1
        data = rng.randbytes(rng.randrange(1, 200))
        h = hashlib.sha256(data) if i % 3 else hashlib.sha1(data)
        sig = sign(h)
        if sig[0] == 0 and zero_led is None:
            zero_led = (h, sig)
        if i <= 15:
            other = hashlib.sha1(data) if h.name == "sha256" else hashlib.sha256(data)
            for s in (sig, sig[:-1] + bytes([sig[-1] ^ 1]), sig[1:], b"\x00" + sig, b"\x01" + sig):
                cases += [(h, s), (hashlib.sha256(data + b"x"), s), (other, s)]
    assert zero_led is not None
    h, sig = zero_led
    cases += [(h, sig), (h, sig.lstrip(b"\0")), (h, b"\0\0" + sig)]
    n = pub["modulus"]
    h = hashlib.sha256(b"x")
    cases += [(h, b""), (h, n.to_bytes(modlen, "big")), (h, b"\xff" * modlen), (h, b"\x01" * (modlen + 1))]
    accepted = 0
    for i, (h, s) in enumerate(cases):
        want = dkim_crypto.RSASSA_PKCS1_v1_5_verify(h, s, pub)
        assert dkim.rsa_verify(h, s, pub, fast) == want, (i, h.name, len(s))
        assert dkim.rsa_verify_reference(h, s, pub) == want, (i, h.name, len(s))
        accepted += want
    # Each signature as made and with a zero added, and the zero-led ones (more when one of the
    # first fifteen happens to start with a zero byte: then the copy without it is the same).
    assert accepted >= 15 * 2 + 3


def test_small_or_malformed_rsa_keys_take_the_reference_path() -> None:
    assert dkim._openssl_key({"modulus": (1 << 1023) | 1, "publicExponent": 65537}) is not None
    assert dkim._openssl_key({"modulus": (1 << 1022) | 1, "publicExponent": 65537}) is None  # 1023 bits
    assert dkim._openssl_key({"modulus": 1 << 2047, "publicExponent": 65537}) is None  # even modulus


@pytest.mark.parametrize(
    ("exponent_bits", "modulus_bits", "reason"),
    [
        (2048, 2048, "public exponent of 2048 bits"),
        (65, 2048, "public exponent of 65 bits"),
        (17, 8192, "key too large"),
    ],
)
def test_hostile_rsa_keys_are_refused_before_any_arithmetic(
    dns: DnsServer, exponent_bits: int, modulus_bits: int, reason: str
) -> None:
    """Hole: a key whose public exponent is as large as the modulus cost 2 s per signature at 8,192
    bits (14 s at 16,384) in pure-Python pow, holding the GIL. Such keys are permerror now."""
    rng = random.Random(exponent_bits)
    n = rng.getrandbits(modulus_bits) | (1 << (modulus_bits - 1)) | 1
    e = rng.getrandbits(exponent_bits) | (1 << (exponent_bits - 1)) | 1
    e = min(e, n - 2) | 1
    dns.add(
        "sel._domainkey.example.org", "TXT", "v=DKIM1; p=" + base64.b64encode(dkimkeys.spki(n, e)).decode()
    )
    t0 = time.perf_counter()
    [(result, why)] = verify(signed(), max_key_bits=4096)
    assert result == "permerror" and reason in why, why
    assert time.perf_counter() - t0 < 5  # generous; the refused key costs no modular arithmetic


def test_legal_worst_case_key_is_cheap() -> None:
    """The most expensive key we accept: a 4,096-bit modulus with a 64-bit exponent."""
    rng = random.Random(1)
    n = rng.getrandbits(4096) | (1 << 4095) | 1
    e = rng.getrandbits(64) | (1 << 63) | 1
    assert dkim.rsa_key_problem({"modulus": n, "publicExponent": e}, 4096) is None
    assert dkim.rsa_key_problem({"modulus": n, "publicExponent": e << 1 | 1}, 4096) is not None
    import hashlib

    t0 = time.perf_counter()
    for _ in range(20):
        dkim.rsa_verify(hashlib.sha256(b"x"), rng.randbytes(512), {"modulus": n, "publicExponent": e})
    per = (time.perf_counter() - t0) / 20
    print(f"worst legal RSA verification: {per * 1000:.3f} ms")


@pytest.mark.parametrize(
    "field",
    [
        b" v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AAAA; b=A" + b" " * 60000 + b"!",
        b" v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AAAA; b=" + b" \r\n" * 30000 + b"!",
        b" v=1; a=rsa-sha256; d=example.org; s=sel; bh=AAAA; b=AAAA; h=a" + b" " * 60000 + b"b",
        b" v=1; a=rsa-sha256; d=example.org; s=sel; bh=AAAA; b=AAAA; h=" + b"x:" * 60000 + b"from",
    ],
)
def test_crafted_signature_fields_cost_linear_time(dns: DnsServer, field: bytes) -> None:
    """Hole: dkimpy's base64 shape check and b= removal regexes backtrack quadratically (seconds to
    minutes for one 100 KB field). Our versions are linear."""
    dns.add("sel._domainkey.example.org", "TXT", dkimkeys.rsa_key().record)
    msg = b"DKIM-Signature:" + field + b"\r\n" + dkimkeys.message()
    t0 = time.perf_counter()
    res = dkim.verify(msg, 5, 1024, 0.3)
    assert time.perf_counter() - t0 < 2, "a crafted signature field took too long"
    assert len(res) == 1 and res[0].result in ("permerror", "fail")


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b" b=abc; bh=x",
        b"; b = ab \r\n cd==\r\n",
        b" v=1; b=abc\r\n; x=y; b=zzz",
        b"a=b;b=AB/+=\r\n\t CD;c=d",
        b" b=\r\n",
        b";b=;b=",
        b" b= \r\n !",
        b"\tb\t=\tA A\n",
    ],
)
def test_strip_b_value_matches_dkimpy(value: bytes) -> None:
    assert dkim.strip_b_value(value) == dkimpy.RE_BTAG.sub(b"\\1", value)


_CANON_BYTES = st.lists(
    st.sampled_from([b"a", b" ", b"\t", b"\r", b"\n", b"\r\n", b"xy", b"  \r\n"]), max_size=40
)


@settings(max_examples=400, deadline=None)
@given(
    _CANON_BYTES,
    st.lists(st.integers(0, 60), max_size=6),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 30)),
)
def test_streaming_body_hash_equals_dkimpy(
    pieces: list[bytes], cuts: list[int], relaxed: bool, limit: int | None
) -> None:
    """Property: for any body and any chunking, the streaming canonicalization hashes exactly the
    bytes dkimpy's canonicalize_body gives for the whole body (after its LF -> CRLF normalisation)."""
    import hashlib

    body = b"".join(pieces)
    normalised = b"\r\n".join(re.split(b"\r?\n", body))
    policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed" if relaxed else b"simple/simple")
    expected = policy.canonicalize_body(normalised)
    if limit is not None:
        expected = expected[:limit]
    h = dkim.BodyHash(relaxed, hashlib.sha256, limit)
    points = sorted({min(c, len(body)) for c in cuts})
    prev = 0
    for p in [*points, len(body)]:
        h.update(body[prev:p])
        prev = p
    assert h.digest() == hashlib.sha256(expected).digest()


def test_streaming_body_hash_memory_is_constant() -> None:
    import hashlib

    h = dkim.BodyHash(True, hashlib.sha256, None)
    for _ in range(200):
        h.update(b" \t" * 5000 + b"\r")
    assert len(h._hold) <= 2


# ---- dkimpy's tag=value parser and c= reading, without their per-call regex -----------------

_TAG_BYTES = st.one_of(
    st.binary(max_size=60),
    st.lists(
        st.sampled_from(
            [
                *(b"a", b"B", b"z", b"0", b"_", b"=", b";", b" ", b"\t", b"\r\n", b"\n", b"\x0b", b"\x0c"),
                *(b"\x1c", b"\x85", b"\xa0", b"\xff", b"v=1", b"bh", b"d=x", b"; ", b"==", b";;"),
            ]
        ),
        max_size=30,
    ).map(b"".join),
)


def _tag_outcome(parse: Any, value: bytes) -> tuple[str, Any]:
    try:
        return "ok", list(parse(value).items())
    except Exception as exc:
        return type(exc).__qualname__, (type(exc).__module__, exc.args)


@settings(max_examples=2000, deadline=None)
@given(_TAG_BYTES)
def test_parse_tag_value_equals_dkimpy(value: bytes) -> None:
    """Property: for any bytes, the same tags in the same order, or the same exception (class and
    argument) as dkimpy's parse_tag_value."""
    from dkim.util import parse_tag_value as reference

    assert _tag_outcome(dkim.parse_tag_value, value) == _tag_outcome(reference, value)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b";",
        b" ; ",
        b"a=",
        b"a",
        b"=b",
        b"1=b",
        b"_a=b",
        b"a=b;a=c",
        b"a=b; A=c",
        b"\x0ba=b\x0c;",
        b"a==b",
    ],
)
def test_parse_tag_value_edges_equal_dkimpy(value: bytes) -> None:
    from dkim.util import parse_tag_value as reference

    assert _tag_outcome(dkim.parse_tag_value, value) == _tag_outcome(reference, value)


def _canon_outcome(c: bytes) -> tuple[str, Any]:
    try:
        policy = CanonicalizationPolicy.from_c_value(c)
    except Exception as exc:
        return type(exc).__qualname__, exc.args
    return "ok", (policy.header_algorithm.name == b"relaxed", policy.body_algorithm.name == b"relaxed")


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=20),
        st.lists(st.sampled_from([b"simple", b"relaxed", b"/", b"Simple", b" ", b"x"]), max_size=4).map(
            b"".join
        ),
    )
)
def test_canonicalization_equals_dkimpy(c: bytes) -> None:
    """Property: the (relaxed header, relaxed body) dkimpy's from_c_value gives, or its exception."""
    try:
        ours: tuple[str, Any] = ("ok", dkim.canonicalization(c))
    except Exception as exc:
        ours = (type(exc).__qualname__, exc.args)
    assert ours == _canon_outcome(c)


def test_canonicalization_table_is_every_accepted_value() -> None:
    for head in (b"simple", b"relaxed"):
        for c in (head, head + b"/simple", head + b"/relaxed"):
            assert ("ok", dkim.canonicalization(c)) == _canon_outcome(c)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.sampled_from([b"From", b"X-a ", b"\t", b" "]), min_size=1, max_size=3).map(b"".join),
    st.lists(
        st.sampled_from([b"a", b" ", b"  ", b"\t", b"\r\n", b"\n", b"\r", b"\r\n\t", b"\x0b", b"b c"]),
        max_size=20,
    ).map(b"".join),
)
def test_relaxed_header_equals_dkimpy(name: bytes, value: bytes) -> None:
    """Property: relaxed header canonicalization as dkimpy's Relaxed.canonicalize_headers."""
    from dkim.canonicalization import Relaxed

    assert dkim.relaxed_header(name, value) == tuple(Relaxed.canonicalize_headers([(name, value)])[0])


_B64_FIELD_BYTES = st.lists(
    st.sampled_from(
        [
            *(b"A", b"b", b"z", b"0", b"+", b"/", b"=", b";", b" ", b"\t", b"\r\n", b"\n", b"\x0b", b"\x0c"),
            *(b"\x1c", b"\x85", b"\xff", b"b=", b" b =", b";b=", b"bh=", b"xb=", b"\r\n b\t=\r\n"),
        ]
    ),
    max_size=40,
).map(b"".join)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.binary(max_size=40), _B64_FIELD_BYTES))
def test_unspace_and_b64_shape_equal_their_definitions(value: bytes) -> None:
    """Property: unspace drops exactly the _WSP bytes; b64_shape is dkimpy's regex (these inputs
    are too short for its backtracking to matter), with or without the unspaced value given."""
    assert dkim.unspace(value) == bytes(c for c in value if c not in b" \t\r\n\x0b\x0c")
    expected = re.match(rb"[\s0-9A-Za-z+/]+[\s=]*$", value) is not None
    assert dkim.b64_shape(value) is expected
    assert dkim.b64_shape(value, dkim.unspace(value)) is expected


@settings(max_examples=2000, deadline=None)
@given(_B64_FIELD_BYTES)
def test_strip_b_value_equals_dkimpy_on_any_field(value: bytes) -> None:
    """Property: the b= removal is dkimpy's RE_BTAG substitution, including fields with more
    candidates ("b FWS =" after the wrong byte) than the fast search tries before the regex."""
    assert dkim.strip_b_value(value) == dkimpy.RE_BTAG.sub(b"\\1", value)


def test_strip_b_value_after_many_refused_candidates() -> None:
    for n in range(2 * dkim._BTAG_TRIES + 2):
        value = b"v=1" + b"; xb=1" * n + b"; b=AB CD\r\n; c=d; b=EF\r\n"
        assert dkim.strip_b_value(value) == dkimpy.RE_BTAG.sub(b"\\1", value)
