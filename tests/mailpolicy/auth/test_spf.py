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


# ---- reuse of results -------------------------------------------------------------------------


@pytest.fixture
def cached_dns(dns: DnsServer) -> DnsServer:
    """The test server behind a resolver with a cache (the ``dns`` fixture has none)."""
    from mailpolicy import dns as mdns

    mdns.install(mdns.Resolver([mdns.parse_nameserver(dns.nameserver)], 0.3, 1000))
    return dns


def reused() -> float:
    from mailpolicy import metrics

    return metrics.SPF_REUSED.labels().value


def test_result_is_reused_for_every_address_of_a_domain_without_macros(cached_dns: DnsServer) -> None:
    cached_dns.add("example.org", "TXT", "v=spf1 a:mx.example.org -all")
    cached_dns.add("mx.example.org", "A", "192.0.2.5")
    before = reused()
    first = spf.evaluate("192.0.2.5", "bounce-1234@example.org", "h1.example", 2.0)
    queries = len(cached_dns.queries)
    second = spf.evaluate("192.0.2.5", "Bounce-5678@EXAMPLE.org", "h2.example", 2.0)
    assert (first.result, second.result) == ("pass", "pass")
    assert second.identity == "Bounce-5678@EXAMPLE.org" and second.domain == "example.org"
    assert len(cached_dns.queries) == queries and reused() == before + 1
    # Another client IP is another result.
    assert spf.evaluate("192.0.2.6", "x@example.org", "h", 2.0).result == "fail"
    assert reused() == before + 1


def test_a_record_with_macros_keys_on_the_whole_address_and_helo(cached_dns: DnsServer) -> None:
    cached_dns.add("example.org", "TXT", "v=spf1 exists:%{l}.allowed.example.org -all")
    cached_dns.add("alice.allowed.example.org", "A", "127.0.0.2")
    assert spf.evaluate("192.0.2.5", "alice@example.org", "h", 2.0).result == "pass"
    assert spf.evaluate("192.0.2.5", "mallory@example.org", "h", 2.0).result == "fail"
    before = reused()
    assert spf.evaluate("192.0.2.5", "alice@example.org", "h", 2.0).result == "pass"
    assert spf.evaluate("192.0.2.5", "mallory@example.org", "h", 2.0).result == "fail"
    assert reused() == before + 2
    # An exp= text with macros also makes the whole address part of the key.
    cached_dns.add("exp.example", "TXT", "v=spf1 -all exp=why.exp.example")
    cached_dns.add("why.exp.example", "TXT", "%{l} may not send")
    assert spf.evaluate("192.0.2.5", "bob@exp.example", "h", 2.0).reason == "bob may not send"
    assert spf.evaluate("192.0.2.5", "eve@exp.example", "h", 2.0).reason == "eve may not send"


def test_a_failed_lookup_is_never_reused(cached_dns: DnsServer) -> None:
    cached_dns.add("example.org", "TXT", "v=spf1 include:slow.example -all")
    cached_dns.timeout("slow.example")
    before = reused()
    assert spf.evaluate("192.0.2.5", "a@example.org", "h", 1.0).result == "temperror"
    assert spf.evaluate("192.0.2.5", "a@example.org", "h", 1.0).result == "temperror"
    assert reused() == before


def test_an_uncached_answer_is_never_reused(dns: DnsServer) -> None:
    dns.add("example.org", "TXT", "v=spf1 ip4:192.0.2.5 -all")  # the dns fixture caches nothing
    before = reused()
    for _ in range(3):
        assert spf.evaluate("192.0.2.5", "a@example.org", "h", 2.0).result == "pass"
    assert reused() == before


def test_reuse_ends_with_the_answers(cached_dns: DnsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the earliest TTL of the answers used (300 s here) the result is evaluated again, from
    new answers: a changed record is seen. A new resolver forgets every result at once."""
    from mailpolicy import dns as mdns

    cached_dns.add("example.org", "TXT", "v=spf1 ip4:192.0.2.5 -all")
    assert spf.evaluate("192.0.2.5", "a@example.org", "h", 2.0).result == "pass"
    cached_dns.clear()
    cached_dns.add("example.org", "TXT", "v=spf1 -all")
    assert spf.evaluate("192.0.2.5", "a@example.org", "h", 2.0).result == "pass"  # within the TTL
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 301)  # dnspython's cache uses it too
    assert spf.evaluate("192.0.2.5", "a@example.org", "h", 2.0).result == "fail"
    monkeypatch.undo()
    cached_dns.clear()
    cached_dns.add("example.org", "TXT", "v=spf1 ip4:192.0.2.5 -all")
    assert spf.evaluate("192.0.2.5", "a@example.org", "h", 2.0).result == "fail"  # cached again
    mdns.install(mdns.Resolver([mdns.parse_nameserver(cached_dns.nameserver)], 0.3, 1000))
    assert spf.evaluate("192.0.2.5", "a@example.org", "h", 2.0).result == "pass"


def test_reused_results_equal_fresh_ones(cached_dns: DnsServer) -> None:
    """Over records with and without macros, includes, redirects and missing names: every result
    given while reusing equals the result of a fresh evaluation."""
    import random

    from mailpolicy import dns as mdns

    zone = {
        "plain.example": "v=spf1 ip4:192.0.2.0/28 include:inc.example ~all",
        "inc.example": "v=spf1 ip4:198.51.100.7 -all",
        "macro.example": "v=spf1 exists:%{l}.%{d}.ok.example exists:%{h}.helo.example -all",
        "redir.example": "v=spf1 redirect=plain.example",
        "void.example": "v=spf1 include:nowhere.example -all",
    }
    for name, text in zone.items():
        cached_dns.add(name, "TXT", text)
    cached_dns.add("alice.macro.example.ok.example", "A", "127.0.0.2")
    cached_dns.add("good.helo.example", "A", "127.0.0.2")
    rng = random.Random(7208)
    cases = [
        (
            rng.choice(["192.0.2.3", "192.0.2.77", "198.51.100.7", "203.0.113.9"]),
            f"{rng.choice(['alice', 'bob', 'Alice'])}@{rng.choice(list(zone))}",
            rng.choice(["good", "bad", "good.example"]),
        )
        for _ in range(120)
    ]
    given = [spf.evaluate(ip, sender, helo, 2.0) for ip, sender, helo in cases]
    assert reused() > 0
    fresh = []
    for ip, sender, helo in cases:
        mdns.get().clear_cache()
        fresh.append(spf.evaluate(ip, sender, helo, 2.0))
    assert given == fresh


def test_a_temperror_is_never_reused(cached_dns: DnsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyspf's total time limit gives temperror although every lookup answered (and was cached)."""
    cached_dns.add("example.org", "TXT", "v=spf1 ip4:192.0.2.5 -all")
    real = pyspf.query.check

    def out_of_time(self: pyspf.query) -> tuple[str, int, str]:
        real(self)
        raise pyspf.TempError("DNS time limit exceeded")

    monkeypatch.setattr(pyspf.query, "check", out_of_time)
    assert spf.evaluate("192.0.2.5", "a@example.org", "h", 2.0).result == "temperror"
    monkeypatch.undo()
    assert spf.evaluate("192.0.2.5", "a@example.org", "h", 2.0).result == "pass"


def test_a_reused_result_is_the_cached_one_with_the_identity_replaced() -> None:
    """The reuse path builds the copy field by field: it must stay dataclasses.replace."""
    import dataclasses

    from mailpolicy.auth import SpfResult

    names = ("result", "scope", "domain", "identity", "reason")
    assert tuple(f.name for f in dataclasses.fields(SpfResult)) == names
    cached = SpfResult("softfail", "mailfrom", "example.org", "a@example.org", "why")
    copy = spf._with_identity(cached, "b@example.org")
    assert copy == dataclasses.replace(cached, identity="b@example.org") and copy is not cached
