"""Memory per large message: the real milter process, full checks, DKIM-signed messages of 25 and
40 MB sent over the milter protocol (one at a time, then four at once), peak RSS before and after.

    .venv/bin/python bench/memory.py [--sizes 40,25] [--parallel 4]

The body is hashed as it arrives and never kept, so the peak should stay near the idle size
whatever the message size (the milter still sees each 64 KB chunk once)."""

from __future__ import annotations

import argparse
import sys
import threading
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import dkimkeys
from support.dnsserver import DnsServer
from support.milterclient import MilterClient
from support.stack import MilterProcess

MIB = 1024 * 1024


def status(pid: int, key: str) -> int:
    """A /proc/PID/status value in bytes (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def big_message(size: int) -> bytes:
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = line * (size // len(line) + 1)
    msg = dkimkeys.message(from_="alice@big.example", body=body[:size])
    return dkimkeys.sign(msg, "big.example", "sel", dkimkeys.rsa_key())


def send(socket_path: str, msg: bytes) -> None:
    c = MilterClient(socket_path, timeout=120)
    c.connect("big.example", "192.0.2.10")
    c.helo("mail.big.example")
    assert c.mail(f"bounce-{uuid.uuid4().hex[:6]}@big.example").continued
    assert c.rcpt("bob@example.net").continued
    headers, body = dkimkeys.split(msg)
    r = c.message(headers, body, eom_macros={"i": "BIG"})
    assert r.continued, r
    c.quit()


def measure(sizes: list[int], parallel: int) -> list[tuple[str, float, float]]:
    """(case, idle RSS MiB, peak RSS MiB) for each case."""
    rsa = dkimkeys.rsa_key()
    zone = {
        "big.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
        "_dmarc.big.example": [("TXT", "v=DMARC1; p=reject")],
        "sel._domainkey.big.example": [("TXT", rsa.record)],
    }
    out = []
    with DnsServer(zone) as dns:
        m = MilterProcess(
            config={
                "dns": {"nameservers": [dns.nameserver], "timeout": 1.0},
                "auth": {"authserv_id": "mx.bench.example", "max_message_bytes": 64 * MIB},
            }
        ).start()
        try:
            assert m.proc is not None
            pid = m.proc.pid
            send(m.socket, big_message(1024))  # warm up: imports, key cache, first connection
            for size in sizes:
                msg = big_message(size * MIB)
                idle = status(pid, "VmRSS")
                send(m.socket, msg)
                out.append((f"1 x {size} MB", idle / MIB, status(pid, "VmHWM") / MIB))
            size = min(sizes)
            msg = big_message(size * MIB)
            idle = status(pid, "VmRSS")
            threads = [threading.Thread(target=send, args=(m.socket, msg)) for _ in range(parallel)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            out.append((f"{parallel} x {size} MB in parallel", idle / MIB, status(pid, "VmHWM") / MIB))
            events = m.wait_events(len(sizes) + 1 + parallel)
            assert all(e["dkim"] and e["dkim"][0]["result"] == "pass" for e in events), events[-1]["dkim"]
        finally:
            m.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="40,25", help="message sizes in MB, comma-separated")
    ap.add_argument("--parallel", type=int, default=4, help="messages of the smallest size sent at once")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'case':<28} {'RSS before':>11} {'peak RSS':>10}")
    for case, idle, peak in measure(sizes, args.parallel):
        print(f"{case:<28} {idle:>8.1f} MiB {peak:>6.1f} MiB")


if __name__ == "__main__":
    main()
