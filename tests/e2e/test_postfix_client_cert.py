"""End to end: a client certificate that Postfix verified shows up in both records."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.smtp import Client, tls_context, unique_sender
from support.stack import Stack, make_cert, make_workdir, running

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cert_stack() -> Iterator[tuple[Stack, Path, Path]]:
    """Postfix asks for a client certificate and trusts a test CA; yields the stack and a client
    certificate (CN=client.sender.example) signed by that CA."""
    pki = make_workdir("mailpolicy-pki-")
    ca = make_cert(pki, "/CN=Test Client CA", "ca-")
    key, cert = make_cert(pki, "/CN=client.sender.example", "client-", ca)
    try:
        with running(postfix_main={"smtpd_tls_ask_ccert": "yes", "smtpd_tls_CAfile": str(ca[1])}) as stack:
            yield stack, cert, key
    finally:
        shutil.rmtree(pki, ignore_errors=True)


def test_verified_client_certificate_is_recorded(cert_stack: tuple[Stack, Path, Path]) -> None:
    stack, cert, key = cert_stack
    sender = unique_sender("cert")
    c = Client("127.0.0.1", stack.postfix.port)
    ctx = tls_context("TLSv1.2")
    ctx.load_cert_chain(str(cert), str(key))
    c.smtp.starttls(context=ctx)
    c.smtp.ehlo(c.helo)
    assert c.send(sender, ["user@rcpt.example"]).accepted
    c.quit()
    t = stack.milter.wait_event(lambda e: e.get("mail_from") == sender, "transaction")
    assert t["tls_cert_subject"] == "client.sender.example"
    assert t["tls_cert_issuer"] == "Test Client CA"
    conn = stack.milter.wait_event(lambda e: e["conn_id"] == t["conn_id"], "connection")
    assert conn["tls_cert_subject"] == "client.sender.example"


def test_no_certificate_gives_null_subject(cert_stack: tuple[Stack, Path, Path]) -> None:
    stack, _, _ = cert_stack
    sender = unique_sender("nocert")
    c = Client("127.0.0.1", stack.postfix.port)
    c.starttls("TLSv1.3")
    assert c.send(sender, ["user@rcpt.example"]).accepted
    c.quit()
    t = stack.milter.wait_event(lambda e: e.get("mail_from") == sender, "transaction")
    assert t["starttls"] is True and t["tls_cert_subject"] is None and t["tls_cert_issuer"] is None
