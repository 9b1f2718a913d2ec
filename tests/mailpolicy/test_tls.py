from __future__ import annotations

from collections.abc import Callable

import pytest

from mailpolicy.tls import from_macros, normalize_version, version_key


@pytest.mark.parametrize(
    "raw,norm",
    [
        ("TLSv1.3", "TLSv1.3"),
        ("TLSv1.2", "TLSv1.2"),
        ("TLSv1", "TLSv1"),
        ("TLSv1.0", "TLSv1"),
        ("tls1.1", "TLSv1.1"),
        ("SSLv3", "SSLv3"),
        ("TLSv1.4", "TLSv1.4"),
        ("garbage", "unknown"),
        ("TLSv2.0", "unknown"),
        ("SSLv3.1", "unknown"),
        ("TLSv1.2\x00\xff", "unknown"),
        ("", None),
        (None, None),
        ("  ", None),
    ],
)
def test_normalize_version(raw: str | None, norm: str | None) -> None:
    assert normalize_version(raw) == norm


def test_version_order() -> None:
    keys = [version_key(v) for v in ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", "TLSv1.4")]
    assert None not in keys
    assert keys == sorted(k for k in keys if k is not None)
    assert version_key("unknown") is None


def macros(**kw: object) -> Callable[[str], object]:
    table = {f"{{{k}}}": v for k, v in kw.items()}
    return lambda name: table.get(name)


def test_from_macros_plaintext_and_tls() -> None:
    assert from_macros(macros()) is None
    t = from_macros(
        macros(
            tls_version="TLSv1.2",
            cipher="ECDHE-RSA-AES128-GCM-SHA256",
            cipher_bits="128",
            cert_subject="client.example",
            cert_issuer="Test CA",
        )
    )
    assert t is not None
    assert t.record() == {
        "tls_version": "TLSv1.2",
        "tls_cipher": "ECDHE-RSA-AES128-GCM-SHA256",
        "tls_cipher_bits": 128,
        "tls_cert_subject": "client.example",
        "tls_cert_issuer": "Test CA",
    }


@pytest.mark.parametrize(
    "kw,version,bits",
    [
        ({"tls_version": "banana", "cipher_bits": "lots"}, "unknown", None),
        ({"cipher": "AES", "cipher_bits": "-1"}, "unknown", None),
        ({"tls_version": b"TLSv1.3", "cipher_bits": "9" * 40}, "TLSv1.3", None),
        ({"tls_version": "TLSv1.3", "cipher_bits": "256"}, "TLSv1.3", 256),
        ({"tls_version": "TLSv1.3", "cipher_bits": "\u00b2"}, "TLSv1.3", None),  # "²".isdigit()
        ({"tls_version": "TLSv1.3", "cipher_bits": "\uff12\uff15\uff16"}, "TLSv1.3", None),  # fullwidth
    ],
)
def test_garbage_macros_give_defined_values(kw: dict[str, object], version: str, bits: int | None) -> None:
    t = from_macros(macros(**kw))
    assert t is not None and t.version == version and t.bits == bits


def test_control_characters_and_length_are_bounded() -> None:
    t = from_macros(macros(tls_version="TLSv1.2", cert_subject="CN=x\r\nInjected: yes" + "A" * 1000))
    assert t is not None and t.cert_subject is not None
    assert "\n" not in t.cert_subject and len(t.cert_subject) == 256


def test_clean_matches_the_per_character_rule() -> None:
    import random

    from mailpolicy.tls import clean

    def ref(value: object, limit: int = 256) -> str | None:
        if value is None:
            return None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return "".join(c if c.isprintable() else "?" for c in str(value).strip())[:limit] or None

    rng = random.Random(5321)
    alphabet = "abc XYZ.-@<>\t\r\n\x00\x7f\u00e9\u200b\u2028\udcc3 "
    samples: list[object] = [None, "", "  ", b"mx.example\xff", 42, "ok.example", "caf\udcc3\udca9"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40))) for _ in range(3000)]
    for value in samples:
        for limit in (256, 8, 1):
            assert clean(value, limit) == ref(value, limit), (value, limit)


@pytest.mark.parametrize(
    "raw,decoded",
    [
        ("/C=XX/O=Client+20Org,+20Inc./CN=a.example", "/C=XX/O=Client Org, Inc./CN=a.example"),
        ("/O=A\\+2BB", "/O=A\\+B"),  # OpenSSL's escaped "+", xtext-encoded
        ("/CN=caf+C3+A9", "/CN=caf\u00e9"),  # UTF-8 bytes
        ("/CN=bad+FF+FE", "/CN=bad\ufffd\ufffd"),  # not UTF-8
        ("/CN=+2", "/CN=+2"),  # truncated escape stays
        ("/CN=+GG+", "/CN=+GG+"),
        ("no escapes", "no escapes"),
    ],
)
def test_xtext_decode(raw: str, decoded: str) -> None:
    from mailpolicy.tls import xtext_decode

    assert xtext_decode(raw) == decoded


def sendmail_tls(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "tls_version": "TLSv1.3",
        "cipher": "TLS_AES_256_GCM_SHA384",
        "cipher_bits": "256",
    }
    return base | kw


def test_sendmail_verified_certificate_is_decoded() -> None:
    t = from_macros(
        macros(
            **sendmail_tls(
                verify="OK", cert_subject="/O=Client+20Org/CN=c.example", cert_issuer="/CN=Test+20CA"
            )
        )
    )
    assert t is not None
    assert (t.cert_subject, t.cert_issuer) == ("/O=Client Org/CN=c.example", "/CN=Test CA")


@pytest.mark.parametrize("verify", ["FAIL", "NO", "NONE", "TEMP", "PROTOCOL", "SOFTWARE", "ok", "garbage"])
def test_sendmail_certificate_that_did_not_verify_is_not_recorded(verify: str) -> None:
    """Sendmail sends the DN of any certificate the client shows; the record keeps only a verified
    one (``{verify}`` exactly ``OK``), as Postfix does: the field means the same under both MTAs."""
    t = from_macros(macros(**sendmail_tls(verify=verify, cert_subject="/CN=rogue", cert_issuer="/CN=rogue")))
    assert t is not None and t.version == "TLSv1.3"
    assert (t.cert_subject, t.cert_issuer) == (None, None)


def test_sendmail_empty_certificate_macros_and_decoded_control_characters() -> None:
    t = from_macros(macros(**sendmail_tls(verify="NO", cert_subject="", cert_issuer="")))
    assert t is not None and (t.cert_subject, t.cert_issuer) == (None, None)
    t = from_macros(
        macros(**sendmail_tls(verify="OK", cert_subject="/CN=x+0D+0AInjected:+20yes" + "+41" * 400))
    )
    assert t is not None and t.cert_subject is not None
    assert t.cert_subject.startswith("/CN=x??Injected: yesAAA") and len(t.cert_subject) == 256


def test_postfix_certificate_is_kept_as_sent() -> None:
    """No {verify} (Postfix): the CN is recorded as sent, a "+HH" in it is not xtext."""
    t = from_macros(macros(tls_version="TLSv1.2", cipher="X", cert_subject="a+20b.example", cert_issuer="CA"))
    assert t is not None and (t.cert_subject, t.cert_issuer) == ("a+20b.example", "CA")
