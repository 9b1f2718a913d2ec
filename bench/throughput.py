"""Throughput of Postfix with and without mailpolicy, measured in the same run.

Two throwaway Postfix instances on loopback (same config, one with mailpolicy attached over a unix
socket) each receive the same smtp-source load, alternately, several rounds. Prints msg/s for both,
their ratio, the milter's CPU time per message and its RSS.

    python bench/throughput.py [--messages 2000] [--sessions 10] [--rounds 2] [--size 1024]
                               [--config extra.toml-as-json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.dkimkeys import rsa_key, sign
from support.dnsserver import DnsServer
from support.stack import Postfix, Stack, free_port, make_workdir, wait_for

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


MESSAGE_FILE: str | None = None  # a pre-built (DKIM-signed) message for smtp-source -F


def smtp_source(port: int, messages: int, sessions: int, size: int) -> float:
    content = ["-F", MESSAGE_FILE] if MESSAGE_FILE else ["-l", str(size)]
    argv = ["smtp-source", "-c", *content, "-m", str(messages), "-s", str(sessions)]
    argv += ["-f", "bench@sender.example", "-t", "user@rcpt.example", f"127.0.0.1:{port}"]
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def signed_message(path: Path, size: int) -> None:
    """A DKIM-signed (RSA-2048) message of about ``size`` bytes from sender.example."""
    line = "a line of the benchmark message body, padding it to the wanted size..........\r\n"
    body = line * max(1, size // len(line))
    head = (
        "From: Bench <bench@sender.example>\r\nTo: <user@rcpt.example>\r\nSubject: benchmark\r\n"
        "Date: Mon, 23 Nov 2026 04:00:00 +0000\r\nMessage-ID: <bench@sender.example>\r\n\r\n"
    )
    path.write_bytes(sign((head + body).encode(), "sender.example", "s1", rsa_key(2048)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--config", default="{}", help="mailpolicy config overrides as JSON")
    ap.add_argument(
        "--auth",
        action="store_true",
        help="full checks: a DKIM-signed message, SPF/DKIM/DMARC against a loopback DNS "
        "server (warm cache), all policies in monitor mode",
    )
    ap.add_argument(
        "--relay",
        action="store_true",
        help="Postfix relays every message over SMTP to an smtp-sink on loopback (an MX in front of a "
        "mailbox server) instead of delivering to discard:",
    )
    ap.add_argument(
        "--reference",
        action="store_true",
        help="also measure a do-nothing pymilter (bench/null_milter.py) in the same run",
    )
    args = ap.parse_args()

    global MESSAGE_FILE
    plain_dir = make_workdir("mailpolicy-bench-")
    main_cf: dict[str, str] = {}
    sink = None
    if args.relay:
        sink_port = free_port()
        sink = subprocess.Popen(
            ["smtp-sink", "-u", "postfix", "-c", f"127.0.0.1:{sink_port}", "256"],
            stdout=subprocess.DEVNULL,
        )
        main_cf = {"transport_maps": f"inline:{{ rcpt.example=smtp:[127.0.0.1]:{sink_port} }}"}
    plain = Postfix(plain_dir, None, main_cf)
    config = json.loads(args.config)
    dns = None
    if args.auth:
        key = rsa_key(2048)
        dns = DnsServer(
            {
                "sender.example": [("TXT", "v=spf1 ip4:127.0.0.0/8 -all")],
                "_dmarc.sender.example": [("TXT", "v=DMARC1; p=reject")],
                "s1._domainkey.sender.example": [("TXT", key.record)],
            }
        ).start()
        config.setdefault("dns", {})["nameservers"] = [dns.nameserver]
        MESSAGE_FILE = str(plain_dir / "message.eml")
        signed_message(Path(MESSAGE_FILE), args.size)
    stack = Stack(config, main_cf)
    plain.start()
    stack.start()
    null_proc = null_pf = None
    if args.reference:
        null_sock = str(plain_dir / "null.sock")
        null_proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("null_milter.py")), null_sock]
        )
        wait_for(lambda: os.path.exists(null_sock), 20, "the null milter socket")
        os.chown(null_sock, -1, __import__("grp").getgrnam("postfix").gr_gid)
        null_dir = plain_dir / "null"
        null_dir.mkdir()
        null_pf = Postfix(null_dir, null_sock, main_cf).start()
    assert stack.milter.proc is not None
    pid = stack.milter.proc.pid
    try:
        # Warm-up: first connections pay for process start-up on both sides.
        smtp_source(plain.port, 50, 5, args.size)
        smtp_source(stack.postfix.port, 50, 5, args.size)
        base, with_milter, cpu, null = [], [], [], []
        for rnd in range(args.rounds):
            base.append(args.messages / smtp_source(plain.port, args.messages, args.sessions, args.size))
            c0 = cpu_seconds(pid)
            with_milter.append(
                args.messages / smtp_source(stack.postfix.port, args.messages, args.sessions, args.size)
            )
            cpu.append((cpu_seconds(pid) - c0) * 1000 / args.messages)
            if null_pf is not None:
                null.append(
                    args.messages / smtp_source(null_pf.port, args.messages, args.sessions, args.size)
                )
            print(
                f"round {rnd + 1}: no milter {base[-1]:7.1f} msg/s   "
                f"with mailpolicy {with_milter[-1]:7.1f} msg/s"
                + (f"   do-nothing pymilter {null[-1]:7.1f} msg/s" if null else "")
            )
        expected = args.messages * args.rounds + 50
        wait_for(lambda: stack.milter.metric("mailpolicy_messages_total") >= expected, 60, "all messages")
        b, w = statistics.median(base), statistics.median(with_milter)
        print(
            f"\nmessages per run: {args.messages}, sessions: {args.sessions}, size: {args.size} B, "
            f"rounds: {args.rounds}"
        )
        print(f"Postfix, no milter:       {b:7.1f} msg/s (median)")
        print(f"Postfix + mailpolicy:     {w:7.1f} msg/s (median)")
        print(f"ratio:                    {w / b:7.2f}x")
        if null:
            n = statistics.median(null)
            print(
                f"do-nothing pymilter:      {n:7.1f} msg/s (median), ratio {n / b:.2f}x; "
                f"mailpolicy/do-nothing {w / n:.2f}x"
            )
        print(f"milter CPU per message:   {statistics.median(cpu):7.2f} ms")
        print(f"milter RSS after the run: {rss_mib(pid):7.1f} MiB")
        print(f"milter messages counted:  {stack.milter.metric('mailpolicy_messages_total'):.0f}")
        if args.auth:
            ev = stack.milter.events("transaction")[-1]
            print(
                f"last message checked:     spf={ev['spf']['result']} "
                f"dkim={','.join(d['result'] for d in ev['dkim'])} dmarc={ev['dmarc']['result']}"
            )
            print(f"DNS lookups (incl. cache):{stack.milter.metric('mailpolicy_dns_queries_total'):.0f}")
    finally:
        stack.stop()
        plain.stop()
        if null_pf is not None:
            null_pf.stop()
        if null_proc is not None:
            null_proc.kill()
        if dns is not None:
            dns.stop()
        if sink is not None:
            sink.kill()
        import shutil

        shutil.rmtree(plain_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
