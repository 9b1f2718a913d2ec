"""Unit tests for mailpolicy.auth.header: building our A-R header and finding forged ones."""

from __future__ import annotations

import authres
import pytest

from mailpolicy.auth import AuthResults, DkimResult, DmarcResult, SpfResult
from mailpolicy.auth.header import authserv_id_of, build, fold, forged_indexes


def test_build_full_header() -> None:
    res = AuthResults(
        spf=SpfResult("softfail", "mailfrom", "example.org", "b@example.org"),
        dkim=[
            DkimResult("pass", "example.org", "s1", "rsa-sha256", 2048, "AbCdEfGh"),
            DkimResult(
                "temperror", "example.net", "s2", "ed25519-sha256", None, "12345678", "key lookup timeout"
            ),
        ],
        dmarc=DmarcResult("fail", "example.org", "example.org", "reject", "reject"),
    )
    value = build("mx.example.com", res)
    assert value == (
        "mx.example.com; spf=softfail smtp.mailfrom=b@example.org; "
        "dkim=pass (2048-bit key) header.d=example.org header.b=AbCdEfGh header.s=s1 header.a=rsa-sha256; "
        'dkim=temperror reason="key lookup timeout" header.d=example.net header.b=12345678 header.s=s2 '
        "header.a=ed25519-sha256; dmarc=fail header.from=example.org policy.dmarc=reject"
    )
    parsed = authres.AuthenticationResultsHeader.parse_value(value)  # it is valid RFC 8601
    assert [r.method for r in parsed.results] == ["spf", "dkim", "dkim", "dmarc"]
    assert authserv_id_of(value) == "mx.example.com"


def test_build_helo_scope_and_empty() -> None:
    res = AuthResults(spf=SpfResult("pass", "helo", "mail.example.org", "mail.example.org"))
    assert build("mx", res) == "mx; spf=pass smtp.helo=mail.example.org"
    assert build("mx", AuthResults()) == "mx; none"
    dm = AuthResults(dmarc=DmarcResult("none", "example.org"))
    assert build("mx", dm) == "mx; dmarc=none header.from=example.org"


def test_build_strips_unsafe_characters() -> None:
    res = AuthResults(spf=SpfResult("pass", "mailfrom", "x", 'a b;c"d@example.org'))
    assert build("mx", res) == "mx; spf=pass smtp.mailfrom=abcd@example.org"


@pytest.mark.parametrize(
    ("value", "claimed"),
    [
        ("mx.example.com; spf=pass", "mx.example.com"),
        (" MX.Example.COM ; dkim=pass", "mx.example.com"),
        ("(comment) mx.example.com.; none", "mx.example.com"),
        ("\n\tmx.example.com;\n\tdkim=pass", "mx.example.com"),
        ("mx.example.com 1; spf=pass", "mx.example.com"),
        ("other.example; spf=pass", "other.example"),
        ('"mx.example.com"; none', "mx.example.com"),
        ("", None),
    ],
)
def test_authserv_id_of(value: str, claimed: str | None) -> None:
    assert authserv_id_of(value) == claimed


def test_forged_indexes_count_only_ar_fields() -> None:
    headers = [
        ("Received", "from x"),
        ("Authentication-Results", " mx.example.com; dmarc=pass"),
        ("authentication-results", " mx.example.org; spf=pass"),
        ("From", "a@example.org"),
        ("AUTHENTICATION-RESULTS", "(x)\n\tMX.EXAMPLE.COM;\n\tdkim=pass"),
        ("X-Authentication-Results", "mx.example.com; spf=pass"),
    ]
    assert forged_indexes(headers, "mx.example.com") == [1, 3]
    assert forged_indexes(headers, "MX.example.org.") == [2]
    assert forged_indexes(headers, "elsewhere.example") == []


def test_values_and_reasons_are_sanitised_and_long_headers_folded() -> None:
    res = AuthResults(
        spf=SpfResult("pass", "mailfrom", "x", "o'neil+tag!x@example.org"),
        dkim=[DkimResult("permerror", "example.org", "s", "rsa-sha256", reason='bad "key"; \\x')],
    )
    value = build("mx", res)
    assert "smtp.mailfrom=o'neil+tag!x@example.org" in value
    assert 'reason="bad key x"' in value
    assert fold(value) == value  # short: one line
    long = value + "; " + "; ".join(["dkim=pass header.d=example.org"] * 8)
    lines = fold(long).split("\n\t")
    assert len(lines) == 11 and all(line.endswith(";") for line in lines[:-1])
    assert fold(long).replace(";\n\t", "; ") == long
