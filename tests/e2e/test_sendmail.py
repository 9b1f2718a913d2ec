"""End to end with a real Sendmail 8.17: the README's m4 lines, the real ``mailpolicy run`` process,
real SMTP clients (smtplib) and a loopback DNS server; every delivered copy written to a file.

One Sendmail serves the whole module with two daemon sockets, each wired to its own milter:
``monitor`` (all policies in monitor mode, authentication on, also on ::1) and ``enforce``
(``require_starttls`` enforced). See tests/support/sendmail.py for how Sendmail runs without being
installed, without DNS and without touching the host. These tests never skip: without Sendmail they
fail and say how to get it (``make sendmail``).

Sendmail differs from Postfix in what it sends the milter (the certificate DN, a certificate that
did not verify, when the queue id arrives); these tests pin that the records mean the same."""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.dkimkeys import ed25519_key, sign
from support.dnsserver import DnsServer
from support.sendmail import HOSTNAME, SendmailStack
from support.smtp import Client, tls_context, unique_sender
from support.stack import Event, make_cert

pytestmark = pytest.mark.e2e

AUTHSERV = "mx.test.example"
RCPT = "user@capture.example"
# A client certificate whose subject has spaces, a comma and a plus: Sendmail sends the full DN in
# OpenSSL's one-line form (which writes a literal "+" as "\+"), xtext-encoded (RFC 3461: "+20" is a
# space, "+2B" a plus), and mailpolicy records it xtext-decoded: OpenSSL's form, as OpenSSL shows it.
CLIENT_DN = "/C=XX/O=Client Org\\+Sons, Inc./CN=client.sender.example"
CA_DN = "/CN=Test Client CA"


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    zone = {
        "sender.example": [("TXT", "v=spf1 ip4:127.0.0.1 ip6:::1 -all")],
        "_dmarc.sender.example": [("TXT", "v=DMARC1; p=reject")],
        "s1._domainkey.sender.example": [("TXT", ed25519_key().record)],
    }
    with DnsServer(zone) as srv:
        yield srv


@pytest.fixture(scope="module")
def sm(dns: DnsServer) -> Iterator[SendmailStack]:
    stack = SendmailStack(
        {
            "monitor": {
                "dns": {"nameservers": [dns.nameserver], "timeout": 1.0},
                "auth": {"authserv_id": AUTHSERV},
                "policies": {
                    "require_starttls": {"mode": "monitor"},
                    "tls_min_version": {"mode": "monitor", "min_version": "TLSv1.3"},
                    "spf": {"mode": "monitor"},
                    "dmarc": {"mode": "monitor"},
                },
            },
            "enforce": {
                "auth": {"enabled": False},
                "policies": {
                    "require_starttls": {"mode": "enforce"},
                    "tls_min_version": {"mode": "off"},
                    "spf": {"mode": "off"},
                    "dmarc": {"mode": "off"},
                },
            },
        }
    ).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(autouse=True)
def _diagnostics(sm: SendmailStack) -> Iterator[None]:
    """Sendmail's log lines of this test (and the milters' stderr), shown if it fails."""
    since = len(sm.sendmail.log())
    yield
    print(sm.diagnostics(since))


def txns(sm: SendmailStack, milter: str, sender: str, count: int = 1) -> list[Event]:
    m = sm.milters[milter]

    def found() -> list[Event]:
        ts = [t for t in m.events("transaction") if t.get("mail_from") == sender]
        return ts if len(ts) >= count else []

    m.wait_event(lambda e: bool(found()), "transaction")
    return found()


def conn(sm: SendmailStack, milter: str, conn_id: str) -> Event:
    return sm.milters[milter].wait_event(lambda e: e["conn_id"] == conn_id, "connection")


def headers(raw: bytes) -> list[tuple[str, str]]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    return [(k, " ".join(str(v).split())) for k, v in msg.items()]


def received_tls(raw: bytes) -> tuple[str, str, int, str]:
    """(version, cipher, bits, verify) from the Received header Sendmail wrote for this message."""
    received = dict(headers(raw))["Received"]
    m = re.search(r"\(version=(\S+) cipher=(\S+) bits=(\d+) verify=(\w+)\)", received)
    assert m, received
    return m.group(1), m.group(2), int(m.group(3)), m.group(4)


def body(sender: str, extra_headers: str = "") -> tuple[bytes, str]:
    mid = f"<{uuid.uuid4().hex}@sender.example>"
    msg = (
        f"From: Sender <{sender}>\r\nTo: <{RCPT}>\r\nSubject: sendmail e2e\r\n"
        f"Date: Mon, 23 Nov 2026 04:00:00 +0000\r\nMessage-ID: {mid}\r\n{extra_headers}"
        "\r\nHello from the Sendmail tests.\r\n"
    ).encode()
    return msg, mid


def session_cipher(c: Client) -> tuple[str, str, int]:
    """(version, cipher, bits) as the client negotiated them."""
    sock = c.smtp.sock
    assert sock is not None and hasattr(sock, "cipher")
    name, version, bits = sock.cipher()
    return version, name, bits


# ---------------------------------------------------------------- monitor -----------------------


def test_plaintext_session(sm: SendmailStack) -> None:
    sender = unique_sender("plain")
    msg, mid = body(sender)
    c = Client("127.0.0.1", sm.ports["monitor"], helo="plain.client.example")
    assert c.send(sender, [RCPT, "other@capture.example"], msg).accepted
    c.quit()
    (t,) = txns(sm, "monitor", sender)
    assert t["starttls"] is False
    assert [t[k] for k in ("tls_version", "tls_cipher", "tls_cipher_bits", "tls_cert_subject")] == [None] * 4
    assert t["outcome"] == "accepted" and t["stage"] == "eom" and t["rcpt_count"] == 2
    assert t["policies"]["require_starttls"] == {
        "mode": "monitor",
        "result": "fail",
        "action": "reject",
        "applied": False,
        "exempt": None,
        "override": None,
        "overridden_action": None,
        "reply": "530 5.7.0 Must issue a STARTTLS command first",
    }
    assert t["policies"]["tls_min_version"]["result"] == "none"
    cn = conn(sm, "monitor", t["conn_id"])
    assert cn["client_ip"] == "127.0.0.1" and cn["helo"] == ["plain.client.example"]
    assert cn["daemon"] == "monitor"  # Sendmail's {daemon_name}: DAEMON_OPTIONS Name=
    assert cn["starttls"] is False and cn["tls_version"] is None
    assert cn["messages"] == 1 and cn["outcomes"] == {"accepted": 1} and cn["end_stage"] == "eom"
    # One delivered copy per recipient, each with our header.
    copies = sm.sendmail.find_all(mid.encode(), 2)
    assert len(copies) == 2
    for copy in copies:
        assert headers(copy)[1][1].startswith(f"{AUTHSERV}; spf=pass")


@pytest.mark.parametrize("version,floor", [("TLSv1.2", "fail"), ("TLSv1.3", "pass")])
def test_starttls_version_cipher_bits(sm: SendmailStack, version: str, floor: str) -> None:
    sender = unique_sender("tls")
    msg, mid = body(sender)
    c = Client("127.0.0.1", sm.ports["monitor"])
    c.starttls(version)
    negotiated = session_cipher(c)
    assert c.send(sender, [RCPT], msg).accepted
    c.quit()
    (t,) = txns(sm, "monitor", sender)
    assert (t["tls_version"], t["tls_cipher"], t["tls_cipher_bits"]) == negotiated
    assert negotiated[0] == version
    # ...and Sendmail's own view of the session agrees.
    assert received_tls(sm.sendmail.find(mid.encode())) == (*negotiated, "NO")
    assert t["starttls"] is True
    # With TLS but no client certificate Sendmail sends {cert_subject} and {cert_issuer} as empty
    # strings (Postfix does not send them): recorded as null.
    assert t["tls_cert_subject"] is None and t["tls_cert_issuer"] is None
    assert t["policies"]["require_starttls"]["result"] == "pass"
    assert t["policies"]["tls_min_version"]["result"] == floor
    cn = conn(sm, "monitor", t["conn_id"])
    assert (cn["tls_version"], cn["tls_cipher"], cn["tls_cipher_bits"]) == negotiated
    assert cn["starttls"] is True and cn["tls_cert_subject"] is None
    assert cn["helo"] == ["client.example", "client.example"]


def test_mail_right_after_starttls_without_second_ehlo(sm: SendmailStack) -> None:
    sender = unique_sender("noehlo")
    c = Client("127.0.0.1", sm.ports["monitor"])
    c.starttls("TLSv1.3", second_ehlo=False)
    negotiated = session_cipher(c)
    assert c.send(sender, [RCPT]).accepted
    c.quit()
    (t,) = txns(sm, "monitor", sender)
    # No HELO after STARTTLS, so no HELO-stage TLS macros: the TLS facts come with MAIL.
    assert t["starttls"] is True and (t["tls_version"], t["tls_cipher"], t["tls_cipher_bits"]) == negotiated
    assert t["policies"]["require_starttls"]["result"] == "pass"
    cn = conn(sm, "monitor", t["conn_id"])
    assert cn["helo"] == ["client.example"] and cn["starttls"] is True and cn["tls_version"] == "TLSv1.3"


def test_two_messages_on_one_connection_and_an_aborted_one(sm: SendmailStack) -> None:
    """Sendmail sends the milter no abort between two messages, but does at RSET."""
    sender = unique_sender("two")
    c = Client("127.0.0.1", sm.ports["monitor"])
    c.starttls("TLSv1.3")
    assert c.smtp.mail(sender)[0] == 250 and c.smtp.rcpt(RCPT)[0] == 250
    assert c.smtp.rset()[0] == 250
    assert c.send(sender, [RCPT]).accepted
    assert c.send(sender, [RCPT, "b@capture.example"]).accepted
    c.quit()
    t0, t1, t2 = txns(sm, "monitor", sender, 3)
    assert len({t0["conn_id"], t1["conn_id"], t2["conn_id"]}) == 1
    assert [t["txn"] for t in (t0, t1, t2)] == [1, 2, 3]
    assert (t0["outcome"], t0["stage"], t0["rcpt_count"]) == ("aborted", "rcpt", 1)
    assert [(t["outcome"], t["rcpt_count"], t["tls_version"]) for t in (t1, t2)] == [
        ("accepted", 1, "TLSv1.3"),
        ("accepted", 2, "TLSv1.3"),
    ]
    cn = conn(sm, "monitor", t0["conn_id"])
    assert cn["transactions"] == 3 and cn["messages"] == 2
    assert cn["outcomes"] == {"aborted": 1, "accepted": 2}


def test_ipv6_loopback(sm: SendmailStack) -> None:
    sender = unique_sender("v6")
    c = Client("::1", sm.port6)
    c.starttls("TLSv1.2")
    assert c.send(sender, [RCPT]).accepted
    c.quit()
    (t,) = txns(sm, "monitor", sender)
    # The connect callback gives "::1"; Sendmail's {client_addr} would be "IPv6:0:0:0:0:0:0:0:1".
    assert t["client_ip"] == "::1" and t["starttls"] is True and t["tls_version"] == "TLSv1.2"
    assert conn(sm, "monitor", t["conn_id"])["daemon"] == "monitor-v6"


def test_authentication_results_added_at_the_top_and_forged_ones_removed(sm: SendmailStack) -> None:
    sender = f"alice-{uuid.uuid4().hex[:8]}@sender.example"
    forged = (
        f"Authentication-Results: {AUTHSERV}; dkim=pass header.d=bank.example; dmarc=pass\r\n"
        f"authentication-results: {AUTHSERV.upper()};\r\n\tspf=pass smtp.mailfrom=bank.example\r\n"
        "Authentication-Results: other.example; spf=pass smtp.mailfrom=sender.example\r\n"
    )
    msg, mid = body(sender, forged)
    signed = sign(msg, "sender.example", "s1", ed25519_key())
    before = sm.milters["monitor"].metric("mailpolicy_authres_removed_total")
    c = Client("127.0.0.1", sm.ports["monitor"])
    c.starttls()
    assert c.send(sender, [RCPT], signed).accepted
    c.quit()
    (t,) = txns(sm, "monitor", sender)
    assert t["spf"]["result"] == "pass" and t["dmarc"]["result"] == "pass" and t["authenticated"] is True
    assert [(d["result"], d["domain"]) for d in t["dkim"]] == [("pass", "sender.example")]
    assert t["authres_removed"] == 2
    assert sm.milters["monitor"].metric("mailpolicy_authres_removed_total") == before + 2

    delivered = headers(sm.sendmail.find(mid.encode()))
    names = [k.lower() for k, _ in delivered]
    # Return-Path is the delivery agent's (mailer flag P); ours comes next, above Sendmail's Received.
    assert names[:3] == ["return-path", "authentication-results", "received"], names
    ars = [v for k, v in delivered if k.lower() == "authentication-results"]
    ours = [v for v in ars if v.lower().startswith(AUTHSERV)]
    assert len(ours) == 1 and ours[0] == delivered[1][1]
    assert "spf=pass" in ours[0] and "dkim=pass" in ours[0] and "header.d=sender.example" in ours[0]
    assert "dmarc=pass" in ours[0] and "bank.example" not in ours[0]
    assert ars.count("other.example; spf=pass smtp.mailfrom=sender.example") == 1


def send_with_client_cert(
    sm: SendmailStack, cert: tuple[Path, Path], version: str, tag: str
) -> tuple[str, Event]:
    """One message over STARTTLS showing ``cert`` = (key, certificate); Sendmail's verify result
    (from its Received header) and our transaction record."""
    sender = unique_sender(tag)
    msg, mid = body(sender)
    c = Client("127.0.0.1", sm.ports["monitor"])
    ctx = tls_context(version)
    ctx.load_cert_chain(str(cert[1]), str(cert[0]))
    c.smtp.starttls(context=ctx)
    c.smtp.ehlo(c.helo)
    assert c.send(sender, [RCPT], msg).accepted
    c.quit()
    verify = received_tls(sm.sendmail.find(mid.encode()))[3]
    (t,) = txns(sm, "monitor", sender)
    return verify, t


def test_verified_client_certificate(sm: SendmailStack) -> None:
    verify, t = send_with_client_cert(sm, make_cert(sm.pki, CLIENT_DN, "client-", sm.ca), "TLSv1.3", "cert")
    assert verify == "OK"
    # The full DN (Postfix sends the CN only), decoded from Sendmail's xtext.
    assert (t["tls_cert_subject"], t["tls_cert_issuer"]) == (CLIENT_DN, CA_DN)
    cn = conn(sm, "monitor", t["conn_id"])
    assert (cn["tls_cert_subject"], cn["tls_cert_issuer"]) == (CLIENT_DN, CA_DN)


def test_client_certificate_that_did_not_verify_is_not_recorded(sm: SendmailStack) -> None:
    """Sendmail sends {cert_subject} for any certificate the client shows ({verify} says FAIL);
    Postfix only for one that verified. mailpolicy asks for {verify} so that the field means a
    verified certificate under both: a self-signed one is null, in the transaction and the
    connection."""
    rogue = make_cert(sm.pki, "/O=Rogue/CN=rogue.example", "rogue-")
    verify, t = send_with_client_cert(sm, rogue, "TLSv1.2", "rogue")
    assert verify == "FAIL"
    assert (t["starttls"], t["tls_version"]) == (True, "TLSv1.2")
    assert (t["tls_cert_subject"], t["tls_cert_issuer"]) == (None, None)
    cn = conn(sm, "monitor", t["conn_id"])
    assert (cn["tls_cert_subject"], cn["tls_cert_issuer"]) == (None, None)


def test_queue_id_is_sendmails(sm: SendmailStack) -> None:
    sender = unique_sender("qid")
    msg, mid = body(sender)
    c = Client("127.0.0.1", sm.ports["monitor"])
    assert c.send(sender, [RCPT], msg).accepted
    c.quit()
    received = dict(headers(sm.sendmail.find(mid.encode())))["Received"]
    m = re.search(rf"by {re.escape(HOSTNAME)} \(\S+\) with E?SMTPS? id (\w+)", received)
    assert m, received
    (t,) = txns(sm, "monitor", sender)
    assert t["queue_id"] == m.group(1)


# ---------------------------------------------------------------- enforce -----------------------


def test_enforce_plaintext_gets_530_then_starttls_retry_succeeds(sm: SendmailStack) -> None:
    sender = unique_sender("enf")
    msg, mid = body(sender)
    c = Client("127.0.0.1", sm.ports["enforce"])
    r = c.send(sender, [RCPT], msg)
    assert not r.accepted
    assert r.refused_sender == (530, "5.7.0 Must issue a STARTTLS command first")
    # The session stays usable: STARTTLS, and the same mail goes through.
    c.starttls("TLSv1.3")
    assert c.send(sender, [RCPT], msg).accepted
    c.quit()
    sm.sendmail.find(mid.encode())
    t1, t2 = txns(sm, "enforce", sender, 2)
    assert (t1["outcome"], t1["stage"], t1["final_action"]) == ("rejected", "mail", "reject")
    assert t1["rcpt_count"] == 0 and t1["starttls"] is False
    assert t1["policies"]["require_starttls"]["applied"] is True
    assert (t2["outcome"], t2["starttls"], t2["tls_version"]) == ("accepted", True, "TLSv1.3")
    assert t2["policies"]["require_starttls"]["result"] == "pass"
    assert t1["conn_id"] == t2["conn_id"]
    cn = conn(sm, "enforce", t1["conn_id"])
    assert cn["outcomes"] == {"rejected": 1, "accepted": 1} and cn["starttls"] is True
    assert cn["daemon"] == "enforce"
    # The queue id of the transaction refused at MAIL is Sendmail's too (it sends `i` only at MAIL).
    assert re.search(
        rf"{t1['queue_id']}: .*reject=530 5.7.0 Must issue a STARTTLS command first", sm.sendmail.log()
    )
    assert t2["queue_id"] and t2["queue_id"] != t1["queue_id"]


def test_enforce_tls_session_is_accepted(sm: SendmailStack) -> None:
    sender = unique_sender("enf-tls")
    c = Client("127.0.0.1", sm.ports["enforce"])
    c.starttls("TLSv1.2")
    assert c.send(sender, [RCPT]).accepted
    c.quit()
    (t,) = txns(sm, "enforce", sender)
    assert t["outcome"] == "accepted" and t["policies"]["require_starttls"]["applied"] is False


def test_sendmail_is_what_the_readme_says(sm: SendmailStack) -> None:
    """The cf was built from the README's two m4 lines, and Sendmail really used this milter."""
    cf = sm.sendmail.cf.read_text()
    assert "F=T, T=S:30s;R:30s;E:5m" in cf
    assert re.search(r"^O Milter\.macros\.envfrom=.*\{tls_version\}.*\{auth_authen\}", cf, re.M)
    log = sm.sendmail.log()
    assert "Milter (monitor): init success to negotiate" in log
    assert "Milter (enforce): init success to negotiate" in log
