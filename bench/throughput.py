"""Throughput, CPU, memory and latency of Postfix with each kind of milter, measured in one run.

Seven throwaway Postfix instances on loopback, identical but for their milters, all delivering to
discard: and all using the same loopback DNS server and the same DKIM-signed (RSA-2048) message
from sender.example:

    Postfix alone
    a do-nothing pymilter (no callbacks: bench/null_milter.py)
    the pymilter floor: a do-nothing pymilter with every callback, adding one header at end of message
    the transport floor: a do-nothing pymilter with the callbacks transport policies take (connect,
        HELO, MAIL, RCPT, end of message, close: no header, no body)
    mailpolicy, transport policies only (auth.enabled = false, the spf and dmarc policies off)
    mailpolicy, full checks (SPF, DKIM, DMARC, header, events, metrics; every policy in monitor mode)
    OpenDKIM (verify) + OpenDMARC

First one message through the floor, the full checks and the pair shows that their milters did
their work (the headers they added).
Then each round measures every configuration in turn, so that drift hits all alike: smtp-source
sends --messages messages over --sessions parallel sessions (msg/s, milter CPU), then a Python
client times --latency-messages transactions (MAIL FROM to the reply after DATA) over as many
sessions. Last, --memory-sessions SMTP sessions are held in the middle of DATA through the
full-checks Postfix, then ended at once: mailpolicy's RSS and peak RSS (VmHWM) meanwhile.

    python bench/throughput.py [--messages 2000] [--sessions 10] [--rounds 3] [--size 1024]
                               [--latency-messages 300] [--memory-sessions 200] [--config JSON]
"""

from __future__ import annotations

import argparse
import email
import json
import os
import pwd
import random
import shutil
import signal
import smtplib
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.dkimkeys import rsa_key, sign
from support.dnsserver import DnsServer
from support.smtp import Client
from support.stack import Postfix, SmtpSink, Stack, make_workdir, wait_for

CLK = os.sysconf("SC_CLK_TCK")
SENDER, RCPT = "bench@sender.example", "user@rcpt.example"
CAPTURE = "capture.example"  # mail to this domain is relayed to an smtp-sink (the check messages)
MEMORY_TARGET_MIB = 64
NOTES = """
msg/s: median of the rounds; CPU: utime+stime of the milter process(es) over the smtp-source pass,
per message (the pair: both daemons); RSS: after the rounds; p50/p99: MAIL FROM to the reply after
DATA; DNS q/msg: queries the loopback DNS server answered per message (a question asked before is
answered from memory, as a local caching resolver would).
Caveat: OpenDMARC's SPF (libspf2) passes any 127.0.0.0/8 client without evaluating the sender's
record, and smtp-source cannot send XCLIENT to present another address: the pair's SPF costs less
here than mailpolicy's, which evaluates sender.example's record."""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime, all threads


def status_mib(pid: int, key: str) -> float:
    """A /proc/PID/status memory value (VmRSS, VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def signed_message(size: int) -> bytes:
    """A DKIM-signed (RSA-2048) message from sender.example of about ``size`` bytes, signature
    included."""
    line = b"a line of the benchmark message body, padding it to the wanted size..........\r\n"
    head = (
        f"From: Bench <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: benchmark\r\n"
        "Date: Mon, 23 Nov 2026 04:00:00 +0000\r\nMessage-ID: <bench@sender.example>\r\n\r\n"
    ).encode()
    overhead = len(sign(head + line, "sender.example", "s1", rsa_key(2048))) - len(line)
    body = line * max(1, (size - overhead) // len(line))
    return sign(head + body, "sender.example", "s1", rsa_key(2048))


@dataclass
class Row:
    key: str
    label: str
    postfix: Postfix
    procs: list[subprocess.Popen[bytes]]  # the milter processes: their CPU and RSS are reported
    expect: tuple[str, tuple[str, ...]] | None = None  # (header, values) the milters add
    sent: int = 0  # messages accepted by its Postfix so far: all must be delivered
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    dns_queries: list[float] = field(default_factory=list)  # per message, per round

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def rss_mib(self) -> float:
        return sum(status_mib(p.pid, "VmRSS") for p in self.procs)

    def settle(self) -> None:
        """Wait until every accepted message has been delivered (to discard:): the next
        measurement starts on an idle machine, and nothing was refused or lost."""

        def delivered() -> bool:
            log = self.postfix.log()
            if "reject:" in log:  # smtpd's "reject:" and "milter-reject:" lines
                raise RuntimeError(f"{self.label}: {next(x for x in log.splitlines() if 'reject:' in x)}")
            return log.count(" status=sent ") >= self.sent

        wait_for(delivered, 120, f"{self.label}: delivery of {self.sent} messages")


def start_daemon(argv: list[str], socket_path: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=err, stderr=err)

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {log.read_text(errors='replace')}")
        return socket_path.exists()

    wait_for(up, 20, f"{socket_path.name}")
    return proc


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(2)  # libmilter takes seconds to wind down after SIGTERM
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_pair(directory: Path, nameserver: str) -> tuple[list[subprocess.Popen[bytes]], str]:
    """OpenDKIM (verify only) and OpenDMARC on unix sockets in ``directory``; returns the
    processes and the smtpd_milters value. OpenDKIM (libunbound) is told the nameserver; OpenDMARC
    (libresolv, libspf2) always reads /etc/resolv.conf, so it runs in a private mount namespace
    where a resolv.conf of ours is bound over that file. Neither checks mail from an "internal"
    host, 127.0.0.1 by default: that list is set to a documentation address."""
    sockets = directory / "sockets"  # both daemons drop to postfix before creating their socket
    sockets.mkdir()
    postfix = pwd.getpwnam("postfix")
    os.chown(sockets, postfix.pw_uid, postfix.pw_gid)
    common = "UMask 000\nUserID postfix\nAuthservID mx.test.example\n"
    (directory / "opendkim.conf").write_text(
        f"Mode v\nSocket local:{sockets}/opendkim.sock\nBackground no\nSyslog no\n{common}"
        f"AlwaysAddARHeader yes\nInternalHosts csl:192.0.2.254\nNameservers {nameserver}\n"
    )
    (directory / "ignore-hosts").write_text("192.0.2.254\n")
    (directory / "resolv.conf").write_text(f"nameserver {nameserver}\n")
    (directory / "opendmarc.conf").write_text(
        f"Socket local:{sockets}/opendmarc.sock\nBackground false\nSyslog false\n{common}"
        f"TrustedAuthservIDs mx.test.example\nSPFSelfValidate true\n"
        f"IgnoreHosts {directory}/ignore-hosts\n"
    )
    procs = [
        start_daemon(
            ["opendkim", "-f", "-x", str(directory / "opendkim.conf")],
            sockets / "opendkim.sock",
            directory / "opendkim.log",
        )
    ]
    try:
        in_namespace = 'mount --bind "$0" /etc/resolv.conf && exec opendmarc -f -c "$1"'
        argv = ["unshare", "--mount", "sh", "-c", in_namespace, str(directory / "resolv.conf")]
        argv.append(str(directory / "opendmarc.conf"))
        procs.append(start_daemon(argv, sockets / "opendmarc.sock", directory / "opendmarc.log"))
    except BaseException:
        stop_daemon(procs[0])
        raise
    return procs, f"unix:{sockets}/opendkim.sock, unix:{sockets}/opendmarc.sock"


def smtp_source(row: Row, message_file: Path, messages: int, sessions: int, rcpt: str = RCPT) -> float:
    """Seconds smtp-source takes to send ``messages`` (one per connection) over ``sessions``."""
    argv = ["smtp-source", "-F", str(message_file), "-m", str(messages), "-s", str(sessions)]
    argv += ["-f", SENDER, "-t", rcpt, f"127.0.0.1:{row.postfix.port}"]
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    row.sent += messages
    row.settle()
    return elapsed


def transaction_times(row: Row, message: bytes, count: int, sessions: int) -> list[float]:
    """Seconds from MAIL FROM to the reply after DATA of ``count`` transactions, one per connection,
    over ``sessions`` parallel sessions."""

    def session(n: int) -> list[float]:
        times = []
        for _ in range(n):
            client = Client("127.0.0.1", row.postfix.port)
            t0 = time.perf_counter()
            result = client.send(SENDER, [RCPT], message)
            times.append(time.perf_counter() - t0)
            client.quit()
            if not result.accepted:
                raise RuntimeError(f"{row.label}: message refused: {result}")
        return times

    shares = [count // sessions + (i < count % sessions) for i in range(sessions)]
    with ThreadPoolExecutor(sessions) as pool:
        times = [t for part in pool.map(session, shares) for t in part]
    row.sent += count
    row.settle()
    return times


def check(row: Row, sink: SmtpSink, message_file: Path) -> str:
    """One message sent by smtp-source and relayed to the sink: the header the milters add, with
    the expected values."""
    assert row.expect is not None
    rcpt = f"{row.key}@{CAPTURE}"
    smtp_source(row, message_file, 1, 1, rcpt)
    got = email.message_from_bytes(sink.find(f"X-Rcpt-Args: <{rcpt}>".encode()))
    name, wanted = row.expect
    values = [" ".join(str(v).split()) for v in got.get_all(name, [])]
    missing = [w for w in wanted if not any(w in v for v in values)]
    if missing:
        raise RuntimeError(f"{row.label}: {', '.join(missing)} not in the {name} fields: {values}")
    return "\n".join(f"    {name}: {v}" for v in values)


def memory(row: Row, message: bytes, count: int) -> str:
    """The RSS of the row's (one) milter process while ``count`` SMTP sessions are held open in the
    middle of DATA (the header and half the body sent), then once all are finished at once."""
    pid = row.procs[0].pid
    before = status_mib(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM restarts from the current RSS
    head_end = message.index(b"\r\n\r\n") + 4
    cut = head_end + (len(message) - head_end) // 2
    sessions: list[smtplib.SMTP] = []
    try:
        for _ in range(count):
            sessions.append(smtplib.SMTP("127.0.0.1", row.postfix.port, timeout=60))
            s = sessions[-1]
            s.ehlo("client.example")
            s.mail(SENDER)
            s.rcpt(RCPT)
            code, reply = s.docmd("DATA")
            if code != 354:
                raise RuntimeError(f"DATA: {code} {reply!r}")
            s.send(message[:cut])
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
        sockets = sum(os.readlink(fd).startswith("socket:") for fd in fds)
        held, held_peak = status_mib(pid, "VmRSS"), status_mib(pid, "VmHWM")
        for s in sessions:
            s.send(message[cut:] + b".\r\n")
        for s in sessions:
            code, reply = s.getreply()
            if code != 250:
                raise RuntimeError(f"end of DATA: {code} {reply!r}")
            row.sent += 1
    finally:
        for s in sessions:
            s.close()
    row.settle()
    peak = status_mib(pid, "VmHWM")
    verdict = "MET" if max(held_peak, peak) <= MEMORY_TARGET_MIB else "NOT MET"
    return (
        f"memory, {row.label}, {count} SMTP sessions at once ({sockets} sockets open in the milter):\n"
        f"    RSS before {before:.1f} MiB; all held mid-DATA: RSS {held:.1f} MiB, peak (VmHWM) "
        f"{held_peak:.1f} MiB;\n    then all ended at once: peak {peak:.1f} MiB; "
        f"target peak <= {MEMORY_TARGET_MIB} MiB: {verdict}\n"
        "    (Postfix hands the header and body to milters at the end of DATA: mid-DATA, each milter\n"
        "    connection holds a transaction through RCPT TO.)"
    )


def quantile(data: list[float], q: int) -> float:
    return statistics.quantiles(data, n=100, method="inclusive")[q - 1]


def print_table(rows: list[Row]) -> None:
    base, pair = (statistics.median(r.rates) for r in (rows[0], rows[-1]))
    print(
        f"\n{'configuration':<34} {'msg/s':>7} {'/Postfix':>9} {'/pair':>6} {'CPU ms/msg':>11} "
        f"{'RSS MiB':>8} {'p50 ms':>7} {'p99 ms':>7} {'DNS q/msg':>10}"
    )
    for r in rows:
        rate = statistics.median(r.rates)
        cpu = f"{statistics.median(r.cpu_ms):.2f}" if r.procs else "-"
        rss = f"{r.rss_mib():.1f}" if r.procs else "-"
        p50, p99 = (quantile(r.latencies, q) * 1000 for q in (50, 99))
        print(
            f"{r.label:<34} {rate:7.1f} {rate / base:8.2f}x {rate / pair:5.2f}x {cpu:>11} {rss:>8} "
            f"{p50:7.1f} {p99:7.1f} {statistics.median(r.dns_queries):10.2f}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000, help="smtp-source messages per round (each)")
    ap.add_argument("--sessions", type=int, default=10, help="parallel SMTP sessions")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024, help="message size in bytes")
    ap.add_argument("--latency-messages", type=int, default=300, help="timed transactions per round (each)")
    ap.add_argument("--memory-sessions", type=int, default=200, help="sessions held mid-DATA; 0: none")
    ap.add_argument("--config", default="{}", help="mailpolicy config tables (JSON) merged into both")
    args = ap.parse_args()
    for tool in ("smtp-source", "opendkim", "opendmarc", "unshare"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: `make bench` installs what the benchmark needs")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up on SIGTERM too

    with ExitStack() as cleanup:
        workdir = make_workdir("mailpolicy-bench-")
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        message = signed_message(args.size)
        message_file = workdir / "message.eml"
        message_file.write_bytes(message)
        # OpenDMARC can only reach a nameserver on port 53: an address of our own on loopback.
        nameserver = f"127.53.{random.randint(0, 255)}.{random.randint(1, 254)}"
        dns = DnsServer(
            {
                "sender.example": [("TXT", "v=spf1 ip4:127.0.0.0/8 -all")],
                "_dmarc.sender.example": [("TXT", "v=DMARC1; p=reject")],
                "s1._domainkey.sender.example": [("TXT", rsa_key(2048).record)],
            },
            host=nameserver,
            port=53,
            memoize=True,  # repeated questions answered from memory, as a local caching resolver would
        ).start()
        cleanup.callback(dns.stop)
        sink = SmtpSink(workdir).start()
        cleanup.callback(sink.stop)
        main_cf = {
            "transport_maps": f"inline:{{ {CAPTURE}=smtp:[127.0.0.1]:{sink.port} }}",
            # smtpd processes: one per session held open for the memory figure
            "default_process_limit": str(max(100, args.memory_sessions + 50)),
        }

        def postfix(key: str, milters: str | None) -> Postfix:
            directory = workdir / key
            directory.mkdir()
            pf = Postfix(directory, None, {**main_cf, **({"smtpd_milters": milters} if milters else {})})
            cleanup.callback(pf.stop)
            return pf.start()

        def pymilter(key: str, *flags: str) -> tuple[list[subprocess.Popen[bytes]], str]:
            sock = workdir / f"{key}.sock"
            argv = [sys.executable, str(Path(__file__).with_name("null_milter.py")), str(sock), *flags]
            proc = start_daemon(argv, sock, workdir / f"{key}.log")
            cleanup.callback(stop_daemon, proc)
            return [proc], f"unix:{sock}"

        def mailpolicy(config: dict[str, Any]) -> Stack:
            config = {**config, "dns": {"nameservers": [nameserver]}}
            for table, body in json.loads(args.config).items():
                config[table] = {**config.get(table, {}), **body}
            stack = Stack(config, main_cf)
            stack.start()
            cleanup.callback(stack.stop)
            return stack

        (workdir / "pair").mkdir()
        pair, pair_milters = start_pair(workdir / "pair", nameserver)
        for proc in pair:
            cleanup.callback(stop_daemon, proc)
        null, null_socket = pymilter("null")
        floor, floor_socket = pymilter("floor", "--all-callbacks")
        tfloor, tfloor_socket = pymilter("tfloor", "--transport-callbacks")
        transport = mailpolicy(
            {"auth": {"enabled": False}, "policies": {"spf": {"mode": "off"}, "dmarc": {"mode": "off"}}},
        )
        full = mailpolicy({})
        assert transport.milter.proc is not None and full.milter.proc is not None
        full_row = Row(
            "full",
            "mailpolicy, full checks",
            full.postfix,
            [full.milter.proc],
            ("Authentication-Results", ("spf=pass", "dkim=pass", "dmarc=pass")),
        )
        rows = [
            Row("postfix", "Postfix alone (discard:)", postfix("postfix", None), []),
            Row("null", "do-nothing pymilter", postfix("null", null_socket), null),
            Row(
                "floor",
                "pymilter floor (all callbacks)",
                postfix("floor", floor_socket),
                floor,
                ("X-Bench-Floor", ("all callbacks",)),
            ),
            Row("tfloor", "pymilter transport floor", postfix("tfloor", tfloor_socket), tfloor),
            Row("transport", "mailpolicy, transport policies", transport.postfix, [transport.milter.proc]),
            full_row,
            Row(
                "pair",
                "OpenDKIM + OpenDMARC",
                postfix("pair-postfix", pair_milters),
                pair,
                ("Authentication-Results", ("dkim=pass", "dmarc=pass")),
            ),
        ]

        print(
            f"{args.messages} messages of {len(message)} bytes (DKIM RSA-2048, {SENDER}) per round and "
            f"configuration, {args.sessions} sessions, {args.rounds} rounds; latency: "
            f"{args.latency_messages} transactions per round and configuration"
        )
        for row in rows:
            if row.expect is not None:
                print(f"check, {row.label}: one message as delivered has\n{check(row, sink, message_file)}")
        for row in rows:  # warm-up: process start-up, first connections, DNS caches
            smtp_source(row, message_file, 100, args.sessions)
        for rnd in range(args.rounds):
            for row in rows:
                c0, q0 = row.cpu(), len(dns.queries)
                row.rates.append(args.messages / smtp_source(row, message_file, args.messages, args.sessions))
                row.cpu_ms.append((row.cpu() - c0) * 1000 / args.messages)
                row.dns_queries.append((len(dns.queries) - q0) / args.messages)
            for row in rows:
                row.latencies += transaction_times(row, message, args.latency_messages, args.sessions)
            print(f"round {rnd + 1}: " + "  ".join(f"{r.key} {r.rates[-1]:.0f}" for r in rows) + " msg/s")

        print_table(rows)
        print(NOTES)
        events = full.milter.wait_events(full_row.sent)
        passed = sum(
            e["spf"]["result"] == e["dmarc"]["result"] == "pass"
            and [d["result"] for d in e["dkim"]] == ["pass"]
            for e in events
        )
        print(f"mailpolicy (full checks) events: {passed} of {len(events)} spf=pass dkim=pass dmarc=pass")
        if passed != len(events):
            raise RuntimeError(f"mailpolicy did not pass every message, e.g. {events[-1]}")

        if args.memory_sessions:
            print("\n" + memory(full_row, message, args.memory_sessions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
