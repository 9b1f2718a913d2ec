"""Unit tests for mailpolicy.auth.spf beyond the RFC 7208 suite."""

from __future__ import annotations

import time

import pytest
import spf as pyspf

from mailpolicy.auth import spf
from support.dnsserver import DnsServer


def test_mailfrom_scope(dns: DnsServer) -> None:
    dns.add("example.org", "TXT", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all")
    r = spf.evaluate("192.0.2.5", "Bounce@Example.org", "mail.example.org", 2.0)
    assert (r.result, r.scope, r.domain, r.identity) == (
        "pass",
        "mailfrom",
        "example.org",
        "Bounce@Example.org",
    )
    assert spf.evaluate("2001:db8::1", "b@example.org", "h", 2.0).result == "pass"
    assert spf.evaluate("::ffff:192.0.2.5", "b@example.org", "h", 2.0).result == "pass"
    assert spf.evaluate("198.51.100.1", "b@example.org", "h", 2.0).result == "fail"


def test_null_sender_uses_helo(dns: DnsServer) -> None:
    dns.add("mail.example.org", "TXT", "v=spf1 ip4:192.0.2.5 ~all")
    r = spf.evaluate("192.0.2.6", "", "mail.example.org", 2.0)
    assert (r.result, r.scope, r.domain, r.identity) == (
        "softfail",
        "helo",
        "mail.example.org",
        "mail.example.org",
    )


def test_nothing_to_check_is_none(dns: DnsServer) -> None:
    assert spf.evaluate(None, "a@example.org", "h", 2.0).result == "none"
    assert spf.evaluate("192.0.2.1", "", None, 2.0).result == "none"
    assert spf.evaluate("192.0.2.1", "a@nodomain.example", "h", 2.0).result == "none"


def test_dns_timeout_is_temperror(dns: DnsServer) -> None:
    dns.timeout("slow.example")
    r = spf.evaluate("192.0.2.1", "a@slow.example", "h", 1.0)
    assert r.result == "temperror"


def test_library_exception_is_temperror(dns: DnsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(pyspf.query, "check", boom)
    r = spf.evaluate("192.0.2.1", "a@example.org", "h", 1.0)
    assert (r.result, r.reason) == ("temperror", "internal error: KeyError")


def test_macro_expansion_cost_is_bounded(dns: DnsServer) -> None:
    """pyspf's macro expansion is quadratic in the number of dots: an SPF record of the sender's
    own with a 50 KB exp= took 14 s of CPU per MAIL FROM. Such terms are permerror; an overlong
    explanation record holding macros is ignored (the default explanation is used)."""
    long_exp = "v=spf1 -all exp=" + "%{d}." * 10000 + "x"
    dns.add("slowexp.example", "TXT", long_exp)
    dns.add("slowexpl.example", "TXT", "v=spf1 -all exp=why.slowexpl.example")
    dns.add("why.slowexpl.example", "TXT", "%{d}. " * 8000)
    dns.add("okexpl.example", "TXT", "v=spf1 -all exp=why.okexpl.example")
    dns.add("why.okexpl.example", "TXT", "Not allowed: %{i} for %{d}")
    t0 = time.perf_counter()
    r = spf.evaluate("192.0.2.1", "a@slowexp.example", "h.example", 2.0)
    assert r.result == "permerror" and "macro longer than 512 bytes" in r.reason
    r = spf.evaluate("192.0.2.1", "a@slowexpl.example", "h.example", 2.0)
    assert (r.result, r.reason) == ("fail", "SPF fail - not authorized")
    assert time.perf_counter() - t0 < 3  # generous: both answers cost milliseconds
    r = spf.evaluate("192.0.2.1", "a@okexpl.example", "h.example", 2.0)
    assert (r.result, r.reason) == ("fail", "Not allowed: 192.0.2.1 for okexpl.example")
