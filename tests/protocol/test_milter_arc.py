"""The ValiMail ARC test suite (tests/corpora/arc-test-suite/validation-cases.json, 171 validation
cases) through the real milter process (``mailpolicy run``), driven by the MTA-side client in
tests/support/milterclient.py, DNS pointed at the loopback test DNS server.

One milter process serves every case (``[dns] cache_size = 0``: no resolver cache, so each case sees
exactly its own ``txt_records``; the DKIM key cache is keyed by record text, so a changed record
is a new entry). Per case the server is emptied and loaded with that case's records only, the
message (LF -> CRLF) is delivered as an MTA delivers it (header values exactly as after the colon,
folded lines joined with LF, P_HDR_LEADSPC), and:

- our Authentication-Results header (the one claiming our authserv-id, inserted at the top) parses
  with the strict RFC 8601 parser and its one ``arc=`` clause says ``expected_arc_result``, with
  ``smtp.remote-ip`` the client and ``header.oldest-pass`` on a pass;
- the transaction event's ``arc`` record agrees, and is exactly what ``mailpolicy.auth.arc.verify``
  gives in-process on the same message and DNS data (the verifier-level test,
  tests/mailpolicy/auth/test_arc_suite.py, checks that against the suite and dkimpy);
- the arc check (monitor mode) records the same result and never touches the message."""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest

from mailpolicy.auth import arc, dkim
from support.authres_strict import parse_strict
from support.dnsserver import DnsServer
from support.milterclient import MilterClient, Reply
from support.stack import MilterProcess

AUTHSERV = "mx.test.example"
CLIENT_IP = "192.0.2.1"
BASE = pathlib.Path(__file__).parents[1] / "corpora" / "arc-test-suite"
CASES: list[dict[str, Any]] = json.loads((BASE / "validation-cases.json").read_text())["cases"]
_ARC_WORD = re.compile(r"(?:^|;\s*)arc=([a-z]+)\b")


@pytest.fixture(scope="module")
def milter(dns_server: DnsServer) -> Iterator[MilterProcess]:
    m = MilterProcess(
        config={
            "milter": {"timeout": 30},
            "dns": {"nameservers": [dns_server.nameserver], "timeout": 1.0, "cache_size": 0},
            "auth": {"authserv_id": AUTHSERV, "spf_timeout": 2.0},
            "policies": {
                "require_starttls": {"mode": "off"},
                "tls_min_version": {"mode": "off"},
                "spf": {"mode": "off"},
                "dmarc": {"mode": "off"},
                "arc": {"mode": "monitor"},
            },
        }
    ).start()
    try:
        yield m
    finally:
        m.stop()
        dns_server.clear()


def crlf(case: dict[str, Any]) -> bytes:
    text: str = case["message"]
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def as_mta(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The header fields as an MTA hands them to a milter with P_HDR_LEADSPC (name, value exactly
    as after the colon, folded lines joined with LF) and the body. The header section ends at the
    first empty line; a message that starts with one has no header fields (cv_no_headers), one
    without any has no body (cv_no_body, cv_empty)."""
    if message.startswith(b"\r\n"):
        return [], message[2:]
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        head, body = message.removesuffix(b"\r\n"), b""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n") if head else []:
        if line[:1] in (b" ", b"\t"):
            assert fields, message[:200]
            name, value = fields[-1]
            fields[-1] = (name, value + b"\n" + line)
        else:
            name, colon, value = line.partition(b":")
            assert colon, line
            fields.append((name, value))
    return fields, body


def deliver(m: MilterProcess, message: bytes, queue_id: str) -> Reply:
    headers, body = as_mta(message)
    c = MilterClient(m.socket)
    try:
        assert c.connect("mail.example.org", CLIENT_IP).continued
        assert c.helo("mail.example.org").continued
        assert c.mail("sender@example.org").continued
        assert c.rcpt("bob@example.net").continued
        return c.message(headers, body, eom_macros={"i": queue_id})
    finally:
        c.quit()


def our_header(eom: Reply) -> str:
    """The value of the one Authentication-Results field claiming our authserv-id, as the MTA
    writes it (P_HDR_LEADSPC: verbatim after the colon), unfolded; every one we add parses
    strictly."""
    ours = []
    for cmd, act in eom.actions:
        if cmd in ("h", "i") and act["name"].lower() == "authentication-results":
            value = str(act["value"])
            assert value.startswith(" ") and not value.startswith("  "), value
            parsed = parse_strict(value[1:])  # raises on anything that is not RFC 8601
            if parsed.authserv_id == AUTHSERV:
                ours.append(value[1:].replace("\n\t", " "))
    assert len(ours) == 1, eom.actions
    return ours[0]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['scenario']}/{c['id']}" for c in CASES])
def test_arc_suite_case_through_the_milter(
    milter: MilterProcess, dns: DnsServer, case: dict[str, Any]
) -> None:
    for name, value in case["txt_records"].items():
        dns.add(name, "TXT", value)
    expected: str = case["expected_arc_result"]
    queue_id = f"ARC{CASES.index(case):03d}"
    eom = deliver(milter, crlf(case), queue_id)
    assert eom.continued, eom
    assert [a[0] for a in eom.actions] == ["i"]  # only our header: monitor mode touches nothing

    value = our_header(eom)
    assert _ARC_WORD.findall(value) == [expected], value
    [clause] = [r for r in parse_strict(value).results if r.method == "arc"]
    assert clause.result == expected
    props = {(p.type, p.name): p.value for p in clause.properties}
    assert props[("smtp", "remote-ip")] == CLIENT_IP
    assert (("header", "oldest-pass") in props) == (expected == "pass"), value

    ev = milter.wait_event(lambda e: e.get("queue_id") == queue_id, "transaction")
    assert ev["arc"]["result"] == expected, ev["arc"]
    assert ev["policies"]["arc"]["result"] == expected
    assert ev["outcome"] == "accepted" and ev["dns_errors"] == []
    if expected == "pass":
        assert props[("header", "oldest-pass")] == str(ev["arc"]["oldest_pass"])

    # The milter and the verifier, in-process on the same message and DNS data, agree on everything.
    dkim.clear_key_cache()
    direct = arc.verify(crlf(case), dkim.Limits(timeout=1.0))
    assert ev["arc"] == direct.record()


def test_arc_suite_case_ids_are_distinct() -> None:
    assert len(CASES) == 171
    assert len({(c["scenario"], c["id"]) for c in CASES}) == len(CASES)
