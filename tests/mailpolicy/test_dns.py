"""Unit tests for mailpolicy.dns: nameserver parsing, outcomes, cache, metrics, pyspf/dkimpy hooks,
per-thread DNS error collection, resolv.conf reading."""

from __future__ import annotations

import pathlib
import threading

import pytest
import spf as pyspf
from prometheus_client import REGISTRY

from mailpolicy import dns as mdns
from support.dnsserver import DnsServer


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[2001:db8::1]", ("2001:db8::1", 53)),
    ],
)
def test_parse_nameserver(text: str, parsed: tuple[str, int]) -> None:
    assert mdns.parse_nameserver(text) == parsed


@pytest.mark.parametrize("text", ["ns.example.org", "127.0.0.1:0", "127.0.0.1:70000", "[::1]:x", "1.2.3"])
def test_parse_nameserver_errors(text: str) -> None:
    with pytest.raises(ValueError):
        mdns.parse_nameserver(text)


# "²" (isdigit(), but int() fails), Arabic-Indic 53 and fullwidth 53 (int() reads both)
@pytest.mark.parametrize("port", ["\u00b2", "\u0665\u0663", "\uff15\uff13"])
def test_parse_nameserver_ports_are_ascii_digits(port: str) -> None:
    with pytest.raises(ValueError, match="port must be 1-65535"):
        mdns.parse_nameserver(f"127.0.0.1:{port}")


def _count(rtype: str, outcome: str) -> float:
    v = REGISTRY.get_sample_value("mailpolicy_dns_queries_total", {"type": rtype, "outcome": outcome})
    return v or 0.0


def test_outcomes_and_metrics(dns: DnsServer) -> None:
    dns.add("example.org", "TXT", "v=spf1 -all")
    dns.add("deep.sub.example.org", "A", "192.0.2.1")
    dns.timeout("slow.example.org")
    dns.servfail("broken.example.org")
    r = mdns.get()
    cases = [
        ("example.org", "TXT", "ok"),
        ("example.org", "MX", "nodata"),
        ("sub.example.org", "A", "nodata"),  # empty non-terminal
        ("nx.example.org", "A", "nxdomain"),
        ("slow.example.org", "TXT", "timeout"),
        ("broken.example.org", "TXT", "servfail"),
        ("a" * 64 + ".example.org", "A", "nxdomain"),  # an impossible name is never a failure
    ]
    for name, rtype, outcome in cases:
        before = _count(rtype, outcome)
        assert r.query(name, rtype).outcome == outcome, name
        assert _count(rtype, outcome) == before + 1
    assert r.query("example.org", "TXT").txt() == [b"v=spf1 -all"]


def test_cache_is_shared_and_respects_ttl(dns_server: DnsServer) -> None:
    dns_server.clear()
    dns_server.add("cached.example", "A", "192.0.2.7")
    r = mdns.Resolver([mdns.parse_nameserver(dns_server.nameserver)], 0.5, 100)
    assert r.query("cached.example", "A").outcome == "ok"
    assert r.query("cached.example", "A").outcome == "ok"
    assert dns_server.queries.count(("cached.example", "A")) == 1
    r.clear_cache()
    r.query("cached.example", "A")
    assert dns_server.queries.count(("cached.example", "A")) == 2
    dns_server.clear()


def test_collect_errors_is_per_thread(dns: DnsServer) -> None:
    dns.timeout("slow.example.org")
    mine: list[str] = []
    other: list[str] = []

    def elsewhere() -> None:
        with mdns.collect_errors(other):
            mdns.get().query("nx.example.org", "A")

    with mdns.collect_errors(mine):
        t = threading.Thread(target=elsewhere)
        t.start()
        t.join()
        mdns.get().query("slow.example.org", "TXT")
        mdns.get().query("slow.example.org", "TXT")
    mdns.get().query("slow.example.org", "A")  # outside the block: not collected
    assert mine == ["TXT slow.example.org: timeout"]
    assert other == []


def test_spf_hook_installed_once_and_maps_failures(dns: DnsServer) -> None:
    assert pyspf.DNSLookup is mdns.spf_dns_lookup
    dns.add("example.org", "A", "192.0.2.1")
    dns.add("example.org", "MX", (10, "mx.example.org"))
    dns.add("example.org", "TXT", ["v=spf1 ", "-all"])
    dns.add("alias.example.org", "CNAME", "example.org")
    dns.timeout("slow.example.org")
    assert mdns.spf_dns_lookup("alias.example.org", "A") == [(("alias.example.org", "A"), "192.0.2.1")]
    assert mdns.spf_dns_lookup("example.org", "TXT") == [(("example.org", "TXT"), (b"v=spf1 ", b"-all"))]
    [((_, _), (pref, host))] = mdns.spf_dns_lookup("example.org", "MX")
    assert (pref, str(host)) == (10, "mx.example.org.")
    assert mdns.spf_dns_lookup("nx.example.org", "A") == []
    with pytest.raises(pyspf.TempError):
        mdns.spf_dns_lookup("slow.example.org", "TXT")


def test_dkim_dnsfunc(dns: DnsServer) -> None:
    dns.add("s._domainkey.example.org", "TXT", "v=DKIM1; p=" + "A" * 400)
    dns.servfail("bad._domainkey.example.org")
    assert mdns.dkim_dnsfunc(b"s._domainkey.example.org.") == b"v=DKIM1; p=" + b"A" * 400
    assert mdns.dkim_dnsfunc("none._domainkey.example.org") is None
    with pytest.raises(mdns.DnsTempError):
        mdns.dkim_dnsfunc("bad._domainkey.example.org")


def test_resolv_conf(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "resolv.conf"
    p.write_text(
        "# c\nsearch example.org\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver bogus\n"
    )
    assert mdns.resolv_conf_nameservers(str(p)) == [("192.0.2.53", 53), ("fe80::1", 53)]


def test_resolver_needs_nameservers() -> None:
    with pytest.raises(ValueError):
        mdns.Resolver([], 1.0, 0)


def test_large_answer_retried_over_tcp(dns: DnsServer) -> None:
    dns.add("big.example.org", "TXT", "v=spf1 " + "ip4:192.0.2.1 " * 300)
    ans = mdns.get().query("big.example.org", "TXT")
    assert ans.outcome == "ok" and len(ans.txt()[0]) > 4000


def test_ipv6_server() -> None:
    try:
        srv = DnsServer({"v6.example": [("AAAA", "2001:db8::1")]}, host="::1").start()
    except OSError as exc:  # no IPv6 loopback on this host
        pytest.fail(f"::1 unavailable: {exc}")
    try:
        assert srv.nameserver == f"[::1]:{srv.port}"
        r = mdns.Resolver([mdns.parse_nameserver(srv.nameserver)], 0.5, 0)
        assert [x.address for x in r.query("v6.example", "AAAA").records] == ["2001:db8::1"]
    finally:
        srv.stop()


def test_setup_dns_reads_resolv_conf_only_when_unconfigured(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, dns: DnsServer
) -> None:
    from mailpolicy import config, server

    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.53\n")
    monkeypatch.setattr(mdns, "RESOLV_CONF", str(conf))
    server.setup_dns(config.parse({}))
    assert mdns.get().nameservers == (("127.0.0.53", 53),)
    server.setup_dns(config.parse({"dns": {"nameservers": [dns.nameserver]}}))
    assert mdns.get().nameservers == (mdns.parse_nameserver(dns.nameserver),)
    conf.write_text("# nothing\n")
    with pytest.raises(server.StartupError, match="lists no nameserver"):
        server.setup_dns(config.parse({}))


def test_warm_answers_are_counted_and_expire_with_their_ttl(
    dns_server: DnsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Positive answers are served from memory until dnspython's expiration (TTL 300 here); every
    lookup is still counted; after the TTL the record is fetched again (and may have changed)."""
    import time

    dns_server.clear()
    dns_server.add("ttl.example", "TXT", "v=spf1 -all")
    r = mdns.Resolver([mdns.parse_nameserver(dns_server.nameserver)], 0.5, 100)
    before = _count("TXT", "ok")
    first = r.query("ttl.example", "TXT")
    assert r.query("ttl.example", "TXT") == first and r.query(b"ttl.example", "TXT") == first
    assert first.txt() == [b"v=spf1 -all"]
    assert dns_server.queries.count(("ttl.example", "TXT")) == 1
    assert _count("TXT", "ok") == before + 3
    dns_server.clear()
    dns_server.add("ttl.example", "TXT", "v=spf1 +all")
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 299)
    assert r.query("ttl.example", "TXT").txt() == [b"v=spf1 -all"]
    monkeypatch.setattr(time, "time", lambda: now + 301)
    assert r.query("ttl.example", "TXT").txt() == [b"v=spf1 +all"]
    assert dns_server.queries.count(("ttl.example", "TXT")) == 1  # cleared with the records above
    monkeypatch.undo()
    dns_server.clear()


def test_warm_answers_are_bounded_and_flushed(dns_server: DnsServer) -> None:
    dns_server.clear()
    for i in range(4):
        dns_server.add(f"n{i}.example", "A", f"192.0.2.{i + 1}")
    r = mdns.Resolver([mdns.parse_nameserver(dns_server.nameserver)], 0.5, 2)
    for i in range(4):
        assert r.query(f"n{i}.example", "A").outcome == "ok"
    assert len(r._hits) == 2
    r.clear_cache()
    assert not r._hits
    assert r.query("n0.example", "A").records[0].address == "192.0.2.1"
    assert dns_server.queries.count(("n0.example", "A")) == 2
    uncached = mdns.Resolver([mdns.parse_nameserver(dns_server.nameserver)], 0.5, 0)
    uncached.query("n0.example", "A")
    uncached.query("n0.example", "A")
    assert not uncached._hits and dns_server.queries.count(("n0.example", "A")) == 4
    dns_server.clear()


def test_warm_negative_answers_follow_dnspython_negative_cache(
    dns_server: DnsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NXDOMAIN and NODATA are served from memory while dnspython's negative entry lives (300 s:
    this server sends no SOA), counted with their outcome; SERVFAIL is never kept."""
    import time

    dns_server.clear()
    dns_server.add("exists.example", "TXT", "v=spf1 -all")
    dns_server.servfail("broken.example")
    r = mdns.Resolver([mdns.parse_nameserver(dns_server.nameserver)], 0.5, 100)
    nx, nodata, fail = _count("TXT", "nxdomain"), _count("A", "nodata"), _count("TXT", "servfail")
    for _ in range(3):
        assert r.query("missing.example", "TXT").outcome == "nxdomain"
        assert r.query("exists.example", "A").outcome == "nodata"
        assert r.query("broken.example", "TXT").outcome == "servfail"
    assert dns_server.queries.count(("missing.example", "TXT")) == 1
    assert dns_server.queries.count(("exists.example", "A")) == 1
    assert dns_server.queries.count(("broken.example", "TXT")) == 3
    assert _count("TXT", "nxdomain") == nx + 3 and _count("A", "nodata") == nodata + 3
    assert _count("TXT", "servfail") == fail + 3
    dns_server.add("missing.example", "TXT", "v=spf1 +all")
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 299)
    assert r.query("missing.example", "TXT").outcome == "nxdomain"
    monkeypatch.setattr(time, "time", lambda: now + 301)
    assert r.query("missing.example", "TXT").txt() == [b"v=spf1 +all"]
    monkeypatch.undo()
    dns_server.clear()
