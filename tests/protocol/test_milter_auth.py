"""Protocol tests: the real milter process (``mailpolicy run``) on a unix socket, driven by the
MTA-side client in tests/support/milterclient.py, DNS pointed at the loopback test server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import dkimkeys
from support.dnsserver import DnsServer
from support.milterclient import MilterClient
from support.stack import MilterProcess

AUTHSERV = "mx.test.example"


@pytest.fixture(scope="module")
def zone(dns_server: DnsServer) -> Iterator[DnsServer]:
    s = dns_server
    s.clear()
    rsa, ed = dkimkeys.rsa_key(), dkimkeys.ed25519_key()
    s.load(
        {
            "good.example": [("TXT", "v=spf1 ip4:192.0.2.10 -all"), ("A", "192.0.2.10")],
            "_dmarc.good.example": [("TXT", "v=DMARC1; p=reject")],
            "sel._domainkey.good.example": [("TXT", rsa.record)],
            "ed._domainkey.good.example": [("TXT", ed.record)],
            "bank.example": [("TXT", "v=spf1 -all"), ("A", "192.0.2.20")],
            "_dmarc.bank.example": [("TXT", "v=DMARC1; p=reject; rua=mailto:d@bank.example")],
            "attacker.example": [("TXT", "v=spf1 ip4:198.51.100.7 -all")],
            "tempkey.example": [("TXT", "v=spf1 -all"), ("A", "192.0.2.30")],
            "_dmarc.tempkey.example": [("TXT", "v=DMARC1; p=reject")],
        }
    )
    s.timeout("slow.example")
    s.timeout("_dmarc.slow.example")
    s.timeout("s._domainkey.tempkey.example")
    yield s
    s.clear()


def _milter(zone: DnsServer, policies: dict[str, Any]) -> Iterator[MilterProcess]:
    m = MilterProcess(
        config={
            "milter": {"timeout": 30},
            "dns": {"nameservers": [zone.nameserver], "timeout": 0.3, "cache_size": 0},
            "auth": {"authserv_id": AUTHSERV, "spf_timeout": 1.0, "max_message_bytes": 64 * 1024 * 1024},
            "policies": policies,
        }
    ).start()
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture(scope="module")
def monitor(zone: DnsServer) -> Iterator[MilterProcess]:
    yield from _milter(zone, {"spf": {"mode": "monitor"}, "dmarc": {"mode": "monitor"}})


@pytest.fixture(scope="module")
def enforce(zone: DnsServer) -> Iterator[MilterProcess]:
    yield from _milter(zone, {"spf": {"mode": "enforce"}, "dmarc": {"mode": "enforce"}})


@pytest.fixture(scope="module")
def enforce_tempfail(zone: DnsServer) -> Iterator[MilterProcess]:
    yield from _milter(
        zone, {"spf": {"mode": "enforce"}, "dmarc": {"mode": "enforce", "temperror_action": "tempfail"}}
    )


def transact(m: MilterProcess, ip: str, helo: str, mail_from: str, message: bytes) -> tuple[Any, Any]:
    """One SMTP transaction; returns (MAIL reply, EOM reply or None when refused at MAIL)."""
    c = MilterClient(m.socket)
    try:
        c.connect(helo, ip, macros={"{daemon_name}": "smtpd"})
        c.helo(helo)
        mail = c.mail(mail_from)
        if not mail.continued:
            return mail, None
        c.rcpt("bob@example.net")
        headers, body = dkimkeys.split(message)
        return mail, c.message(headers, body, eom_macros={"i": "QID1"})
    finally:
        c.quit()


def ar_header(eom: Any, leadspc: bool = True) -> str:
    values = [
        a[1]["value"] for a in eom.actions if a[0] in ("h", "i") and a[1]["name"] == "Authentication-Results"
    ]
    assert len(values) == 1, eom.actions
    assert all(len(line) < 200 for line in values[0].split("\n"))
    if leadspc:  # P_HDR_LEADSPC negotiated: the MTA writes the value verbatim after the colon
        assert values[0].startswith(" ") and not values[0].startswith("  ")
        return str(values[0])[1:].replace("\n\t", " ")  # unfold
    assert not values[0].startswith(" ")
    return str(values[0]).replace("\n\t", " ")


def last_event(m: MilterProcess, n: int) -> dict[str, Any]:
    evs = m.wait_events(n)
    assert len(evs) == n
    return evs[-1]


def test_dkim_and_dmarc_pass(monitor: MilterProcess) -> None:
    msg = dkimkeys.message(from_="Alice <alice@good.example>")
    msg = dkimkeys.sign(msg, "good.example", "sel", dkimkeys.rsa_key())
    msg = dkimkeys.sign(msg, "good.example", "ed", dkimkeys.ed25519_key())
    n = len(monitor.events("transaction"))
    mail, eom = transact(monitor, "192.0.2.10", "mail.good.example", "bounce@good.example", msg)
    assert mail.continued and eom.continued
    ar = ar_header(eom)
    assert ar.startswith(f"{AUTHSERV}; spf=pass smtp.mailfrom=bounce@good.example;")
    assert re.search(
        r"dkim=pass \(\d+-bit key\) header.d=good.example header.b=\S+ header.s=sel header.a=rsa-sha256", ar
    )
    assert re.search(
        r"dkim=pass \(256-bit key\) header.d=good.example header.b=\S+ header.s=ed header.a=ed25519-sha256",
        ar,
    )
    assert ar.endswith("dmarc=pass header.from=good.example policy.dmarc=reject")
    ev = last_event(monitor, n + 1)
    assert ev["header_from_domain"] == "good.example"
    assert ev["spf"] == {"result": "pass", "scope": "mailfrom", "domain": "good.example"}
    assert [(d["result"], d["algorithm"], d["aligned"]) for d in ev["dkim"]] == [
        ("pass", "ed25519-sha256", True),
        ("pass", "rsa-sha256", True),
    ]
    assert ev["dkim"][1]["bits"] == 2048 and ev["dkim"][0]["bits"] == 256
    assert ev["dmarc"]["result"] == "pass" and ev["dmarc"]["policy"] == "reject"
    assert ev["dmarc"]["spf_aligned"] and ev["dmarc"]["dkim_aligned"]
    assert ev["authenticated"] is True and ev["dns_errors"] == []
    assert ev["policies"]["dmarc"]["action"] == "continue"


def test_spoofed_from_monitor_delivers_and_records_would_reject(monitor: MilterProcess) -> None:
    msg = dkimkeys.message(from_="CEO <ceo@bank.example>")
    n = len(monitor.events("transaction"))
    mail, eom = transact(monitor, "198.51.100.7", "mx.attacker.example", "x@attacker.example", msg)
    assert mail.continued and eom.continued
    # Monitor mode: only our header is added; nothing else changes.
    assert [a[0] for a in eom.actions] == ["i"]
    assert "dmarc=fail header.from=bank.example policy.dmarc=reject" in ar_header(eom)
    ev = last_event(monitor, n + 1)
    assert ev["dmarc"]["result"] == "fail" and ev["dmarc"]["disposition"] == "reject"
    assert ev["authenticated"] is False
    d = ev["policies"]["dmarc"]
    assert (d["mode"], d["result"], d["action"], d["applied"]) == ("monitor", "fail", "reject", False)
    assert ev["outcome"] == "accepted" and ev["final_action"] == "continue"
    text = monitor.metrics_text()
    assert re.search(
        r"mailpolicy_policy_decisions_total"
        r'\{action="reject",mode="monitor",policy="dmarc",result="fail"\} 1\.0',
        text,
    )


def test_spoofed_from_enforce_rejected_550(enforce: MilterProcess) -> None:
    msg = dkimkeys.message(from_="CEO <ceo@bank.example>")
    n = len(enforce.events("transaction"))
    mail, eom = transact(enforce, "198.51.100.7", "mx.attacker.example", "x@attacker.example", msg)
    assert mail.continued
    assert eom.text == "550 5.7.1 Message rejected by the DMARC policy of the sender domain"
    ev = last_event(enforce, n + 1)
    assert ev["outcome"] == "rejected" and ev["policies"]["dmarc"]["applied"] is True


def test_spf_fail_enforce_rejected_at_mail(enforce: MilterProcess) -> None:
    n = len(enforce.events("transaction"))
    mail, eom = transact(enforce, "203.0.113.9", "h.example", "x@attacker.example", b"")
    assert eom is None and mail.text == "550 5.7.23 SPF validation failed"
    ev = last_event(enforce, n + 1)
    assert ev["spf"]["result"] == "fail" and ev["stage"] == "mail" and ev["dkim"] == []


def test_forged_authentication_results_removed(monitor: MilterProcess) -> None:
    before = _metric(monitor.metrics_text(), "mailpolicy_authres_removed_total")
    msg = dkimkeys.message(
        from_="alice@good.example",
        extra=[
            ("Authentication-Results", f"{AUTHSERV}; dmarc=pass header.from=bank.example"),
            ("Authentication-Results", "other.example; spf=pass smtp.mailfrom=x@bank.example"),
            ("Authentication-Results", "(forged)\r\n\tMX.Test.Example;\r\n\tdkim=pass header.d=bank.example"),
        ],
    )
    _mail, eom = transact(monitor, "192.0.2.10", "mail.good.example", "b@good.example", msg)
    chg = [(a[1]["name"], a[1]["index"], a[1]["value"]) for a in eom.actions if a[0] == "m"]
    assert chg == [("Authentication-Results", 3, ""), ("Authentication-Results", 1, "")]
    assert [a[0] for a in eom.actions] == ["m", "m", "i"]
    assert _metric(monitor.metrics_text(), "mailpolicy_authres_removed_total") == before + 2
    # The event records the removal (waited for: later tests count this milter's events)
    ev = monitor.wait_event(lambda e: e.get("mail_from") == "b@good.example", "transaction")
    assert ev["authres_removed"] == 2 and ev["outcome"] == "accepted"


def test_dns_timeout_is_temperror_never_fail_never_reject(enforce: MilterProcess) -> None:
    n = len(enforce.events("transaction"))
    msg = dkimkeys.message(from_="a@slow.example")
    mail, eom = transact(enforce, "192.0.2.50", "h.slow.example", "a@slow.example", msg)
    assert mail.continued and eom.continued
    ar = ar_header(eom)
    assert "spf=temperror" in ar and "dmarc=temperror" in ar
    ev = last_event(enforce, n + 1)
    assert ev["spf"]["result"] == "temperror" and ev["dmarc"]["result"] == "temperror"
    assert ev["outcome"] == "accepted"
    assert "TXT _dmarc.slow.example: timeout" in ev["dns_errors"]


def test_dkim_key_timeout_is_temperror(enforce: MilterProcess) -> None:
    msg = dkimkeys.sign(
        dkimkeys.message(from_="a@tempkey.example"), "tempkey.example", "s", dkimkeys.rsa_key()
    )
    n = len(enforce.events("transaction"))
    mail, eom = transact(enforce, "192.0.2.50", "h.example", "a@tempkey.example", b"")
    assert eom is None  # SPF -all refuses at MAIL in enforce mode
    mail, eom = transact(enforce, "192.0.2.50", "h.example", "", msg)
    assert mail.continued and eom.continued
    ev = last_event(enforce, n + 2)
    assert [d["result"] for d in ev["dkim"]] == ["temperror"]
    assert ev["dmarc"]["result"] == "temperror" and ev["outcome"] == "accepted"
    assert "TXT s._domainkey.tempkey.example: timeout" in ev["dns_errors"]


def test_dns_timeout_tempfails_when_configured(enforce_tempfail: MilterProcess) -> None:
    msg = dkimkeys.message(from_="a@slow.example")
    mail, eom = transact(enforce_tempfail, "192.0.2.50", "h.example", "", msg)
    assert mail.continued
    assert eom.text == "451 4.7.5 DMARC evaluation could not complete, try again later"


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture(scope="module")
def quarantine_header(zone: DnsServer) -> Iterator[MilterProcess]:
    yield from _milter(zone, {"dmarc": {"mode": "enforce", "max_action": "quarantine"}})


@pytest.fixture(scope="module")
def quarantine_hold(zone: DnsServer) -> Iterator[MilterProcess]:
    yield from _milter(zone, {"dmarc": {"mode": "enforce", "max_action": "quarantine", "quarantine": "hold"}})


@pytest.fixture(scope="module")
def auth_off(zone: DnsServer) -> Iterator[MilterProcess]:
    m = MilterProcess(
        config={
            "dns": {"nameservers": [zone.nameserver], "timeout": 0.3},
            "auth": {"enabled": False},
            "policies": {"spf": {"mode": "off"}, "dmarc": {"mode": "off"}},
        }
    ).start()
    try:
        yield m
    finally:
        m.stop()


def test_quarantine_capped_adds_header(quarantine_header: MilterProcess) -> None:
    msg = dkimkeys.message(from_="ceo@bank.example")
    n = len(quarantine_header.events("transaction"))
    _mail, eom = transact(quarantine_header, "198.51.100.7", "h.example", "x@attacker.example", msg)
    assert eom.continued
    added = [(a[0], a[1]["name"], a[1]["value"]) for a in eom.actions]
    assert added[0][:2] == ("i", "Authentication-Results")
    assert added[1] == ("h", "X-Mailpolicy-Quarantine", " DMARC policy quarantine")
    ev = last_event(quarantine_header, n + 1)
    assert (ev["outcome"], ev["final_action"]) == ("quarantined", "quarantine")
    assert ev["policies"]["dmarc"]["action"] == "quarantine" and ev["policies"]["dmarc"]["applied"]


def test_quarantine_hold_uses_milter_quarantine(quarantine_hold: MilterProcess) -> None:
    msg = dkimkeys.message(from_="ceo@bank.example")
    _mail, eom = transact(quarantine_hold, "198.51.100.7", "h.example", "x@attacker.example", msg)
    assert [a[0] for a in eom.actions] == ["i", "q"]
    assert eom.actions[1][1]["reason"] == "mailpolicy dmarc: fail"


def test_dkim_without_leadspc_and_large_body_and_two_messages(monitor: MilterProcess) -> None:
    """An MTA that strips the space after the colon (no P_HDR_LEADSPC), simple/simple signatures,
    a body over several 64 KiB chunks, and two messages on one connection."""
    body = b"".join(b"line %d of a long message\r\n" % i for i in range(8000))
    raw = dkimkeys.message(from_="alice@good.example", body=body)
    signed = dkimkeys.sign(
        raw, "good.example", "sel", dkimkeys.rsa_key(), canonicalize=(b"simple", b"simple")
    )
    headers, body_out = dkimkeys.split(signed)
    c = MilterClient(monitor.socket, offer_protocol=0x1FFFFF & ~0x100000)
    try:
        assert not c.protocol & 0x100000
        c.connect("mail.good.example", "192.0.2.10")
        c.helo("mail.good.example")
        results = []
        for tamper in (False, True):
            c.mail("bounce@good.example")
            c.rcpt("bob@example.net")
            out = body_out.replace(b"line 7999", b"line 7998") if tamper else body_out
            results.append(ar_header(c.message(headers, out), leadspc=False))
    finally:
        c.quit()
    assert "dkim=pass" in results[0] and "dmarc=pass" in results[0]
    assert 'dkim=fail (2048-bit key) reason="body hash mismatch"' in results[1]
    assert "dmarc=pass" in results[1]  # SPF still aligns


def test_auth_disabled_adds_nothing(auth_off: MilterProcess) -> None:
    msg = dkimkeys.message(
        from_="ceo@bank.example", extra=[("Authentication-Results", f"{AUTHSERV}; dmarc=pass")]
    )
    n = len(auth_off.events("transaction"))
    _mail, eom = transact(auth_off, "198.51.100.7", "h.example", "x@attacker.example", msg)
    assert eom.continued and eom.actions == []
    ev = last_event(auth_off, n + 1)
    assert "dmarc" not in ev and "spf" not in ev


def test_metrics_have_bounded_auth_labels(monitor: MilterProcess) -> None:
    text = monitor.metrics_text()
    assert re.search(r'mailpolicy_dns_queries_total\{outcome="ok",type="TXT"\} [1-9]', text)
    assert re.search(r'mailpolicy_auth_results_total\{method="dmarc",result="pass"\} [1-9]', text)
    assert "mailpolicy_dns_query_duration_seconds_bucket" in text
    labels = set(re.findall(r'="([^"]*)"', text))
    assert not any("example" in v for v in labels)  # never a domain as a label value


def _vm(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def test_a_40_mb_message_is_verified_without_keeping_it(monitor: MilterProcess) -> None:
    """Hole 13: a 40 MB message peaked at 137 MB RSS (about 2.7 copies of the body). The body is
    hashed as it arrives and never kept: the peak stays within a few MiB of the idle size
    (bench/memory.py measures 25 and 40 MB, and four at once)."""
    assert monitor.proc is not None
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = line * (40 * 1024 * 1024 // len(line))
    msg = dkimkeys.sign(dkimkeys.message(body=body), "good.example", "sel", dkimkeys.rsa_key())
    n = len(monitor.events("transaction"))
    transact(monitor, "192.0.2.10", "mail.good.example", "big@good.example", dkimkeys.message())  # warm
    before = _vm(monitor.proc.pid, "VmRSS")
    mail, eom = transact(monitor, "192.0.2.10", "mail.good.example", "big@good.example", msg)
    assert mail.continued and eom.continued
    ev = last_event(monitor, n + 2)
    assert [d["result"] for d in ev["dkim"]] == ["pass"]
    peak = _vm(monitor.proc.pid, "VmHWM")
    assert peak - before < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB, before {before / 2**20:.1f} MiB"
