"""`make demo`: a throwaway Postfix on 127.0.0.1 with mailpolicy attached over a unix socket, a mixed
sample of real SMTP traffic, the records it wrote, the would-reject counts from /metrics, and
`mailpolicy report` over the event log; then the rest of README's first week: the report's
suggested exemptions applied, require_starttls switched to enforce by a reload, the same traffic
again, and the report over what came after the reload.

Everything runs on loopback under a temp directory and is removed at the end."""

from __future__ import annotations

import json
import signal
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mailpolicy.model import iso
from mailpolicy.report import Options, build_report
from mailpolicy.report import main as report_main
from support.dkimkeys import rsa_key, sign
from support.dnsserver import DnsServer
from support.smtp import Client, message, unique_sender
from support.stack import Stack

CONFIG: dict[str, Any] = {
    "policies": {
        "require_starttls": {"mode": "monitor", "exempt_networks": ["198.51.100.0/24"]},
        "tls_min_version": {"mode": "monitor", "min_version": "TLSv1.3"},
    }
}

# (client address, client name, TLS version or None for plaintext, messages)
# mail.legacy.example sends DKIM-signed mail for sender.example (published in the demo's DNS):
# legitimate mail that enforcing require_starttls would lose.
SAMPLE = [
    ("127.0.0.1", None, None, 2),
    ("127.0.0.1", None, "TLSv1.2", 1),
    ("127.0.0.1", None, "TLSv1.3", 2),
    ("203.0.113.5", "mail.legacy.example", None, 3),
    ("203.0.113.6", "mx.oldtls.example", "TLSv1.2", 2),
    ("198.51.100.7", "relay.partner.example", None, 1),
    ("2001:db8::25", "v6.modern.example", "TLSv1.3", 1),
]
KEY = rsa_key(2048)
ZONE = {
    "sender.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    "_dmarc.sender.example": [("TXT", "v=DMARC1; p=reject")],
    "s1._domainkey.sender.example": [("TXT", KEY.record)],
}


def section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)))


def send(stack: Stack) -> None:
    for addr, name, tls, count in SAMPLE:
        c = Client("127.0.0.1", stack.postfix.port, helo=name or "localhost")
        if name:
            c.xclient(addr, name)
        if tls:
            c.starttls(tls)
        for _ in range(count):
            domain = (name or "localhost.example").split(".", 1)[-1]
            sender = unique_sender("demo", domain)
            body = message(sender, ["user@rcpt.example"]).encode()
            if domain == "legacy.example":  # DKIM-signed for sender.example: authenticated
                sender = unique_sender("news", "sender.example")
                body = sign(message(sender, ["user@rcpt.example"]).encode(), "sender.example", "s1", KEY)
            r = c.send(sender, ["user@rcpt.example"], body)
            refused = r.refused_sender or r.data_reply or next(iter(r.refused_rcpts.values()), None)
            outcome = (
                "accepted" if r.accepted else f"refused: {refused[0]} {refused[1]}" if refused else str(r)
            )
            print(f"  {addr:<14} {tls or 'plaintext':<9} -> {outcome}")
        c.quit()


def wait_events(stack: Stack, count: int) -> None:
    deadline = time.monotonic() + 15
    while len(stack.milter.events("transaction")) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)


def enforce_with_suggestions(stack: Stack) -> str:
    """Step 3 and 4 of the first week: the report's TOML suggestions merged into the configuration,
    require_starttls switched to enforce, `systemctl reload` (SIGHUP). Returns the reload time."""
    doc = build_report([str(stack.milter.log_file)], Options())
    snippet = doc["suggestions_toml"]
    print(snippet.rstrip() or "  (no suggestion)")
    suggested = tomllib.loads(snippet) if snippet else {}
    policies = suggested.get("policies", {})
    policies.setdefault("require_starttls", {})["mode"] = "enforce"
    # Merged as README says: the suggested networks added to those already exempt, never replacing them.
    for name, table in policies.items():
        have = CONFIG["policies"].get(name, {}).get("exempt_networks", [])
        if "exempt_networks" in table or have:
            new = [n for n in table.get("exempt_networks", []) if n not in have]
            table["exempt_networks"] = [*have, *new]
    m = stack.milter
    before = m.metric("mailpolicy_config_reloads_total", result="ok")
    m.write_config({"policies": policies})
    pid = m.proc.pid if m.proc else "?"
    print(f"\n  $ mailpolicy check-config && systemctl reload mailpolicy   (here: kill -HUP {pid})")
    started = json.dumps(time.time())
    m.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while m.metric("mailpolicy_config_reloads_total", result="ok") <= before and time.monotonic() < deadline:
        time.sleep(0.1)
    print("  reloaded: new transactions run under the new configuration")
    return started


def main() -> int:
    dns = DnsServer(ZONE).start()
    CONFIG["dns"] = {"nameservers": [dns.nameserver], "timeout": 1.0}
    stack = Stack(CONFIG)
    print(f"starting Postfix (127.0.0.1:{stack.postfix.port}) + mailpolicy (unix:{stack.milter.socket})")
    stack.start()
    try:
        section("sending mail")
        send(stack)
        wait_events(stack, sum(n for *_, n in SAMPLE))

        section("connection records (one JSON line each, abridged)")
        for e in stack.milter.events("connection"):
            keys = (
                "conn_id",
                "client_ip",
                "client_name",
                "helo",
                "starttls",
                "tls_version",
                "tls_cipher",
                "tls_cipher_bits",
                "transactions",
                "messages",
                "outcomes",
                "duration_s",
            )
            print("  " + json.dumps({k: e[k] for k in keys}))
        section("transaction records (abridged)")
        for e in stack.milter.events("transaction"):
            pol = {
                n: f"{p['result']}->{p['action']}{' (exempt ' + p['exempt'] + ')' if p['exempt'] else ''}"
                for n, p in e["policies"].items()
            }
            print(
                f"  {e['queue_id']:<12} {e['client_ip']:<14} {e['tls_version'] or 'plaintext':<9} "
                f"{e['outcome']:<9} {json.dumps(pol)}"
            )
        section("would-reject counts from /metrics (monitor mode: nothing was refused)")
        m = stack.milter
        for policy in ("require_starttls", "tls_min_version", "spf", "dmarc"):
            would = m.metric(
                "mailpolicy_policy_decisions_total", policy=policy, mode="monitor", action="reject"
            )
            print(
                f"  {policy:<17} would reject: {would:.0f}"
                f"   exempted: {m.metric('mailpolicy_policy_exemptions_total', policy=policy):.0f}"
            )
        print(
            f"  transactions accepted: {m.metric('mailpolicy_transactions_total', outcome='accepted'):.0f}, "
            f"rejected: {m.metric('mailpolicy_transactions_total', outcome='rejected'):.0f}"
        )
        print("\n  raw lines:")
        for line in m.metrics_text().splitlines():
            if line.startswith("mailpolicy_policy_decisions_total") and 'mode="monitor"' in line:
                print("  " + line)
        section(f"mailpolicy report {stack.milter.log_file.name}: which mail would I lose?")
        sys.stdout.flush()
        report_main([str(stack.milter.log_file)])
        html = Path.cwd() / "artifacts" / "demo-report.html"
        html.parent.mkdir(exist_ok=True)
        report_main(["--format", "html", "--output", str(html), str(stack.milter.log_file)])
        print(f"\nHTML version of this report: {html}")

        section("apply the suggested exemptions, enforce require_starttls, reload")
        reloaded = enforce_with_suggestions(stack)
        section("the same traffic, a week later")
        first = len(stack.milter.events("transaction"))
        send(stack)
        wait_events(stack, first + sum(n for *_, n in SAMPLE))
        since = iso(float(reloaded))
        section(f"mailpolicy report --since {since} {stack.milter.log_file.name}")
        sys.stdout.flush()
        report_main(["--since", since, str(stack.milter.log_file)])
    finally:
        stack.stop()
        dns.stop()
        print("\nstopped Postfix and mailpolicy; removed", stack.dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
