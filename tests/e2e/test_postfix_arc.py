"""End to end: forwarded and mailing-list mail against an enforced DMARC ``p=reject`` through a real
Postfix, and the overrides that let it through: ``trusted_arc_sealers`` (a valid ARC chain sealed by
a trusted forwarder), ``mailing_lists`` (a List-Id whose own domain authenticated the message, with
``mailing_list_action`` continue or quarantine). Every key is generated here and published by the
loopback DNS server; clients present their addresses with XCLIENT; smtp-sink captures what Postfix
delivered. Then the same traffic in monitor mode, and ``mailpolicy report`` splitting the would-be
lost DMARC mail by path (forwarded with ARC, mailing list, direct).

One stack for the whole file: each test writes the DMARC settings it needs and reloads (SIGHUP),
so the tests do not depend on their order."""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest

from support.dkimkeys import Key, own_key, sign
from support.dnsserver import DnsServer
from support.smtp import Client, Result
from support.stack import Event, Stack, running, wait_for

pytestmark = pytest.mark.e2e

AUTHSERV = "mx.test.example"
RCPT = "user@capture.example"  # relayed by Postfix to smtp-sink

BANK_IP = "203.0.113.10"  # bank.example's own outbound server: the only address its SPF allows
FORWARDER_IP = "198.51.100.20"  # forwarder.example
LIST_IP = "198.51.100.40"  # lists.example.org
ATTACKER_IP = "192.0.2.66"  # attacker.example

BANK_SELECTOR = "s2026"
ARC_SELECTOR = "arc1"
LIST_SELECTOR = "list"
ATTACKER_SELECTOR = "evil"

LIST_ID = "dev.lists.example.org"
FOOTER = b"\r\n-- \r\ndev mailing list\r\nhttps://lists.example.org/dev\r\n"

# Every override off: the settings each test starts from (write_config merges key by key).
NO_TRUST: dict[str, Any] = {
    "trusted_arc_sealers": [],
    "trusted_forwarders": [],
    "mailing_lists": [],
    "mailing_list_action": "continue",
    "quarantine": "header",
}


def bank_key() -> Key:
    return own_key("bank.example")


def forwarder_key() -> Key:
    return own_key("forwarder.example")


def list_key() -> Key:
    return own_key("lists.example.org")


def attacker_key() -> Key:
    return own_key("attacker.example", "ed25519")


def attacker_arc_key() -> Key:
    return own_key("attacker.example ARC")  # ARC is RSA only (RFC 8617)


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    zone = {
        "bank.example": [("TXT", f"v=spf1 ip4:{BANK_IP} -all")],
        "_dmarc.bank.example": [("TXT", "v=DMARC1; p=reject")],
        f"{BANK_SELECTOR}._domainkey.bank.example": [("TXT", bank_key().record)],
        "forwarder.example": [("TXT", f"v=spf1 ip4:{FORWARDER_IP} -all")],
        f"{ARC_SELECTOR}._domainkey.forwarder.example": [("TXT", forwarder_key().record)],
        "lists.example.org": [("TXT", f"v=spf1 ip4:{LIST_IP} -all")],
        f"{LIST_SELECTOR}._domainkey.lists.example.org": [("TXT", list_key().record)],
        "attacker.example": [("TXT", f"v=spf1 ip4:{ATTACKER_IP} -all")],
        "_dmarc.attacker.example": [("TXT", "v=DMARC1; p=none")],
        f"{ATTACKER_SELECTOR}._domainkey.attacker.example": [("TXT", attacker_key().record)],
        f"{ARC_SELECTOR}._domainkey.attacker.example": [("TXT", attacker_arc_key().record)],
    }
    with DnsServer(zone) as srv:
        yield srv


@pytest.fixture(scope="module")
def stack(dns: DnsServer) -> Iterator[Stack]:
    config = {
        "dns": {"nameservers": [dns.nameserver], "timeout": 1.0},
        "auth": {"authserv_id": AUTHSERV, "spf_timeout": 3.0},
        "policies": {
            "require_starttls": {"mode": "off"},
            "tls_min_version": {"mode": "off"},
            "spf": {"mode": "monitor"},  # forwarded mail fails SPF; only DMARC decides here
            "dmarc": {"mode": "enforce", **NO_TRUST},
        },
    }
    with running(config, capture=True) as s:
        yield s


def configure(stack: Stack, mode: str = "enforce", **dmarc: Any) -> None:
    """Set ``[policies.dmarc]`` to ``mode`` with the given overrides (all others off), and reload."""
    m = stack.milter
    before = m.metric("mailpolicy_config_reloads_total", result="ok")
    m.write_config({"policies": {"dmarc": {"mode": mode, **NO_TRUST, **dmarc}}})
    m.signal(signal.SIGHUP)
    wait_for(lambda: m.metric("mailpolicy_config_reloads_total", result="ok") > before, 10, "the reload")


# ---- the mail ------------------------------------------------------------------------------------


def tag() -> str:
    return uuid.uuid4().hex[:10]


def original(to: str) -> tuple[bytes, str]:
    """alice@bank.example's message as it left her bank's server: DKIM-signed by bank.example."""
    mid = f"<{uuid.uuid4().hex}@mail.bank.example>"
    msg = (
        f"From: Alice <alice@bank.example>\r\nTo: <{to}>\r\nSubject: Quarterly numbers\r\n"
        f"Date: Mon, 23 Nov 2026 04:00:00 +0000\r\nMessage-ID: {mid}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
        "\r\nHello,\r\n\r\nthe numbers are in.\r\n\r\nAlice\r\n"
    ).encode()
    return sign(msg, "bank.example", BANK_SELECTOR, bank_key()), mid


FORWARDER_AR = (
    f"forwarder.example; dkim=pass header.d=bank.example header.s={BANK_SELECTOR};"
    " spf=pass smtp.mailfrom=bank.example; dmarc=pass header.from=bank.example"
)


def forwarded(sealer: str = "forwarder.example", ar: str = FORWARDER_AR) -> tuple[bytes, str]:
    """alice's message to bob@forwarder.example, forwarded to our user: the forwarder checked it
    (its own Authentication-Results ``ar``: DKIM and DMARC pass), added a footer (alice's signature
    no longer verifies) and ARC-sealed it with d=``sealer``."""
    signed, mid = original("bob@forwarder.example")
    received = (
        b"Received: from mail.bank.example (mail.bank.example [" + BANK_IP.encode() + b"])\r\n"
        b"\tby mx.forwarder.example with ESMTPS; Mon, 23 Nov 2026 04:00:01 +0000\r\n"
    )
    changed = f"Authentication-Results: {ar}\r\n".encode() + received + signed
    changed += b"\r\n-- \r\nForwarded by forwarder.example\r\n"
    key = forwarder_key() if sealer == "forwarder.example" else attacker_arc_key()
    srv_id = ar.partition(";")[0].encode()
    sets = dkim.arc_sign(changed, ARC_SELECTOR.encode(), sealer.encode(), key.private, srv_id)
    assert isinstance(sets, list) and len(sets) == 3, sets  # AAR, AMS, AS of instance 1
    return b"".join(sets) + changed, mid


def list_post(signer: str = "lists.example.org") -> tuple[bytes, str]:
    """alice's post to dev@lists.example.org as the list sends it on: a subject tag, a footer (her
    signature no longer verifies), List-* fields, and a DKIM signature of ``signer`` (the list's
    own, or the attacker's for a fake); From is still alice."""
    signed, mid = original("dev@lists.example.org")
    head, _, body = signed.partition(b"\r\n\r\n")
    head = head.replace(b"\r\nSubject: Quarterly numbers", b"\r\nSubject: [dev] Quarterly numbers")
    head += (
        f"\r\nList-Id: Dev <{LIST_ID}>\r\nList-Post: <mailto:dev@lists.example.org>\r\nPrecedence: list"
    ).encode()
    msg = head + b"\r\n\r\n" + body + FOOTER
    if signer == "lists.example.org":
        return sign(msg, signer, LIST_SELECTOR, list_key()), mid
    return sign(msg, signer, ATTACKER_SELECTOR, attacker_key()), mid


def spoof() -> tuple[bytes, str]:
    """From alice@bank.example, sent directly by somebody else: no signature, no chain."""
    mid = f"<{uuid.uuid4().hex}@attacker.example>"
    msg = (
        f"From: Alice <alice@bank.example>\r\nTo: <{RCPT}>\r\nSubject: Urgent: new account number\r\n"
        f"Date: Mon, 23 Nov 2026 04:00:00 +0000\r\nMessage-ID: {mid}\r\n\r\nPlease pay to ...\r\n"
    ).encode()
    return msg, mid


def send(stack: Stack, client_ip: str, helo: str, mail_from: str, msg: bytes) -> tuple[Result, Event]:
    """One message from ``client_ip`` (XCLIENT) to our user, and its transaction event (the
    envelope sender is unique per message)."""
    c = Client("127.0.0.1", stack.postfix.port, helo=helo)
    c.xclient(client_ip, helo)
    r = c.send(mail_from, [RCPT], msg)
    c.quit()
    event = stack.milter.wait_event(lambda e: e.get("mail_from") == mail_from, "transaction")
    return r, event


def send_forwarded(stack: Stack, msg_mid: tuple[bytes, str] | None = None) -> tuple[Result, Event, str]:
    msg, mid = msg_mid or forwarded()
    # The forwarder relays with alice's original envelope sender: SPF of bank.example fails.
    r, t = send(stack, FORWARDER_IP, "mx.forwarder.example", f"alice+{tag()}@bank.example", msg)
    return r, t, mid


def send_list_post(stack: Stack) -> tuple[Result, Event, str]:
    msg, mid = list_post()
    # The list's own bounce address (VERP): SPF passes for lists.example.org.
    r, t = send(stack, LIST_IP, "mail.lists.example.org", f"dev-bounces+{tag()}@lists.example.org", msg)
    return r, t, mid


def send_spoof(stack: Stack) -> tuple[Result, Event, str]:
    msg, mid = spoof()
    r, t = send(stack, ATTACKER_IP, "mx.attacker.example", f"alice+{tag()}@bank.example", msg)
    return r, t, mid


def assert_refused(stack: Stack, r: Result, t: Event, mid: str) -> None:
    assert not r.accepted and r.data_reply is not None, r
    assert r.data_reply[0] == 550 and r.data_reply[1].startswith("5.7.1"), r.data_reply
    assert t["outcome"] == "rejected" and t["stage"] == "eom"
    d = t["policies"]["dmarc"]
    assert (d["mode"], d["result"], d["action"], d["applied"]) == ("enforce", "fail", "reject", True)
    assert d["override"] is None
    assert stack.sink is not None and mid.encode() not in b"".join(stack.sink.messages())


def delivered(stack: Stack, mid: str) -> email.message.Message:
    assert stack.sink is not None
    return email.message_from_bytes(stack.sink.find(mid.encode()), policy=email.policy.compat32)


def our_ar(msg: email.message.Message) -> str:
    """Our Authentication-Results value, unfolded (exactly one)."""
    ours = [
        " ".join(v.split())
        for v in msg.get_all("Authentication-Results", [])
        if v.strip().lower().startswith(AUTHSERV + ";")
    ]
    assert len(ours) == 1, ours
    return ours[0]


def overrides(stack: Stack, reason: str) -> float:
    return stack.milter.metric(
        "mailpolicy_policy_overrides_total",
        policy="dmarc",
        mode="enforce",
        reason=reason,
        overridden_action="reject",
    )


# ---- 1. forwarded with an ARC chain ------------------------------------------------------------


def test_forwarded_mail_is_refused_until_its_sealer_is_trusted(stack: Stack) -> None:
    configure(stack)
    r, t, mid = send_forwarded(stack)
    assert_refused(stack, r, t, mid)
    assert t["spf"]["result"] == "fail" and t["spf"]["domain"] == "bank.example"
    assert [(d["domain"], d["result"]) for d in t["dkim"]] == [("bank.example", "fail")]
    assert t["dmarc"]["result"] == "fail" and t["dmarc"]["policy"] == "reject"
    arc = t["arc"]
    assert (arc["result"], arc["instances"], arc["sealers"]) == ("pass", 1, ["forwarder.example"])
    assert t["list_id"] is None

    configure(stack, trusted_arc_sealers=["forwarder.example"])
    before = overrides(stack, "trusted_forwarder")
    r, t, mid = send_forwarded(stack)
    assert r.accepted, r
    assert t["outcome"] == "accepted" and t["final_action"] == "continue"
    assert t["arc"]["result"] == "pass" and t["dmarc"]["result"] == "fail"
    d = t["policies"]["dmarc"]
    assert (d["mode"], d["result"], d["action"]) == ("enforce", "fail", "continue")
    assert (d["override"], d["overridden_action"]) == ("trusted_forwarder", "reject")
    assert d["details"]["override_by"] == "forwarder.example"
    assert overrides(stack, "trusted_forwarder") == before + 1

    msg = delivered(stack, mid)
    ar = our_ar(msg)
    assert "arc=pass" in ar and f"smtp.remote-ip={FORWARDER_IP}" in ar, ar
    assert "dmarc=fail (override: trusted_forwarder) header.from=bank.example" in ar, ar
    assert "dkim=fail" in ar and "header.d=bank.example" in ar, ar
    # the forwarder's own header and its ARC set travel on untouched
    assert any(v.startswith("forwarder.example;") for v in msg.get_all("Authentication-Results", []))
    assert len(msg.get_all("ARC-Seal", [])) == 1 and "X-Mailpolicy-Quarantine" not in msg

    # Trust in the sealer is no trust in the author's domain: a spoof sent directly is refused.
    r, t, mid = send_spoof(stack)
    assert_refused(stack, r, t, mid)
    assert t["arc"]["result"] == "none" and t["arc"]["sealers"] == []


def tampered() -> tuple[bytes, str]:
    """Changed after the forwarder sealed it (the footer edited): the chain no longer validates."""
    msg, mid = forwarded()
    return msg.replace(b"Forwarded by forwarder.example", b"Forwarded by f0rwarder.example"), mid


CHAINS_THAT_VOUCH_FOR_NOTHING: dict[str, tuple[Callable[[], tuple[bytes, str]], str]] = {
    # a valid chain, but its sealer is not trusted (and its AAR is the attacker's word)
    "untrusted-sealer": (
        lambda: forwarded(sealer="attacker.example", ar=FORWARDER_AR.replace("forwarder.", "attacker.")),
        "pass",
    ),
    # the trusted sealer recorded no pass for bank.example
    "no-pass-for-the-author": (
        lambda: forwarded(ar="forwarder.example; dkim=fail header.d=bank.example; spf=fail"),
        "pass",
    ),
    "changed-after-sealing": (tampered, "fail"),
}


@pytest.mark.parametrize("case", list(CHAINS_THAT_VOUCH_FOR_NOTHING))
def test_a_chain_that_vouches_for_nothing_saves_nothing(stack: Stack, case: str) -> None:
    configure(stack, trusted_arc_sealers=["forwarder.example"])
    make, arc_result = CHAINS_THAT_VOUCH_FOR_NOTHING[case]
    r, t, mid = send_forwarded(stack, make())
    assert_refused(stack, r, t, mid)
    assert t["arc"]["result"] == arc_result and t["arc"]["instances"] == 1


# ---- 2. a mailing list (no ARC) ------------------------------------------------------------------


def test_list_mail_is_refused_until_the_list_is_configured(stack: Stack) -> None:
    configure(stack)
    r, t, mid = send_list_post(stack)
    assert_refused(stack, r, t, mid)
    assert t["list_id"] == LIST_ID and t["arc"]["result"] == "none"
    assert (t["spf"]["result"], t["spf"]["domain"]) == ("pass", "lists.example.org")
    assert sorted((d["domain"], d["result"]) for d in t["dkim"]) == [
        ("bank.example", "fail"),
        ("lists.example.org", "pass"),
    ]
    assert t["dmarc"]["result"] == "fail"

    configure(stack, mailing_lists=["lists.example.org"])
    before = overrides(stack, "mailing_list")
    r, t, mid = send_list_post(stack)
    assert r.accepted, r
    assert t["outcome"] == "accepted" and t["final_action"] == "continue"
    d = t["policies"]["dmarc"]
    assert (d["action"], d["override"], d["overridden_action"]) == ("continue", "mailing_list", "reject")
    assert d["details"]["override_by"] == LIST_ID
    assert overrides(stack, "mailing_list") == before + 1
    msg = delivered(stack, mid)
    assert "dmarc=fail (override: mailing_list) header.from=bank.example" in our_ar(msg)
    assert msg["Subject"] == "[dev] Quarterly numbers" and "X-Mailpolicy-Quarantine" not in msg


def test_list_mail_can_be_quarantined_instead(stack: Stack) -> None:
    configure(stack, mailing_lists=["lists.example.org"], mailing_list_action="quarantine")
    r, t, mid = send_list_post(stack)
    assert r.accepted, r
    d = t["policies"]["dmarc"]
    assert (d["action"], d["override"], d["overridden_action"]) == ("quarantine", "mailing_list", "reject")
    assert d["applied"] is True and t["final_action"] == "quarantine"
    msg = delivered(stack, mid)
    assert msg.get_all("X-Mailpolicy-Quarantine") == ["DMARC policy quarantine"]
    assert "dmarc=fail (override: mailing_list)" in our_ar(msg)


@pytest.mark.parametrize("lists", [["lists.example.org"], ["*"]])
def test_a_fake_list_post_is_still_refused(stack: Stack, lists: list[str]) -> None:
    """The same List-Id, but the list's domain authenticated nothing: the attacker signs with its
    own domain and sends from its own address with the list's bounce address (SPF fails)."""
    configure(stack, mailing_lists=lists)
    msg, mid = list_post(signer="attacker.example")
    mail_from = f"dev-bounces+{tag()}@lists.example.org"
    r, t = send(stack, ATTACKER_IP, "mx.attacker.example", mail_from, msg)
    assert_refused(stack, r, t, mid)
    assert t["list_id"] == LIST_ID and t["spf"]["result"] == "fail"
    assert ("attacker.example", "pass") in [(d["domain"], d["result"]) for d in t["dkim"]]


# ---- 3. the report ------------------------------------------------------------------------------

FORWARDED, LISTED, DIRECT = 2, 3, 1


def test_report_splits_the_would_be_lost_dmarc_mail_by_path(stack: Stack, tmp_path: Path) -> None:
    """The same traffic in monitor mode with nothing trusted, then ``mailpolicy report`` over the
    event lines it wrote (the log from the reload on, cut at a line end)."""
    configure(stack, mode="monitor")
    log = stack.milter.log_file
    start = log.read_bytes().rfind(b"\n") + 1
    sent = [send_forwarded(stack) for _ in range(FORWARDED)]
    sent += [send_list_post(stack) for _ in range(LISTED)]
    sent += [send_spoof(stack) for _ in range(DIRECT)]
    for r, t, _ in sent:  # all delivered, all would be refused
        assert r.accepted, r
        d = t["policies"]["dmarc"]
        assert (d["mode"], d["action"], d["applied"], d["override"]) == ("monitor", "reject", False, None)
    data = log.read_bytes()
    end = data.rfind(b"\n") + 1
    events = tmp_path / "events.log"
    events.write_bytes(data[start:end])

    out = subprocess.run(
        [sys.executable, "-m", "mailpolicy", "report", "--format", "json", str(events)],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    doc = json.loads(out)
    total = FORWARDED + LISTED + DIRECT
    assert doc["input"]["malformed_lines"] == 0
    assert doc["totals"]["transactions"] == total
    dmarc = next(p for p in doc["policies"] if p["name"] == "dmarc")
    assert dmarc["would_reject"] == total and dmarc["results"]["fail"] == total

    # NOTE: from here on, the report contract for the split by path (policies[dmarc].affected.paths
    # and the trusted_arc_sealers suggestion), written against the contract while it was being
    # implemented in milter/mailpolicy/report/; without it this test fails here, on the first
    # missing key (KeyError: 'paths').
    paths = dmarc["affected"]["paths"]
    assert paths["forwarded_arc"]["transactions"] == FORWARDED
    assert paths["mailing_list"]["transactions"] == LISTED
    assert paths["direct"]["transactions"] == DIRECT
    assert "forwarder.example" in [s["sealer"] for s in paths["forwarded_arc"]["sealers"]]
    assert LIST_ID in [x["list_id"] for x in paths["mailing_list"]["lists"]]
    suggestion = re.search(r"^\s*trusted_arc_sealers\s*=\s*\[([^\]]*)\]", doc["suggestions_toml"], re.M)
    assert suggestion is not None, doc["suggestions_toml"]
    assert '"forwarder.example"' in suggestion.group(1)
