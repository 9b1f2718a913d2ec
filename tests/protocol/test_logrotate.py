"""The shipped logrotate configuration, the milter's event file and the README's report command
agree: logrotate (the real one) rotates the file twice while the milter writes, the milter keeps
writing to a new file with the configured mode and group, and the README's command reads every
event back from the rotated files."""

from __future__ import annotations

import grp
import json
import os
import re
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

from support.milterclient import MilterClient
from support.stack import MilterProcess, make_workdir

ROOT = Path(__file__).resolve().parents[2]


def readme_command() -> str:
    """The README's report command for the rotated event files."""
    text = (ROOT / "README.md").read_text()
    [line] = [
        x for x in text.splitlines() if x.startswith("mailpolicy report /var/log/mailpolicy/events.log")
    ]
    return line


def send(m: MilterProcess) -> str:
    c = MilterClient(m.socket)
    c.connect("client.example", "203.0.113.9")
    c.helo("client.example")
    sender = f"rot-{uuid.uuid4().hex[:8]}@sender.example"
    assert c.mail(sender).continued
    c.quit()
    m.wait_event(lambda e: e.get("mail_from") == sender, "transaction")
    return sender


def test_logrotate_then_the_readme_command_reads_everything() -> None:
    workdir = make_workdir("mailpolicy-rotate-")
    logdir = workdir / "log"
    logdir.mkdir(mode=0o755)
    conf = workdir / "logrotate.conf"
    shipped = (ROOT / "contrib" / "logrotate" / "mailpolicy").read_text()
    conf.write_text(shipped.replace("/var/log/mailpolicy", str(logdir)))
    m = MilterProcess(workdir, {"log": {"file": str(logdir / "events.log")}, "auth": {"enabled": False}})
    m.log_file = logdir / "events.log"
    m.start()
    try:
        senders = [send(m)]
        for _ in range(2):
            time.sleep(1.1)  # the rotated names carry the second
            r = subprocess.run(
                ["logrotate", "-f", "-s", str(workdir / "state"), str(conf)], capture_output=True, text=True
            )
            assert r.returncode == 0, r.stderr
            senders.append(send(m))
        names = sorted(p.name for p in logdir.iterdir())
        assert names[0] == "events.log" and len(names) == 3, names
        assert re.fullmatch(r"events\.log-\d{8}-\d+\.gz", names[1]) and re.fullmatch(
            r"events\.log-\d{8}-\d+", names[2]
        )
        st = os.stat(logdir / "events.log")  # made by the milter after the rotation
        assert stat.S_IMODE(st.st_mode) == 0o640 and grp.getgrgid(st.st_gid).gr_name == "adm"
        command = (
            readme_command()
            .replace("/var/log/mailpolicy", str(logdir))
            .replace("mailpolicy report", f"{sys.executable} -m mailpolicy report --format json", 1)
        )
        out = subprocess.run(command, shell=True, capture_output=True, text=True, check=True).stdout
        report = json.loads(out)
        assert report["totals"]["transactions"] == 3, report["totals"]
    finally:
        m.stop()
