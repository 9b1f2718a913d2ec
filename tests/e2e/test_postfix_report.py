"""End to end: real traffic through Postfix + mailpolicy (monitor mode), then `mailpolicy report` on
the event log it wrote; the numbers must match what was sent."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailpolicy.report import Options, build_report
from support.dkimkeys import rsa_key, sign
from support.dnsserver import DnsServer
from support.smtp import Client
from support.stack import Stack, running

pytestmark = pytest.mark.e2e

# (client ip, client name, TLS version or None, messages, header From, DKIM-sign as sender.example)
TRAFFIC = [
    ("203.0.113.5", "mail.legacy.example", None, 3, "news@sender.example", True),
    ("192.0.2.66", "spam.attacker.example", None, 2, "ceo@bank.example", False),
    ("198.51.100.9", "mx.oldtls.example", "TLSv1.2", 2, "info@other.example", False),
    ("2001:db8::25", "v6.modern.example", "TLSv1.3", 1, "info@other.example", False),
]


@pytest.fixture(scope="module")
def report() -> Iterator[tuple[dict[str, Any], Stack]]:
    key = rsa_key(2048)
    zone = {
        "sender.example": [("TXT", "v=spf1 -all")],
        "_dmarc.sender.example": [("TXT", "v=DMARC1; p=reject")],
        "s1._domainkey.sender.example": [("TXT", key.record)],
        "_dmarc.bank.example": [("TXT", "v=DMARC1; p=reject")],
    }
    with (
        DnsServer(zone) as dns,
        running(
            {
                "dns": {"nameservers": [dns.nameserver], "timeout": 1.0},
                "policies": {"tls_min_version": {"min_version": "TLSv1.3"}},
            }
        ) as stack,
    ):
        total = 0
        for ip, name, tls, count, from_addr, signed in TRAFFIC:
            c = Client("127.0.0.1", stack.postfix.port, helo=name)
            c.xclient(ip, name)
            if tls:
                c.starttls(tls)
            for _ in range(count):
                msg = (
                    f"From: <{from_addr}>\r\nTo: <user@rcpt.example>\r\nSubject: report e2e\r\n"
                    f"Date: Mon, 23 Nov 2026 04:00:00 +0000\r\n"
                    f"Message-ID: <{uuid.uuid4().hex}@e2e.test>\r\n\r\nbody\r\n"
                ).encode()
                if signed:
                    msg = sign(msg, "sender.example", "s1", key)
                assert c.send(
                    f"bounce-{uuid.uuid4().hex[:6]}@{from_addr.split('@')[1]}", ["user@rcpt.example"], msg
                ).accepted
                total += 1
            c.quit()
        stack.milter.wait_events(total)
        stack.milter.wait_event(lambda e: e.get("client_ip") == "2001:db8::25", "connection")
        yield build_report([str(stack.milter.log_file)], Options()), stack


def policy(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in doc["policies"] if p["name"] == name)


def test_report_counts_match_the_traffic(report: tuple[dict[str, Any], Stack]) -> None:
    doc, _ = report
    assert doc["input"]["malformed_lines"] == 0 and doc["input"]["unsupported_schema"] == {}
    assert doc["totals"]["transactions"] == 8
    assert doc["totals"]["outcomes"] == {"accepted": 8}
    assert [h["host"] for h in doc["hosts"]] == ["mx1.test.example"]

    st = policy(doc, "require_starttls")
    assert (st["transactions"], st["would_reject"], st["refused"]) == (8, 5, 0)
    assert st["affected"]["authenticated"] == 3 and st["affected"]["unauthenticated"] == 2
    assert st["affected"]["clients"] == 2
    top = {d["domain"]: d for d in st["affected"]["top_sender_domains"]}
    assert top["sender.example"]["authenticated"] == 3 and top["bank.example"]["unauthenticated"] == 2

    floor = policy(doc, "tls_min_version")
    assert floor["would_reject"] == 2 and floor["affected"]["clients"] == 1

    dmarc = policy(doc, "dmarc")
    assert dmarc["would_reject"] == 2 and dmarc["results"]["pass"] == 3 and dmarc["results"]["fail"] == 2

    assert doc["combined"]["lost"] == 7 and doc["combined"]["affected"]["authenticated"] == 3


def test_report_tls_section_and_suggestion(report: tuple[dict[str, Any], Stack]) -> None:
    doc, _ = report
    tx = {v["version"]: v["count"] for v in doc["tls"]["transactions"]["by_version"]}
    assert tx == {"plaintext": 5, "TLSv1.2": 2, "TLSv1.3": 1}
    sessions = {v["version"]: v["count"] for v in doc["tls"]["sessions"]["by_version"]}
    assert sessions["TLSv1.2"] == 1 and sessions["TLSv1.3"] == 1
    sim13 = next(s for s in doc["tls"]["floor_simulation"] if s["floor"] == "TLSv1.3")
    assert sim13["transactions"]["transactions"] == 2
    assert sim13["with_require_starttls"]["lost"]["transactions"] == 2
    sugg = [s for s in doc["suggestions"] if s["policy"] == "require_starttls"]
    assert [(s["network"], s["authenticated_kept"]) for s in sugg] == [("203.0.113.0/24", 3)]
    assert '"203.0.113.0/24"' in doc["suggestions_toml"]


def test_report_command_line_formats(report: tuple[dict[str, Any], Stack], tmp_path: Any) -> None:
    _, stack = report
    log = str(stack.milter.log_file)
    text = subprocess.run(
        [sys.executable, "-m", "mailpolicy", "report", log],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "require_starttls" in text and "203.0.113.0/24" in text
    js = subprocess.run(
        [sys.executable, "-m", "mailpolicy", "report", "--format", "json", "-"],
        input=Path(log).read_bytes(),
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    assert json.loads(js)["totals"]["transactions"] == 8
    out = tmp_path / "report.html"
    subprocess.run(
        [sys.executable, "-m", "mailpolicy", "report", "--format", "html", "--output", str(out), log],
        check=True,
        timeout=60,
    )
    assert "<svg" in out.read_text()
