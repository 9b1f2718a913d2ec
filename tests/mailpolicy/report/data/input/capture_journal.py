"""Regenerate the journal fixtures of ``test_report_input.py`` from a real journald (run as root,
on a machine with systemd; nothing is written outside a journal namespace of its own):

    python tests/mailpolicy/report/data/input/capture_journal.py

Starts ``systemd-journald`` for the namespace ``mailpolicy-fixture``, writes event lines to it the
way the milter's standard output reaches journald under systemd (the stream protocol, each line
with its ``<N>`` priority, which journald strips into PRIORITY; and a second stream that does not
ask for that, so ``<6>`` stays in MESSAGE), and saves what ``journalctl`` gives back in each output
format, gzip-compressed, next to ``events.log.gz`` (the same lines as the milter's event file holds
them). Among the lines: a transaction event over 4096 bytes (``-o json`` leaves it out without
``--all``), a line that is not valid UTF-8 (an array of bytes in ``-o json``, a binary field in
``-o export``, ``[... blob data]`` in ``-o short``) and diagnostics."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[3]), str(HERE.parents[4] / "milter")]

from support.report_events import generate, lines, txn, would_reject  # noqa: E402

NAMESPACE = "mailpolicy-fixture"
SOCKET = Path(f"/run/systemd/journal.{NAMESPACE}/stdout")
JOURNALD = "/lib/systemd/systemd-journald"
FORMATS = {
    "journal.json.gz": ["-o", "json"],
    "journal-all.json.gz": ["-o", "json", "--all"],
    "journal.export.gz": ["-o", "export"],
    "journal.cat.gz": ["-o", "cat"],
    "journal.short.gz": ["-o", "short-iso"],
}


def event_lines() -> list[bytes]:
    out = list(generate(40, seed=11, hosts=1, days=2))
    long = txn(policies={"spf": would_reject()}, mail_from="x" * 4500 + "@long.example", ip="192.0.2.77")
    out.append(lines([long]))
    out.append(b'{"ts":"2026-11-20T12:00:00.000Z","host":"caf\xe9","schema":1,"event":"connection"}\n')
    out.append(b'{"ts":"2026-11-20T12:00:01.000Z","host":"mx1","level":"warning","logger":"x","msg":"w"}\n')
    return out


def stream(lines_: list[bytes], level_prefix: bool) -> None:
    """Write ``lines_`` as a service's standard output reaches journald (sd-journal stream)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(SOCKET))
        s.sendall(f"mailpolicy\n\n6\n{int(level_prefix)}\n0\n0\n0\n".encode())
        for line in lines_:
            priority = b"<4>" if b'"level":"warning"' in line else b"<6>"
            s.sendall(priority + line)


def main() -> int:
    journald = subprocess.Popen([JOURNALD, NAMESPACE])
    try:
        for _ in range(100):
            if SOCKET.exists():
                break
            time.sleep(0.05)
        ev = event_lines()
        stream(ev[:-5], level_prefix=True)
        stream(ev[-5:], level_prefix=False)  # SyslogLevelPrefix=no: "<6>" stays in MESSAGE
        time.sleep(1)
        for name, opts in FORMATS.items():
            out = subprocess.run(
                ["journalctl", f"--namespace={NAMESPACE}", "-t", "mailpolicy", "--no-pager", *opts],
                capture_output=True,
                check=True,
            ).stdout
            (HERE / name).write_bytes(gzip.compress(out, mtime=0))
        (HERE / "events.log.gz").write_bytes(gzip.compress(b"".join(ev), mtime=0))
    finally:
        journald.send_signal(signal.SIGTERM)
        journald.wait(10)
        machine = Path("/etc/machine-id").read_text().strip()
        shutil.rmtree(f"/var/log/journal/{machine}.{NAMESPACE}", ignore_errors=True)
        shutil.rmtree(f"/run/log/journal/{machine}.{NAMESPACE}", ignore_errors=True)
    print(f"journald {journald.pid} stopped; fixtures in {HERE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("run as root: journald needs /run/systemd")
    sys.exit(main())
