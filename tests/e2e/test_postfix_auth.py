"""End to end: SPF, DKIM and DMARC through a real Postfix, with a real DNS server on loopback serving
the test zone, XCLIENT client addresses and smtp-sink capturing what Postfix delivered."""

from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import Iterator

import pytest

from support.dkimkeys import ed25519_key, rsa_key, sign
from support.dnsserver import DnsServer
from support.smtp import Client
from support.stack import Event, Stack, running

pytestmark = pytest.mark.e2e

AUTHSERV = "mx.test.example"
GOOD_NET = "203.0.113.10"  # allowed by sender.example's SPF
BAD_NET = "192.0.2.66"  # allowed by nobody
ATTACKER_NET = "198.51.100.77"  # allowed by attacker.example's SPF


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    rsa, ed = rsa_key(2048), ed25519_key()
    zone = {
        "sender.example": [("TXT", "v=spf1 ip4:203.0.113.0/24 -all")],
        "_dmarc.sender.example": [("TXT", "v=DMARC1; p=reject; adkim=r; aspf=r")],
        "s1._domainkey.sender.example": [("TXT", rsa.record)],
        "ed._domainkey.sender.example": [("TXT", ed.record)],
        "bank.example": [("TXT", "v=spf1 ip4:198.51.100.0/24 -all")],
        "_dmarc.bank.example": [("TXT", "v=DMARC1; p=reject")],
        "quiet.example": [("TXT", "v=spf1 ?all")],
        "_dmarc.quiet.example": [("TXT", "v=DMARC1; p=quarantine")],
        "attacker.example": [("TXT", f"v=spf1 ip4:{ATTACKER_NET} -all")],
    }
    with DnsServer(zone) as srv:
        srv.timeout("slow.example")
        srv.timeout("_dmarc.slow.example")
        srv.timeout("_dmarc.attacker.example")  # the attacker controls this DNS
        yield srv


def auth_config(dns: DnsServer, mode: str) -> dict[str, object]:
    return {
        "dns": {"nameservers": [dns.nameserver], "timeout": 1.0},
        "auth": {"authserv_id": AUTHSERV, "spf_timeout": 3.0},
        "policies": {
            "require_starttls": {"mode": "off"},
            "tls_min_version": {"mode": "off"},
            "spf": {"mode": "monitor"},
            "dmarc": {"mode": mode},
        },
    }


@pytest.fixture(scope="module")
def monitor(dns: DnsServer) -> Iterator[Stack]:
    with running(auth_config(dns, "monitor"), capture=True) as stack:
        yield stack


@pytest.fixture(scope="module")
def enforce(dns: DnsServer) -> Iterator[Stack]:
    with running(auth_config(dns, "enforce"), capture=True) as stack:
        yield stack


def build(from_addr: str, extra_headers: str = "") -> tuple[bytes, str]:
    mid = f"<{uuid.uuid4().hex}@e2e.test>"
    msg = (
        f"From: Sender <{from_addr}>\r\nTo: <user@capture.example>\r\nSubject: e2e auth\r\n"
        f"Date: Mon, 23 Nov 2026 04:00:00 +0000\r\nMessage-ID: {mid}\r\n{extra_headers}"
        "\r\nHello, this is a test message.\r\n"
    ).encode()
    return msg, mid


def send_via(stack: Stack, client_ip: str, mail_from: str, msg: bytes, helo: str = "mail.sender.example"):  # type: ignore[no-untyped-def]
    c = Client("127.0.0.1", stack.postfix.port, helo=helo)
    c.xclient(client_ip, helo)
    r = c.send(mail_from, ["user@capture.example"], msg)
    c.quit()
    return r


def txn_from(stack: Stack, mail_from: str) -> Event:
    return stack.milter.wait_event(lambda e: e.get("mail_from") == mail_from, "transaction")


def ar_headers(raw: bytes) -> list[str]:
    m = email.message_from_bytes(raw, policy=email.policy.compat32)
    return [" ".join(v.split()) for v in m.get_all("Authentication-Results", [])]


@pytest.mark.parametrize("keyname", ["rsa", "ed25519"])
def test_dkim_signed_mail_passes_dkim_and_dmarc(monitor: Stack, keyname: str) -> None:
    sender = f"alice-{uuid.uuid4().hex[:8]}@sender.example"
    msg, mid = build(sender)
    key, selector = (rsa_key(2048), "s1") if keyname == "rsa" else (ed25519_key(), "ed")
    signed = sign(msg, "sender.example", selector, key)
    assert send_via(monitor, GOOD_NET, sender, signed).accepted
    t = txn_from(monitor, sender)
    assert t["spf"]["result"] == "pass"
    assert [(d["result"], d["domain"], d["selector"], d["aligned"]) for d in t["dkim"]] == [
        ("pass", "sender.example", selector, True)
    ]
    assert t["dmarc"]["result"] == "pass" and t["authenticated"] is True
    assert t["policies"]["dmarc"]["action"] == "continue"
    delivered = monitor.sink.find(mid.encode())  # type: ignore[union-attr]
    ars = [h for h in ar_headers(delivered) if h.lower().startswith(AUTHSERV)]
    assert len(ars) == 1
    assert "dkim=pass" in ars[0] and "header.d=sender.example" in ars[0] and f"header.s={selector}" in ars[0]
    assert "dmarc=pass" in ars[0] and "header.from=sender.example" in ars[0]
    assert "spf=pass" in ars[0] and "smtp.mailfrom=" in ars[0]


def test_spoofed_reject_domain_is_delivered_in_monitor_and_counted(monitor: Stack) -> None:
    before = monitor.milter.metric(
        "mailpolicy_policy_decisions_total", policy="dmarc", mode="monitor", action="reject"
    )
    envelope = f"bounce-{uuid.uuid4().hex[:8]}@attacker.example"
    msg, mid = build("ceo@bank.example")
    assert send_via(monitor, BAD_NET, envelope, msg, helo="mx.attacker.example").accepted
    t = txn_from(monitor, envelope)
    assert t["header_from_domain"] == "bank.example"
    assert t["dmarc"]["result"] == "fail" and t["dmarc"]["disposition"] == "reject"
    p = t["policies"]["dmarc"]
    assert (p["mode"], p["result"], p["action"], p["applied"]) == ("monitor", "fail", "reject", False)
    assert t["outcome"] == "accepted" and t["authenticated"] is False
    delivered = monitor.sink.find(mid.encode())  # type: ignore[union-attr]
    assert any("dmarc=fail" in h for h in ar_headers(delivered))
    assert (
        monitor.milter.metric(
            "mailpolicy_policy_decisions_total", policy="dmarc", mode="monitor", action="reject"
        )
        == before + 1
    )


def test_spoofed_reject_domain_is_refused_with_550_in_enforce(enforce: Stack) -> None:
    envelope = f"bounce-{uuid.uuid4().hex[:8]}@attacker.example"
    msg, mid = build("ceo@bank.example")
    r = send_via(enforce, BAD_NET, envelope, msg, helo="mx.attacker.example")
    assert not r.accepted and r.data_reply is not None and r.data_reply[0] == 550
    assert r.data_reply[1].startswith("5.7.1")
    t = txn_from(enforce, envelope)
    assert t["outcome"] == "rejected" and t["policies"]["dmarc"]["applied"] is True
    assert mid.encode() not in b"".join(enforce.sink.messages())  # type: ignore[union-attr]
    # ...and authenticated mail still flows in enforce mode.
    sender = f"bob-{uuid.uuid4().hex[:8]}@sender.example"
    good, _ = build(sender)
    assert send_via(enforce, GOOD_NET, sender, sign(good, "sender.example", "s1", rsa_key(2048))).accepted


def test_forged_authentication_results_with_our_id_are_removed(monitor: Stack) -> None:
    sender = f"carol-{uuid.uuid4().hex[:8]}@sender.example"
    forged = (
        f"Authentication-Results: {AUTHSERV}; dkim=pass header.d=bank.example; dmarc=pass\r\n"
        f"authentication-results: {AUTHSERV.upper()};\r\n\tspf=pass smtp.mailfrom=bank.example\r\n"
        "Authentication-Results: other.example; spf=pass smtp.mailfrom=sender.example\r\n"
    )
    msg, mid = build(sender, forged)
    before = monitor.milter.metric("mailpolicy_authres_removed_total")
    assert send_via(monitor, GOOD_NET, sender, msg).accepted
    delivered = monitor.sink.find(mid.encode())  # type: ignore[union-attr]
    ars = ar_headers(delivered)
    ours = [h for h in ars if h.lower().startswith(AUTHSERV)]
    assert len(ours) == 1 and "header.d=bank.example" not in ours[0]
    assert "dkim=none" in ours[0] or "dkim=" not in ours[0]
    assert any(h.startswith("other.example;") for h in ars)  # somebody else's header is kept
    assert monitor.milter.metric("mailpolicy_authres_removed_total") == before + 2


def test_dns_timeout_is_temperror_never_fail_and_mail_flows(monitor: Stack, enforce: Stack) -> None:
    for stack in (monitor, enforce):
        envelope = f"x-{uuid.uuid4().hex[:8]}@slow.example"
        msg, _ = build("news@slow.example")
        assert send_via(stack, BAD_NET, envelope, msg, helo="mx.slow.example").accepted
        t = txn_from(stack, envelope)
        assert t["spf"]["result"] == "temperror"
        assert t["dmarc"]["result"] == "temperror"
        assert t["policies"]["dmarc"]["action"] == "continue" and t["outcome"] == "accepted"
        assert t["dns_errors"]


def test_attacker_dns_timeout_cannot_save_a_spoof_in_enforce(enforce: Stack) -> None:
    """Hole 1: MAIL FROM in the attacker's own domain (SPF passes), From ceo@bank.example
    (p=reject), _dmarc.attacker.example timing out: the spoof used to be temperror and delivered."""
    envelope = f"bounce-{uuid.uuid4().hex[:8]}@attacker.example"
    msg, mid = build("ceo@bank.example")
    r = send_via(enforce, ATTACKER_NET, envelope, msg, helo="mx.attacker.example")
    assert not r.accepted and r.data_reply is not None and r.data_reply[0] == 550
    t = txn_from(enforce, envelope)
    assert t["spf"]["result"] == "pass" and t["dmarc"]["result"] == "fail"
    assert not any("attacker" in e for e in t["dns_errors"])  # never even asked
    assert mid.encode() not in b"".join(enforce.sink.messages())  # type: ignore[union-attr]


def padded(from_addr: str, fields: int, forged: str = "") -> tuple[bytes, str]:
    """A message whose From (and forged A-R) come after ``fields`` junk header fields."""
    mid = f"<{uuid.uuid4().hex}@e2e.test>"
    junk = "".join(f"X-Junk-{i}: {i}\r\n" for i in range(fields))
    msg = (
        f"To: <user@capture.example>\r\nSubject: padded\r\nDate: Mon, 23 Nov 2026 04:00:00 +0000\r\n"
        f"Message-ID: {mid}\r\n{junk}{forged}From: Sender <{from_addr}>\r\n\r\nHello.\r\n"
    ).encode()
    return msg, mid


def test_header_padding_hides_no_from_in_enforce(enforce: Stack) -> None:
    """Hole 2: a From after 1,000 junk fields was never seen: 250 queued in enforce mode."""
    envelope = f"pad-{uuid.uuid4().hex[:8]}@attacker.example"
    msg, _ = padded("ceo@bank.example", 1500)
    r = send_via(enforce, BAD_NET, envelope, msg, helo="mx.attacker.example")
    assert not r.accepted and r.data_reply is not None and r.data_reply[0] == 550
    t = txn_from(enforce, envelope)
    assert (t["dmarc"]["result"], t["header_fields"], t["from_fields"]) == ("fail", 1505, 1)


def test_header_padding_hides_no_forged_header(monitor: Stack) -> None:
    """Hole 2: a forged A-R with our authserv-id after 1,000 fields survived next to ours; and
    hole 4: one whose authserv-id follows nested comments was kept."""
    sender = f"pad-{uuid.uuid4().hex[:8]}@sender.example"
    forged = (
        f"Authentication-Results: {AUTHSERV}; dmarc=pass header.from=bank.example\r\n"
        f"Authentication-Results: (a (b) c) {AUTHSERV}; dkim=pass header.d=bank.example\r\n"
        f'Authentication-Results: "{AUTHSERV.upper()}." 1; spf=pass\r\n'
    )
    msg, mid = padded(sender, 1500, forged)
    assert send_via(monitor, GOOD_NET, sender, msg).accepted
    delivered = monitor.sink.find(mid.encode())  # type: ignore[union-attr]
    ars = ar_headers(delivered)
    assert len(ars) == 1 and ars[0].startswith(f"{AUTHSERV}; spf=pass"), ars
    assert "bank.example" not in ars[0]
    assert txn_from(monitor, sender)["authres_removed"] == 3


def test_a_64k_header_line_is_delivered_in_monitor_mode(monitor: Stack) -> None:
    """Hole 9: a header field of 65,530 bytes or more used to drop the milter connection
    (libmilter's packet limit): with milter_default_action = tempfail, a 4xx in monitor mode."""
    sender = f"long-{uuid.uuid4().hex[:8]}@sender.example"
    long_value = " ".join(["x" * 70] * 1300)  # 92,299 bytes, below Postfix's header_size_limit
    msg, mid = build(sender, f"X-Long: {long_value}\r\n")
    r = send_via(monitor, GOOD_NET, sender, msg)
    assert r.accepted, r
    delivered = monitor.sink.find(mid.encode())  # type: ignore[union-attr]
    assert len([h for h in ar_headers(delivered) if h.startswith(AUTHSERV)]) == 1
    t = txn_from(monitor, sender)
    assert t["outcome"] == "accepted" and t["spf"]["result"] == "pass"
