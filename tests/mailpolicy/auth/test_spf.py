"""Unit tests for mailpolicy.auth.spf beyond the RFC 7208 suite."""

from __future__ import annotations

import time

import pytest
import spf as pyspf
from hypothesis import given, settings
from hypothesis import strategies as st

from mailpolicy import envelope
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


# ---- the domain checked is the domain recorded (and the cache key) ----------------------------


def test_a_quoted_local_part_holding_at_is_checked_at_the_domain_after_the_last_at(dns: DnsServer) -> None:
    """A3: RFC 5321 allows "@" in a quoted local part. pyspf splits at the first "@" and used to
    look up 'y"@victim.example' (no record: none) while the result was recorded, and reused, for
    victim.example: an enforced spf policy let MAIL FROM:<"x@y"@victim.example> through."""
    dns.add("victim.example", "TXT", "v=spf1 ip4:192.0.2.20 -all")
    plain = spf.evaluate("198.51.100.7", "ceo@victim.example", "mx.attacker.example", 2.0)
    quoted = spf.evaluate("198.51.100.7", '"x@y"@victim.example', "mx.attacker.example", 2.0)
    assert (plain.result, plain.domain) == (quoted.result, quoted.domain) == ("fail", "victim.example")
    assert quoted.identity == '"x@y"@victim.example'
    allowed = spf.evaluate("192.0.2.20", '"x@y"@victim.example', "mx.attacker.example", 2.0)
    assert (allowed.result, allowed.domain) == ("pass", "victim.example")
    assert spf.evaluate("198.51.100.7", "a@b@victim.example", "h", 2.0).result == "fail"


@pytest.mark.parametrize(
    ("mail_from", "helo", "local", "domain", "sender"),
    [
        ('"x@y"@victim.example', "h.example", '"x@y"', "victim.example", '"x@y"@victim.example'),
        ("a@b@Victim.Example.", "h.example", "a@b", "victim.example", "a@b@victim.example"),
        ("@victim.example", "h.example", "postmaster", "victim.example", "postmaster@victim.example"),
        ("ceo", "victim.example", "postmaster", "victim.example", "postmaster@victim.example"),
        ("ceo@", "victim.example", "postmaster", "victim.example", "postmaster@victim.example"),
        ("", "Victim.Example", "postmaster", "victim.example", "postmaster@victim.example"),
    ],
)
def test_pyspf_checks_exactly_the_domain_recorded(
    dns: DnsServer,
    monkeypatch: pytest.MonkeyPatch,
    mail_from: str,
    helo: str,
    local: str,
    domain: str,
    sender: str,
) -> None:
    """The local part (%{l}), domain (%{o}, %{d}) and sender (%{s}) pyspf works with are ours: the
    part after the last "@", the one the result is recorded and reused under."""
    seen: list[tuple[str, str, str, str]] = []

    def check(self: pyspf.query) -> tuple[str, int, str]:
        seen.append((self.l, self.o, self.d, self.s))
        return "neutral", 250, ""

    monkeypatch.setattr(pyspf.query, "check", check)
    r = spf.evaluate("198.51.100.7", mail_from, helo, 2.0)
    assert (r.result, r.domain) == ("neutral", domain)
    assert seen == [(local, domain, domain, sender)]


def test_the_local_part_macro_is_the_real_local_part(dns: DnsServer) -> None:
    dns.add("macro.example", "TXT", "v=spf1 exists:%{l}.ok.macro.example -all")
    dns.add("a@b.ok.macro.example", "A", "127.0.0.2")
    assert spf.evaluate("192.0.2.1", "a@b@macro.example", "h", 2.0).result == "pass"
    assert spf.evaluate("192.0.2.1", "a@macro.example", "h", 2.0).result == "fail"  # not 'a'


def test_a_quoted_local_part_or_a_missing_domain_cannot_poison_the_reuse(cached_dns: DnsServer) -> None:
    """The result reused for (client IP, domain) was computed for another domain: a record at
    'y"@victim.example' (under .example, not victim.example's) or at the MAIL FROM without "@"
    made every later sender of victim.example from that IP pass."""
    cached_dns.add("victim.example", "TXT", "v=spf1 -all")
    cached_dns.add('y"@victim.example', "TXT", "v=spf1 +all")
    cached_dns.add("ceo", "TXT", "v=spf1 +all")
    for first, helo in (('"x@y"@victim.example', "h.example"), ("ceo", "victim.example")):
        spf.clear_cache()
        r = spf.evaluate("198.51.100.7", first, helo, 2.0)
        assert (r.result, r.domain) == ("fail", "victim.example"), first
        later = spf.evaluate("198.51.100.7", "ceo@victim.example", "h.example", 2.0)
        assert (later.result, later.domain) == ("fail", "victim.example"), first


# ---- over-long envelope addresses ---------------------------------------------------------------


def test_an_address_up_to_the_bound_is_checked_whole(dns: DnsServer) -> None:
    dns.add("victim.example", "TXT", "v=spf1 -all")
    sender = "a" * (envelope.MAX_ADDRESS - len("@victim.example")) + "@victim.example"
    assert len(sender) == envelope.MAX_ADDRESS and envelope.shortened(sender) == sender
    r = spf.evaluate("198.51.100.7", sender, "h", 2.0)
    assert (r.result, r.domain, r.identity) == ("fail", "victim.example", sender)


def test_an_over_long_address_is_never_decided_as_if_whole(cached_dns: DnsServer) -> None:
    """Kept shortened (envelope.shortened): the domain's own result when the domain was kept and no
    record consulted holds a macro (the local part cannot matter), else permerror."""
    cached_dns.add("victim.example", "TXT", "v=spf1 ip4:192.0.2.20 -all")
    cached_dns.add("macro.example", "TXT", "v=spf1 exists:%{l}.ok.macro.example -all")
    long_local = "a" * (envelope.MAX_ADDRESS + 1)
    kept = envelope.shortened(long_local + "@victim.example")
    assert len(kept) > envelope.MAX_ADDRESS and kept.endswith(envelope.CUT + "@victim.example")
    for ip, result in (("198.51.100.7", "fail"), ("192.0.2.20", "pass")):
        r = spf.evaluate(ip, kept, "h", 2.0)
        assert (r.result, r.domain, r.identity) == (result, "victim.example", kept)
    macro = envelope.shortened(long_local + "@macro.example")
    for _ in range(2):  # never reused either
        r = spf.evaluate("192.0.2.1", macro, "h", 2.0)
        assert (r.result, r.domain, r.reason) == (
            "permerror",
            "macro.example",
            f"{envelope.TOO_LONG}, SPF record with macros",
        )
    for no_domain in (
        envelope.shortened(long_local),
        envelope.shortened(long_local + "@victim.example", keep_domain=False),
        envelope.shortened("a@" + long_local + ".victim.example"),
    ):
        r = spf.evaluate("198.51.100.7", no_domain, "victim.example", 2.0)
        assert (r.result, r.scope, r.domain, r.reason) == ("permerror", "mailfrom", None, envelope.TOO_LONG)


_ADDRESS_PART = st.text(alphabet=st.sampled_from(["a", "B", "@", '"', " ", ".", "\u00e9", "x"]), max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    head=_ADDRESS_PART,
    n=st.integers(min_value=0, max_value=envelope.MAX_ADDRESS + 400),
    tail=_ADDRESS_PART,
    keep_domain=st.booleans(),
)
def test_property_a_shortened_address_says_so_and_keeps_only_whole_parts(
    head: str, n: int, tail: str, keep_domain: bool
) -> None:
    from mailpolicy.model import Exemptions

    address = head + "x" * n + tail
    kept = envelope.shortened(address, keep_domain)
    if len(address) <= envelope.MAX_ADDRESS:
        assert kept == address
        return
    assert len(kept) > envelope.MAX_ADDRESS  # how SPF and the session know
    local, at, domain = kept.rpartition("@")
    real_domain = address.rpartition("@")[2]
    if kept.endswith(envelope.CUT):  # nothing of it is usable: no blank-free part to match or look up
        addr = kept.strip().strip("<>").lower()
        local, _, domain = addr.rpartition("@")
        assert " " in local and " " in domain
        # Any pattern the configuration accepts (no blank) built from the address or what was kept.
        candidates = {"x@", "@x"}
        for text in (address.lower(), addr):
            for i, c in enumerate(text):
                if c == "@":
                    candidates |= {text[: i + 1], text[i:], text}
        patterns = tuple(p for p in candidates if p.strip("@") and not any(c.isspace() for c in p))
        assert not Exemptions(recipients=patterns).recipient_exempt(kept)
    else:  # the domain, whole; the local part visibly cut
        assert keep_domain and at and domain == real_domain and local.endswith(envelope.CUT)
