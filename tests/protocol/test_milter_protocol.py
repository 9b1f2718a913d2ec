"""Drive the real mailpolicy process over its unix socket with an MTA-side milter client."""

from __future__ import annotations

import os
import stat
import uuid

from support.milterclient import NOBODY, NOHDRS, MilterClient
from support.stack import MilterProcess

TLS12 = {"{tls_version}": "TLSv1.2", "{cipher}": "ECDHE-RSA-AES128-GCM-SHA256", "{cipher_bits}": "128"}


def sender() -> str:
    return f"p-{uuid.uuid4().hex[:8]}@sender.example"


def test_socket_has_configured_group_and_mode(milter_proc: MilterProcess) -> None:
    st = os.stat(milter_proc.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    import grp

    assert grp.getgrgid(st.st_gid).gr_name == "postfix"


def test_negotiation_asks_for_tls_macros_at_mail_and_skips_the_message(milter_proc: MilterProcess) -> None:
    c = MilterClient(milter_proc.socket)
    assert "{tls_version}" in c.symlists[2] and "{auth_authen}" in c.symlists[2]
    assert c.protocol & NOHDRS and c.protocol & NOBODY
    c.quit()


def test_enforce_rejects_plaintext_at_mail_and_accepts_tls(milter_proc: MilterProcess) -> None:
    c = MilterClient(milter_proc.socket)
    c.connect("[203.0.113.7]", "203.0.113.7")
    c.helo("client.example")
    s1 = sender()
    r = c.mail(s1)
    assert r.smtp == "530 5.7.0 Must issue a STARTTLS command first"
    s2 = sender()
    assert c.mail(s2, macros=TLS12).continued
    assert c.rcpt("user@rcpt.example").continued
    assert c.eom({"i": "QID1"}).continued
    c.quit()
    t1 = milter_proc.wait_event(lambda e: e.get("mail_from") == s1, "transaction")
    t2 = milter_proc.wait_event(lambda e: e.get("mail_from") == s2, "transaction")
    assert t1["outcome"] == "rejected" and t2["outcome"] == "accepted" and t2["queue_id"] == "QID1"
    assert t2["tls_version"] == "TLSv1.2"


def test_exempt_network_in_enforce(milter_proc: MilterProcess) -> None:
    c = MilterClient(milter_proc.socket)
    c.connect("relay.partner.example", "192.0.2.44")
    c.helo("relay.partner.example")
    s = sender()
    assert c.mail(s).continued
    c.quit()
    t = milter_proc.wait_event(lambda e: e.get("mail_from") == s, "transaction")
    assert t["policies"]["require_starttls"]["exempt"] == "network"
    assert t["outcome"] == "aborted"


def test_garbage_macros_and_addresses_give_defined_records(milter_proc: MilterProcess) -> None:
    errors_before = milter_proc.metric("mailpolicy_callback_errors_total")
    c = MilterClient(milter_proc.socket)
    c.connect("bad\x01name\r\n", "203.0.113.77", macros={"{daemon_name}": "\x01\xff" * 200})
    c.helo("\x01" * 10, macros={"{tls_version}": "banana", "{cipher}": "X" * 5000, "{cipher_bits}": "lots"})
    s = sender()
    assert c.mail(s, macros={"{auth_authen}": "\x7f"}).continued
    assert c.rcpt("<<<>>>").continued
    assert c.eom().continued
    c.quit()
    t = milter_proc.wait_event(lambda e: e.get("mail_from") == s, "transaction")
    assert t["tls_version"] == "unknown" and t["tls_cipher_bits"] is None
    assert len(t["tls_cipher"]) == 128
    assert t["client_ip"] == "203.0.113.77" and t["client_name"] == "bad?name"
    assert t["policies"]["tls_min_version"]["result"] == "permerror"
    assert t["policies"]["tls_min_version"]["action"] == "continue"
    assert t["policies"]["require_starttls"]["result"] == "pass"
    assert milter_proc.metric("mailpolicy_callback_errors_total") == errors_before


def test_ipv6_client_and_abort_then_new_transaction(milter_proc: MilterProcess) -> None:
    c = MilterClient(milter_proc.socket)
    c.connect("v6.example", "2001:db8::25")
    c.helo("v6.example", macros=TLS12)
    s1, s2 = sender(), sender()
    assert c.mail(s1).continued
    assert c.rcpt("a@rcpt.example").continued
    c.abort()
    assert c.mail(s2).continued
    assert c.rcpt("a@rcpt.example").continued
    assert c.eom({"i": "QID2"}).continued
    c.quit()
    t1 = milter_proc.wait_event(lambda e: e.get("mail_from") == s1, "transaction")
    t2 = milter_proc.wait_event(lambda e: e.get("mail_from") == s2, "transaction")
    assert t1["outcome"] == "aborted" and t1["client_ip"] == "2001:db8::25"
    assert (t2["txn"], t2["outcome"], t2["tls_version"]) == (2, "accepted", "TLSv1.2")
    conn = milter_proc.wait_event(lambda e: e["conn_id"] == t1["conn_id"], "connection")
    assert conn["outcomes"] == {"aborted": 1, "accepted": 1} and conn["transactions"] == 2


def test_connection_dropped_mid_transaction_is_recorded(milter_proc: MilterProcess) -> None:
    c = MilterClient(milter_proc.socket)
    c.connect("drop.example", "203.0.113.99")
    c.helo("drop.example", macros=TLS12)
    s = sender()
    assert c.mail(s).continued
    c.sock.close()  # the MTA vanishes without ABORT or QUIT
    t = milter_proc.wait_event(lambda e: e.get("mail_from") == s, "transaction")
    assert t["outcome"] == "aborted" and t["stage"] == "mail"
    conn = milter_proc.wait_event(lambda e: e["conn_id"] == t["conn_id"], "connection")
    assert conn["end_stage"] == "abort"
    # ...and the milter still serves the next connection.
    c2 = MilterClient(milter_proc.socket)
    c2.connect("next.example", "203.0.113.98")
    c2.quit()


def test_tcp_socket_on_loopback() -> None:
    import shutil

    from support.stack import free_port, make_workdir

    workdir = make_workdir("mailpolicy-inet-")
    port = free_port()
    proc = MilterProcess(workdir, {"milter": {"socket": f"inet:{port}@127.0.0.1"}})
    proc.socket = f"inet:{port}@127.0.0.1"
    try:
        proc.start()
        c = MilterClient(proc.socket)
        c.connect("tcp.example", "203.0.113.50")
        c.helo("tcp.example", macros=TLS12)
        s = sender()
        assert c.mail(s).continued
        assert c.rcpt("user@rcpt.example").continued
        assert c.eom({"i": "TCPQ1"}).continued
        c.quit()
        t = proc.wait_event(lambda e: e.get("mail_from") == s, "transaction")
        assert t["queue_id"] == "TCPQ1" and t["tls_version"] == "TLSv1.2"
    finally:
        proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
