"""Benchmark of ``mailpolicy report``: events per second on one core and peak memory.

Generates a realistic event log (transactions and connections from several hosts, four policies
in monitor and enforce mode, TLS 1.3 down to TLS 1.0 and plaintext, authenticated and
unauthenticated senders, messages to one or many recipients, ~1% diagnostics lines), then runs the
report over it (aggregation and the text report) in a fresh process
pinned to one CPU, for a small and a large log, and prints events/s and peak RSS for each: flat
memory means the peak RSS of the large run is close to the small one.

    python bench/report_bench.py                 # 100k and 1M events
    python bench/report_bench.py --events 2000000 --small 200000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "milter"), str(ROOT / "tests")]

CHILD = r"""
import json, os, sys, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

def status(key):
    # VmHWM is this process's own peak RSS (ru_maxrss can carry the parent's over fork+exec)
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0

from mailpolicy.report import Options, build_report
from mailpolicy.report.render_text import render
base = status("VmHWM")
cpu0, t0 = time.process_time(), time.perf_counter()
doc = build_report([sys.argv[1]], Options(top=10))
text = render(doc)
wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
print(json.dumps({"events": doc["input"]["events"], "lines": doc["input"]["lines"], "wall": wall,
                  "cpu": cpu, "rss_kib": status("VmHWM"),
                  "rss_after_import_kib": base, "lost": doc["combined"]["lost"],
                  "lost_recipients": doc["combined"]["lost_recipients"]}))
"""


def write_log(path: Path, n: int, seed: int) -> float:
    from support.report_events import generate

    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        buf: list[bytes] = []
        for line in generate(n, seed=seed, hosts=4, days=14):
            buf.append(line)
            if len(buf) >= 10_000:
                fh.write(b"".join(buf))
                buf.clear()
        fh.write(b"".join(buf))
    return time.perf_counter() - t0


def run(path: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "milter")}
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, env=env, check=True
    )
    out: dict[str, float] = json.loads(res.stdout)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--dir", default=None, help="where to write the logs (default: a temporary directory)")
    ap.add_argument("--runs", type=int, default=3, help="report runs per size; the best is shown")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="report-bench-", dir=args.dir) as tmp:
        rows = []
        for n in (args.small, args.events):
            path = Path(tmp) / f"events-{n}.log"
            gen = write_log(path, n, seed=42)
            size = path.stat().st_size
            results = [run(path) for _ in range(args.runs)]
            best = min(results, key=lambda r: r["cpu"])
            rows.append((n, size, gen, best))
            print(f"{n:>9} events  {size / 1e6:7.1f} MB  (generated in {gen:.1f}s)", flush=True)
            for r in results:
                print(
                    f"    run: {r['events'] / r['cpu']:>9,.0f} events/s (cpu {r['cpu']:.2f}s, wall "
                    f"{r['wall']:.2f}s), peak RSS {r['rss_kib'] / 1024:.1f} MiB",
                    flush=True,
                )
        print()
        print(
            f"{'events':>9}  {'MB':>7}  {'events/s (1 core)':>18}  {'cpu s':>6}  {'peak RSS MiB':>12}  "
            f"{'RSS after import':>16}"
        )
        for n, size, _, r in rows:
            print(
                f"{n:>9}  {size / 1e6:7.1f}  {r['events'] / r['cpu']:>18,.0f}  {r['cpu']:6.2f}  "
                f"{r['rss_kib'] / 1024:12.1f}  {r['rss_after_import_kib'] / 1024:16.1f}"
            )
        big = rows[-1][3]
        rate = big["events"] / big["cpu"]
        print(
            f"\ntarget >= 200,000 events/s on one core: {'MET' if rate >= 200_000 else 'NOT MET'} "
            f"({rate:,.0f}); RSS {rows[0][3]['rss_kib'] / 1024:.1f} MiB at {rows[0][0]:,} events vs "
            f"{big['rss_kib'] / 1024:.1f} MiB at {rows[-1][0]:,} events"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
