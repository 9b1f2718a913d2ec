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
    # MAIL (2): the queue id first (Sendmail sends it only there), TLS, {verify}, AUTH; HELO (1): TLS.
    assert c.symlists[2].split()[0] == "i"
    assert {"{tls_version}", "{verify}", "{auth_authen}", "{client_addr}"} <= set(c.symlists[2].split())
    assert set(c.symlists[1].split()) == {
        "{tls_version}",
        "{cipher}",
        "{cipher_bits}",
        "{cert_subject}",
        "{cert_issuer}",
        "{verify}",
    }
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


def test_8bit_helo_is_recorded_on_its_own_connection(milter_proc: MilterProcess) -> None:
    """Hole 7: pymilter's C code cannot pass an 8-bit HELO to Python; it reached stderr as a bare
    traceback and the HELO was never recorded. The excepthook attributes it to its connection (one
    Python thread state per milter connection), even with other connections interleaved."""
    bad, good = MilterClient(milter_proc.socket), MilterClient(milter_proc.socket)
    bad.connect("bad.example", "203.0.113.61")
    good.connect("good.example", "203.0.113.62")
    bad.helo(b"mail.\xff\xfe.example")
    good.helo("mail.good.example")
    bad.helo(b"again.\xe9.example", macros=TLS12)
    s1, s2 = sender(), sender()
    macros: dict[str, str | bytes] = {"{cert_subject}": b"Caf\xe9 CA", **TLS12}
    assert bad.mail(s1, macros=macros).continued
    assert good.mail(s2, macros=TLS12).continued
    bad.quit()
    good.quit()
    t1 = milter_proc.wait_event(lambda e: e.get("mail_from") == s1, "transaction")
    t2 = milter_proc.wait_event(lambda e: e.get("mail_from") == s2, "transaction")
    c1 = milter_proc.wait_event(lambda e: e["conn_id"] == t1["conn_id"], "connection")
    c2 = milter_proc.wait_event(lambda e: e["conn_id"] == t2["conn_id"], "connection")
    assert c1["helo"] == ["mail.\ufffd\ufffd.example", "again.\ufffd.example"] and "helo" in c1["unreadable"]
    assert t1["tls_cert_subject"] == "Caf\ufffd CA" and "{cert_subject}" in t1["unreadable"]
    assert set(t1["policies"]) == {"require_starttls", "tls_min_version"}
    assert c2["helo"] == ["mail.good.example"] and c2["unreadable"] == []
    assert (
        "Traceback" not in milter_proc.stderr_text() and "UnicodeDecodeError" not in milter_proc.stderr_text()
    )


def test_a_second_instance_on_the_same_socket_refuses_to_start(milter_proc: MilterProcess) -> None:
    """Hole 11: a second `mailpolicy run` on the same socket path silently took over the socket."""
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "mailpolicy", "run", "--config", str(milter_proc.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert f"milter.socket: {milter_proc.socket} is in use by a running process" in r.stderr
    c = MilterClient(milter_proc.socket)  # the first instance still serves its socket
    c.connect("still.example", "203.0.113.63")
    assert c.helo("still.example").continued
    c.quit()


def test_undecodable_arguments_never_tempfail_even_with_on_error_tempfail() -> None:
    """connect and HELO are answered; what pymilter does when it cannot decode them must not depend
    on milter.on_error (a 4xx to an 8-bit HELO would refuse mail in monitor mode)."""
    m = MilterProcess(config={"milter": {"on_error": "tempfail"}, "auth": {"enabled": False}}).start()
    try:
        c = MilterClient(m.socket)
        assert c.connect(b"host.\xff.example", "203.0.113.70").continued
        assert c.helo(b"mail.\xff.example").continued
        s = sender()
        # The connect arguments never reached Python: the address comes from {client_addr}, which
        # the milter asks the MTA for at MAIL FROM.
        assert c.mail(s, macros={**TLS12, "{client_addr}": "203.0.113.70"}).continued
        c.quit()
        t = m.wait_event(lambda e: e.get("mail_from") == s, "transaction")
        assert {"client_name", "helo"} <= set(t["unreadable"])
        assert t["client_name"] == "host.\ufffd.example" and t["client_ip"] == "203.0.113.70"
    finally:
        m.stop()
