"""End to end: three ways a sender used to soften an enforced SPF or DMARC verdict, each sent through
a real Postfix to `mailpolicy run`, with the test zone on a loopback DNS server. Each must be refused.

- A1: ``pct=²`` in the attacker's own DMARC record raised inside the DMARC method; with the victim
  and the attacker both in From, the victim's ``fail`` became ``temperror`` and was delivered.
- A3: ``MAIL FROM:<"x@y"@bank.example>``: pyspf checked the part after the first "@" (none) while
  the result was recorded, and reused, for bank.example.
- A5: a MAIL FROM over 512 characters was cut before SPF saw it (``bank.examp``: none)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from support.dnsserver import DnsServer
from support.smtp import Client
from support.stack import Event, Stack, running

pytestmark = pytest.mark.e2e

AUTHSERV = "mx.test.example"
ATTACKER_NET = "198.51.100.77"  # allowed by attacker.example's SPF, by nobody else's


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    zone = {
        "bank.example": [("TXT", "v=spf1 ip4:203.0.113.0/24 -all")],
        "_dmarc.bank.example": [("TXT", "v=DMARC1; p=reject")],
        "attacker.example": [("TXT", "v=spf1 ip4:198.51.100.0/24 -all")],
        "_dmarc.attacker.example": [("TXT", "v=DMARC1; p=none; pct=\u00b2")],
    }
    with DnsServer(zone) as dns:
        cfg = {
            "dns": {"nameservers": [dns.nameserver], "timeout": 1.0},
            "auth": {"authserv_id": AUTHSERV, "spf_timeout": 3.0},
            "policies": {
                "require_starttls": {"mode": "off"},
                "tls_min_version": {"mode": "off"},
                "spf": {"mode": "enforce"},
                "dmarc": {"mode": "enforce"},
            },
        }
        with running(cfg, capture=True) as st:
            yield st


def build(from_field: str) -> tuple[bytes, str]:
    mid = f"<{uuid.uuid4().hex}@e2e.test>"
    msg = (
        f"From: {from_field}\r\nTo: <user@capture.example>\r\nSubject: pay this\r\n"
        f"Date: Mon, 23 Nov 2026 04:00:00 +0000\r\nMessage-ID: {mid}\r\n\r\nPay now.\r\n"
    ).encode()
    return msg, mid


def mail_from(stack: Stack, client_ip: str, sender: str) -> tuple[int, str]:
    """The reply to ``MAIL FROM:<sender>`` exactly as written (smtplib would rewrite a quoted
    local part), from ``client_ip`` by XCLIENT."""
    c = Client("127.0.0.1", stack.postfix.port, helo="mx.attacker.example")
    try:
        c.xclient(client_ip, "mx.attacker.example")
        code, text = c.smtp.docmd("MAIL", f"FROM:<{sender}>")
        c.smtp.rset()
        return code, text.decode()
    finally:
        c.quit()


def txn(stack: Stack, sender: str) -> Event:
    return stack.milter.wait_event(lambda e: e.get("mail_from") == sender, "transaction")


def test_a1_a_broken_record_of_the_attackers_cannot_hide_the_victims_dmarc_fail(stack: Stack) -> None:
    env = f"b-{uuid.uuid4().hex[:8]}@attacker.example"
    msg, mid = build("CEO <ceo@bank.example>, x <x@attacker.example>")
    c = Client("127.0.0.1", stack.postfix.port, helo="mx.attacker.example")
    c.xclient(ATTACKER_NET, "mx.attacker.example")
    r = c.send(env, ["user@capture.example"], msg)
    c.quit()
    assert not r.accepted and r.data_reply is not None and r.data_reply[0] == 550, r
    t = txn(stack, env)
    assert t["spf"]["result"] == "pass"  # the envelope is the attacker's own
    assert (t["dmarc"]["result"], t["dmarc"]["domain"], t["dmarc"]["disposition"]) == (
        "fail",
        "bank.example",
        "reject",
    )
    assert t["dmarc"]["author_problem"] == "multiple_domains"
    assert (t["policies"]["dmarc"]["action"], t["outcome"]) == ("reject", "rejected")
    assert stack.sink is not None and mid.encode() not in b"".join(stack.sink.messages())


def test_a3_a_quoted_local_part_holding_at_gets_the_domains_spf_fail(stack: Stack) -> None:
    # (a fresh client IP: a result is reused per client IP and domain)
    ip = "198.51.100.79"
    quoted = f'"x@{uuid.uuid4().hex[:6]}"@bank.example'
    code, text = mail_from(stack, ip, quoted)
    assert code == 550 and "5.7.23" in text, (code, text)
    t = txn(stack, quoted)
    assert (t["spf"]["result"], t["spf"]["domain"], t["outcome"]) == ("fail", "bank.example", "rejected")
    # What it used to leave behind for the next sender of bank.example from that IP: nothing.
    plain = f"ceo-{uuid.uuid4().hex[:6]}@bank.example"
    code, _ = mail_from(stack, ip, plain)
    assert code == 550
    assert txn(stack, plain)["spf"]["result"] == "fail"


@pytest.mark.parametrize("local_length", [600, 1900])
def test_a5_a_long_mail_from_is_checked_whole(stack: Stack, local_length: int) -> None:
    # Postfix passes on command lines up to line_length_limit (2048): 1900 + the rest fits.
    tag = uuid.uuid4().hex
    sender = (tag + "a" * local_length)[:local_length] + "@bank.example"
    code, text = mail_from(stack, "198.51.100.80", sender)
    assert code == 550 and "5.7.23" in text, (code, text)
    t = txn(stack, sender)
    assert (t["spf"]["result"], t["spf"]["domain"]) == ("fail", "bank.example")
    assert (t["policies"]["spf"]["action"], t["outcome"], t["stage"]) == ("reject", "rejected", "mail")
