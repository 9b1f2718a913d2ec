"""End to end, through a real Postfix on loopback: two header attacks an attacker review found.

1. A forged ``Authentication-Results`` with a vertical tab or form feed (or another character a
   lenient reader skips) before our authserv-id was delivered: the strict reading saw no
   authserv-id, SpamAssassin's AuthRes plugin (``:\\s*`` then its token) and others read it as ours.
   Every such field must be gone from the delivered message, checked both with our own rule and with
   SpamAssassin's regular expressions.
2. A trusted ARC sealer that honestly recorded ``spf=pass`` for the attacker's MAIL FROM with a
   quoted local part holding ``;dmarc=pass header.from=bank.example`` (and ``dmarc=fail`` for the
   real author) made the ``trusted_arc_sealers`` override accept a spoof of ``bank.example``
   (``p=reject``): the AAR was split on every ``;``. With the dmarc policy enforced it must be refused.

The ARC sets are real (dkimpy ``arc_sign``), keys are generated here and published by the loopback
DNS server, clients present their addresses with XCLIENT, smtp-sink captures what was delivered."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import dkim
import pytest

from mailpolicy.auth.header import claims
from mailpolicy.session import MAX_AR_REMOVALS
from support.dkimkeys import Key, own_key
from support.dnsserver import DnsServer
from support.smtp import Client, Result
from support.stack import Event, Stack, running

pytestmark = pytest.mark.e2e

AUTHSERV = "mx.test.example"
RCPT = "user@capture.example"
ATTACKER_IP = "198.51.100.77"  # allowed by attacker.example's SPF
FORWARDER_IP = "198.51.100.20"  # forwarder.example, whose ARC seal we trust
ARC_SELECTOR = "arc1"


def forwarder_key() -> Key:
    return own_key("forwarder.example (attacks)")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    zone = {
        "bank.example": [("TXT", "v=spf1 ip4:203.0.113.10 -all")],
        "_dmarc.bank.example": [("TXT", "v=DMARC1; p=reject")],
        "attacker.example": [("TXT", f"v=spf1 ip4:{ATTACKER_IP} -all")],
        "_dmarc.attacker.example": [("TXT", "v=DMARC1; p=none")],
        "forwarder.example": [("TXT", f"v=spf1 ip4:{FORWARDER_IP} -all")],
        f"{ARC_SELECTOR}._domainkey.forwarder.example": [("TXT", forwarder_key().record)],
    }
    config = {
        "auth": {"authserv_id": AUTHSERV, "spf_timeout": 3.0},
        "policies": {
            "require_starttls": {"mode": "off"},
            "tls_min_version": {"mode": "off"},
            "spf": {"mode": "monitor"},
            "dmarc": {"mode": "enforce", "trusted_arc_sealers": ["forwarder.example"]},
        },
    }
    with DnsServer(zone) as dns:
        config["dns"] = {"nameservers": [dns.nameserver], "timeout": 1.0}
        with running(config, capture=True) as s:
            yield s


def send(stack: Stack, client_ip: str, helo: str, mail_from: str, msg: bytes) -> tuple[Result, Event]:
    c = Client("127.0.0.1", stack.postfix.port, helo=helo)
    c.xclient(client_ip, helo)
    r = c.send(mail_from, [RCPT], msg)
    c.quit()
    return r, stack.milter.wait_event(lambda e: e.get("mail_from") == mail_from, "transaction")


def header_fields(raw: bytes) -> list[tuple[str, bytes]]:
    """The delivered header fields, unfolded, values as bytes (whatever they hold)."""
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    fields: list[tuple[str, bytes]] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + b" " + line.strip(b" \t"))
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name.decode("latin-1"), value))
    return fields


# SpamAssassin's Mail::SpamAssassin::Plugin::AuthRes (parsed_metadata, parse_authres): the header
# line matched with `:\s*(.+)`, then the authserv-id with `\G($TOKEN)`, lower-cased.
_SA_TOKEN = rb"[^\s\x00-\x1f\x80-\xff\(\)\<\>\@\,\;\:\/\[\]\?\=\"]+"


def spamassassin_authserv_id(value: bytes) -> bytes | None:
    m = re.match(rb"[ \t\n\r\f\x0b]*(" + _SA_TOKEN + rb")", value)
    return m.group(1).lower() if m else None


# ---- 1. forged Authentication-Results a lenient reader takes as ours ------------------------------

FORGED: list[bytes] = [
    b"\x0b" + AUTHSERV.encode() + b"; dkim=pass header.d=bank.example; dmarc=pass header.from=bank.example",
    b"\x0c" + AUTHSERV.encode() + b"; dmarc=pass header.from=bank.example",
    b" \x0b\x0c" + AUTHSERV.upper().encode() + b"; spf=pass smtp.mailfrom=bank.example",
    b" \xc2\xa0" + AUTHSERV.encode() + b"; dmarc=pass header.from=bank.example",  # NBSP (UTF-8)
    b" \xe2\x80\x8b" + AUTHSERV.encode() + b"; dmarc=pass header.from=bank.example",  # ZWSP
    b" \xe3\x80\x80" + AUTHSERV.encode() + b"; dmarc=pass header.from=bank.example",  # U+3000
    b" \xa0" + AUTHSERV.encode() + b"; dmarc=pass header.from=bank.example",  # NBSP in Latin-1
    b" =?utf-8?q?" + AUTHSERV.encode() + b"?=; dmarc=pass header.from=bank.example",
    b" (a (b) " + AUTHSERV.encode() + b"; dmarc=pass header.from=bank.example",
]
KEPT = b" other.example; spf=pass smtp.mailfrom=attacker.example"


def test_forged_results_with_odd_separators_are_removed(stack: Stack) -> None:
    mid = f"<{uuid.uuid4().hex}@attacker.example>"
    mail_from = f"b-{uuid.uuid4().hex[:10]}@attacker.example"
    head = b"".join(b"Authentication-Results:" + v + b"\r\n" for v in FORGED)
    msg = (
        head + b"Authentication-Results:" + KEPT + b"\r\n"
        b"From: Bank <x@attacker.example>\r\nTo: <" + RCPT.encode() + b">\r\nSubject: pay now\r\n"
        b"Date: Mon, 23 Nov 2026 04:00:00 +0000\r\nMessage-ID: " + mid.encode() + b"\r\n\r\nPay now.\r\n"
    )
    r, t = send(stack, ATTACKER_IP, "mx.attacker.example", mail_from, msg)
    assert r.accepted, r
    assert t["authres_removed"] == len(FORGED)
    assert stack.sink is not None
    delivered = stack.sink.find(mid.encode())
    ars = [v for n, v in header_fields(delivered) if n.strip().lower() == "authentication-results"]
    assert len(ars) == 2, ars  # ours and the foreign one
    ours = [v for v in ars if claims(v, AUTHSERV)]
    assert len(ours) == 1 and ours[0].lstrip().startswith(AUTHSERV.encode() + b";")
    assert b"bank.example" not in ours[0]
    assert KEPT in ars
    # what SpamAssassin reads: one field with our authserv-id, ours
    sa = [v for v in ars if spamassassin_authserv_id(v) == AUTHSERV.encode()]
    assert sa == ours
    assert b"\x0b" not in delivered.split(b"\r\n\r\n")[0] and b"\x0c" not in delivered.split(b"\r\n\r\n")[0]


@pytest.mark.parametrize("count", [MAX_AR_REMOVALS, MAX_AR_REMOVALS + 1])
def test_more_forged_fields_than_postfix_can_remove_is_refused(stack: Stack, count: int) -> None:
    """Each removal is one header edit: Postfix's cleanup takes 1,000 (all removed, delivered with
    our one header) and fails a message past about 10,000 (451, in monitor mode too). One more than
    MAX_AR_REMOVALS is refused by mailpolicy itself, with its own reply."""
    mid = f"<{uuid.uuid4().hex}@attacker.example>"
    mail_from = f"n-{uuid.uuid4().hex[:10]}@attacker.example"
    forged = b"Authentication-Results: " + AUTHSERV.encode() + b"; dmarc=pass header.from=bank.example\r\n"
    msg = (
        forged * count + b"From: Bank <x@attacker.example>\r\nTo: <" + RCPT.encode() + b">\r\n"
        b"Subject: many\r\nDate: Mon, 23 Nov 2026 04:00:00 +0000\r\nMessage-ID: "
        + mid.encode()
        + b"\r\n\r\nx\r\n"
    )
    r, t = send(stack, ATTACKER_IP, "mx.attacker.example", mail_from, msg)
    if count <= MAX_AR_REMOVALS:
        assert r.accepted, r
        assert t["outcome"] == "accepted" and t["authres_removed"] == count
        assert stack.sink is not None
        ars = [
            v
            for n, v in header_fields(stack.sink.find(mid.encode()))
            if n.lower() == "authentication-results"
        ]
        assert len(ars) == 1 and b"bank.example" not in ars[0]
    else:
        assert not r.accepted and r.data_reply is not None and r.data_reply[0] == 550, r
        assert "Too many Authentication-Results" in r.data_reply[1], r
        assert (t["outcome"], t["stage"]) == ("rejected", "eom")


def test_spamassassin_reads_the_forged_fields_as_ours() -> None:
    """The premise: SpamAssassin's reading takes the first two forged fields as ours."""
    assert spamassassin_authserv_id(FORGED[0]) == AUTHSERV.encode()
    assert spamassassin_authserv_id(FORGED[1]) == AUTHSERV.encode()
    assert spamassassin_authserv_id(KEPT) == b"other.example"


# ---- 2. the quoted ';' in an AAR a trusted sealer wrote ---------------------------------------------

# The forwarder's own A-R for the attacker's message: SPF passed for the attacker's MAIL FROM, whose
# quoted local part the attacker chose; DMARC failed for the real author, bank.example.
QUOTED_MAILFROM = '"x;dmarc=pass header.from=bank.example y"@attacker.example'
AR_QUOTED_LOCAL_PART = (
    f"mx.forwarder.example; spf=pass smtp.mailfrom={QUOTED_MAILFROM}; dkim=none;"
    " dmarc=fail header.from=bank.example"
)
# The same recorded the way mailpolicy writes such a value (one quoted-string): dkimpy's authres
# copies it into the AAR with the outer quotes dropped and the inner ones escaped.
AR_QUOTED_VALUE = (
    'mx.forwarder.example; spf=pass smtp.mailfrom="\\"x;dmarc=pass header.from=bank.example y\\"'
    '@attacker.example"; dkim=none; dmarc=fail header.from=bank.example'
)
AR_REAL_PASS = (
    "mx.forwarder.example; spf=pass smtp.mailfrom=bank.example; dmarc=pass header.from=bank.example"
)


def sealed(ar: str) -> tuple[bytes, str]:
    """A spoof of ceo@bank.example as forwarder.example received it, with forwarder.example's own
    Authentication-Results ``ar``, ARC-sealed by forwarder.example."""
    mid = f"<{uuid.uuid4().hex}@attacker.example>"
    msg = (
        f"Authentication-Results: {ar}\r\n"
        f"From: CEO <ceo@bank.example>\r\nTo: <{RCPT}>\r\nSubject: Urgent: new account number\r\n"
        f"Date: Mon, 23 Nov 2026 04:00:00 +0000\r\nMessage-ID: {mid}\r\n\r\nPlease pay to ...\r\n"
    ).encode()
    sets = dkim.arc_sign(
        msg, ARC_SELECTOR.encode(), b"forwarder.example", forwarder_key().private, b"mx.forwarder.example"
    )
    assert isinstance(sets, list) and len(sets) == 3, sets
    aar = next(h for h in sets if h.startswith(b"ARC-Authentication-Results:"))
    assert b"i=1; mx.forwarder.example" in aar
    if "dmarc=pass" not in ar:  # the premise: what the attacker wrote is in the sealed AAR
        assert b"x;dmarc=pass header.from=bank.example y" in aar, aar
    return b"".join(sets) + msg, mid


def send_sealed(stack: Stack, ar: str) -> tuple[Result, Event, str]:
    msg, mid = sealed(ar)
    r, t = send(
        stack, FORWARDER_IP, "mx.forwarder.example", f"fwd-{uuid.uuid4().hex[:10]}@forwarder.example", msg
    )
    return r, t, mid


def test_a_trusted_sealer_still_vouches_for_a_real_pass(stack: Stack) -> None:
    """Control: the chain, the sealer's trust and the override all work."""
    r, t, _mid = send_sealed(stack, AR_REAL_PASS)
    assert r.accepted, r
    assert (t["arc"]["result"], t["arc"]["sealers"]) == ("pass", ["forwarder.example"])
    d = t["policies"]["dmarc"]
    assert (d["result"], d["action"], d["override"]) == ("fail", "continue", "trusted_forwarder")
    assert d["details"]["override_by"] == "forwarder.example"


@pytest.mark.parametrize("ar", [AR_QUOTED_LOCAL_PART, AR_QUOTED_VALUE], ids=["local-part", "quoted-value"])
def test_a_quoted_semicolon_in_a_trusted_aar_gets_no_override(stack: Stack, ar: str) -> None:
    before = stack.milter.metric(
        "mailpolicy_policy_overrides_total",
        policy="dmarc",
        mode="enforce",
        reason="trusted_forwarder",
        overridden_action="reject",
    )
    r, t, mid = send_sealed(stack, ar)
    assert not r.accepted and r.data_reply is not None, r
    assert r.data_reply[0] == 550 and r.data_reply[1].startswith("5.7.1"), r.data_reply
    assert (t["arc"]["result"], t["arc"]["sealers"]) == ("pass", ["forwarder.example"])
    assert t["dmarc"]["result"] == "fail" and t["dmarc"]["domain"] == "bank.example"
    d = t["policies"]["dmarc"]
    assert (d["mode"], d["action"], d["applied"], d["override"]) == ("enforce", "reject", True, None)
    assert t["outcome"] == "rejected"
    assert stack.sink is not None and mid.encode() not in b"".join(stack.sink.messages())
    after = stack.milter.metric(
        "mailpolicy_policy_overrides_total",
        policy="dmarc",
        mode="enforce",
        reason="trusted_forwarder",
        overridden_action="reject",
    )
    assert after == before
