"""Live operations on the real process: reload on SIGHUP (valid, invalid, restart-only settings),
the sd_notify protocol against a real NOTIFY_SOCKET datagram socket, journald priorities on
stdout, and the event file's mode and group."""

from __future__ import annotations

import grp
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.milterclient import MilterClient
from support.stack import MilterProcess, make_workdir, wait_for

TLS12 = {"{tls_version}": "TLSv1.2", "{cipher}": "ECDHE-RSA-AES128-GCM-SHA256", "{cipher_bits}": "128"}


class NotifySocket:
    """What systemd listens on: a unix datagram socket; collects every message sent to it."""

    def __init__(self, directory: Path):
        self.path = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return self.messages
            self.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines()))

    def wait(self, key: str, count: int = 1, timeout: float = 15.0) -> list[dict[str, str]]:
        wait_for(lambda: len([m for m in self.drain() if key in m]) >= count, timeout, f"{count} x {key}")
        return self.messages

    def close(self) -> None:
        self.sock.close()


def plaintext_mail(m: MilterProcess) -> tuple[str, str]:
    """One transaction on a plaintext session; (MAIL reply letter, sender)."""
    c = MilterClient(m.socket)
    c.connect("client.example", "203.0.113.9")
    c.helo("client.example")
    sender = f"r-{uuid.uuid4().hex[:8]}@sender.example"
    r = c.mail(sender)
    c.quit()
    return r.cmd, sender


@pytest.fixture
def milter() -> Iterator[tuple[MilterProcess, NotifySocket]]:
    workdir = make_workdir("mailpolicy-reload-")
    notify = NotifySocket(workdir)
    m = MilterProcess(
        workdir,
        {
            "auth": {"enabled": False},
            "log": {"stdout": True, "file_group": "adm"},
            "policies": {
                "spf": {"mode": "off"},
                "dmarc": {"mode": "off"},
                "require_starttls": {"mode": "monitor"},
            },
        },
    )
    m.start(capture_stdout=True, env={"NOTIFY_SOCKET": notify.path, "JOURNAL_STREAM": "stdout"})
    try:
        yield m, notify
    finally:
        m.stop()
        notify.close()


def test_ready_only_once_the_socket_listens(milter: tuple[MilterProcess, NotifySocket]) -> None:
    m, notify = milter
    [ready] = [msg for msg in notify.wait("READY") if "READY" in msg]
    assert ready["READY"] == "1" and ready["MAINPID"] == str(m.proc.pid if m.proc else 0)
    assert "listening on unix:" in ready["STATUS"]
    st = os.stat(m.socket)  # by then the socket exists with its configured mode
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660


def test_sighup_switches_modes_for_new_transactions(milter: tuple[MilterProcess, NotifySocket]) -> None:
    m, notify = milter
    notify.wait("READY")
    assert plaintext_mail(m)[0] == "c"  # monitor: continue
    before = m.metric("mailpolicy_config_reloads_total", result="ok")
    m.write_config({"policies": {"require_starttls": {"mode": "enforce"}}})
    m.signal(signal.SIGHUP)
    msgs = notify.wait("READY", 2)
    assert any(msg.get("RELOADING") == "1" and "MONOTONIC_USEC" in msg for msg in msgs)
    wait_for(lambda: m.metric("mailpolicy_config_reloads_total", result="ok") == before + 1, 10, "a reload")
    cmd, sender = plaintext_mail(m)
    assert cmd == "y"  # enforce: 530 (SMFIR_REPLYCODE)
    t = m.wait_event(lambda e: e.get("mail_from") == sender, "transaction")
    assert t["policies"]["require_starttls"]["mode"] == "enforce" and t["outcome"] == "rejected"
    assert m.metric("mailpolicy_policy_mode", policy="require_starttls", mode="enforce") == 1
    assert m.metric("mailpolicy_config_last_reload_success_timestamp_seconds") > time.time() - 60
    info = [line for line in m.metrics_text().splitlines() if line.startswith("mailpolicy_config_info{")]
    assert len(info) == 1 and f'hash="{t["config"]}"' in info[0]


def test_transaction_in_flight_keeps_its_configuration(milter: tuple[MilterProcess, NotifySocket]) -> None:
    m, notify = milter
    notify.wait("READY")
    c = MilterClient(m.socket)
    c.connect("client.example", "203.0.113.9")
    c.helo("client.example")
    first = f"f-{uuid.uuid4().hex[:8]}@sender.example"
    assert c.mail(first).continued  # monitor
    m.write_config({"policies": {"require_starttls": {"mode": "enforce"}}})
    m.signal(signal.SIGHUP)
    notify.wait("READY", 2)
    assert c.rcpt("user@rcpt.example").continued
    assert c.eom({"i": "INFLIGHT"}).continued  # still the monitor configuration
    second = f"s-{uuid.uuid4().hex[:8]}@sender.example"
    assert c.mail(second).cmd == "y"  # the next transaction: enforce
    c.quit()
    t1 = m.wait_event(lambda e: e.get("mail_from") == first, "transaction")
    t2 = m.wait_event(lambda e: e.get("mail_from") == second, "transaction")
    assert t1["policies"]["require_starttls"]["mode"] == "monitor" and t1["outcome"] == "accepted"
    assert t2["policies"]["require_starttls"]["mode"] == "enforce" and t1["config"] != t2["config"]


def test_invalid_reload_changes_nothing_and_names_every_key(
    milter: tuple[MilterProcess, NotifySocket],
) -> None:
    m, notify = milter
    notify.wait("READY")
    good = m.config_path.read_text()
    m.config_path.write_text(good + "\nthis is = = not TOML\n")
    m.signal(signal.SIGHUP)
    wait_for(lambda: m.metric("mailpolicy_config_reloads_total", result="error") >= 1, 10, "a failed reload")
    m.config_path.write_text(good)
    m.write_config({"policies": {"tls_min_version": {"mode": "enforced", "min_version": "TLSv9"}}})
    m.signal(signal.SIGHUP)
    wait_for(lambda: m.metric("mailpolicy_config_reloads_total", result="error") >= 2, 10, "a failed reload")

    def refusals() -> list[dict[str, Any]]:  # (lines reach the log within events.WRITER_DELAY)
        return [
            line for line in m.lines() if line.get("level") == "error" and "reload refused" in line["msg"]
        ]

    keys = {"policies.tls_min_version.mode", "policies.tls_min_version.min_version"}
    wait_for(lambda: {e.get("key") for e in refusals()} >= keys, 10, "the second reload's refusals")
    errors = refusals()
    assert any("TOML syntax error" in e["msg"] for e in errors)
    assert {e.get("key") for e in errors} >= {
        "policies.tls_min_version.mode",
        "policies.tls_min_version.min_version",
    }
    assert plaintext_mail(m)[0] == "c"  # still the old configuration: monitor
    assert m.metric("mailpolicy_policy_mode", policy="tls_min_version", mode="monitor") == 1
    msgs = notify.drain()
    assert msgs[-1].get("READY") == "1" and "reload failed" in msgs[-1]["STATUS"]


def test_restart_only_settings_keep_their_value(milter: tuple[MilterProcess, NotifySocket]) -> None:
    m, notify = milter
    notify.wait("READY")
    m.write_config({"milter": {"timeout": 77}, "policies": {"require_starttls": {"mode": "enforce"}}})
    m.signal(signal.SIGHUP)
    wait_for(lambda: m.metric("mailpolicy_config_reloads_total", result="ok") >= 1, 10, "a reload")
    warnings = [
        line for line in m.lines() if line.get("level") == "warning" and "needs a restart" in line["msg"]
    ]
    assert [w["key"] for w in warnings] == ["milter.timeout"]
    assert plaintext_mail(m)[0] == "y"  # the rest of the file applied
    # ... and `mailpolicy status` says a restart is needed (mailpolicy_config_restart_pending)
    assert m.metric("mailpolicy_config_restart_pending", key="milter.timeout") == 1
    assert m.metric("mailpolicy_config_restart_pending", key="milter.socket") == 0
    status = subprocess.run(
        [sys.executable, "-m", "mailpolicy", "status", "--config", str(m.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert "  restart needed: the file changes milter.timeout, which only a restart applies" in status.stdout
    m.write_config({"milter": {"timeout": 300}})  # back to the running value: nothing waits any more
    m.signal(signal.SIGHUP)
    wait_for(lambda: m.metric("mailpolicy_config_reloads_total", result="ok") >= 2, 10, "a second reload")
    assert m.metric("mailpolicy_config_restart_pending", key="milter.timeout") == 0


def test_journald_priorities_and_event_file_permissions(milter: tuple[MilterProcess, NotifySocket]) -> None:
    m, notify = milter
    notify.wait("READY")
    _, sender = plaintext_mail(m)
    m.wait_event(lambda e: e.get("mail_from") == sender, "transaction")
    m.write_config({"policies": {"require_starttls": {"mode": "bogus"}}})
    m.signal(signal.SIGHUP)
    wait_for(lambda: m.metric("mailpolicy_config_reloads_total", result="error") >= 1, 10, "a failed reload")
    lines = wait_for(
        lambda: [x for x in m.stdout_path.read_bytes().split(b"\n") if x.startswith(b"<3>")],
        10,
        "an error line",
    )
    out = [x for x in m.stdout_path.read_bytes().split(b"\n") if x]
    assert all(x[:3] in (b"<3>", b"<4>", b"<6>", b"<7>") for x in out)
    events = [json.loads(x[3:]) for x in out if x.startswith(b"<6>") and b'"event"' in x]
    assert any(e.get("mail_from") == sender for e in events)  # events are informational
    assert all(json.loads(x[3:])["level"] == "error" for x in lines)
    st = os.stat(m.log_file)
    assert stat.S_IMODE(st.st_mode) == 0o640 and grp.getgrgid(st.st_gid).gr_name == "adm"


def test_sigterm_stops_gracefully_with_status_0(milter: tuple[MilterProcess, NotifySocket]) -> None:
    m, notify = milter
    notify.wait("READY")
    assert m.proc is not None
    t0 = time.monotonic()
    m.signal(signal.SIGTERM)
    notify.wait("STOPPING")
    assert m.proc.wait(20) == 0
    print(f"stopped {time.monotonic() - t0:.1f} s after SIGTERM")
    assert any(line.get("msg") == "mailpolicy stopped" for line in m.lines())


def test_reload_applies_dns_settings(milter: tuple[MilterProcess, NotifySocket]) -> None:
    m, notify = milter
    notify.wait("READY")
    m.write_config({"dns": {"nameservers": ["127.0.0.1:5399"], "timeout": 0.5}})
    m.signal(signal.SIGHUP)
    wait_for(lambda: m.metric("mailpolicy_config_reloads_total", result="ok") >= 1, 10, "a reload")
    assert any(line.get("msg") == "DNS: 127.0.0.1:5399" for line in m.lines())


def test_a_reload_that_stops_enforcing_is_a_warning(milter: tuple[MilterProcess, NotifySocket]) -> None:
    """A policy going from enforce to monitor (or off) on reload, on purpose or because the file was
    emptied or cut short (every key then takes its default: monitor), is logged as a warning."""
    m, notify = milter
    notify.wait("READY")
    good = m.config_path.read_text()
    m.write_config({"policies": {"require_starttls": {"mode": "enforce"}, "spf": {"mode": "enforce"}}})
    m.signal(signal.SIGHUP)
    wait_for(lambda: m.metric("mailpolicy_config_reloads_total", result="ok") >= 1, 10, "a reload")
    m.config_path.write_text(good)  # the file as it was: both back to monitor
    m.write_config({"policies": {"spf": {"mode": "off"}}})
    m.signal(signal.SIGHUP)
    wait_for(lambda: m.metric("mailpolicy_config_reloads_total", result="ok") >= 2, 10, "a second reload")

    def warnings() -> dict[str, str]:
        return {
            line["key"]: line["msg"]
            for line in m.lines()
            if line.get("level") == "warning" and "no longer refuses" in line.get("msg", "")
        }

    wait_for(lambda: len(warnings()) == 2, 10, "the two warnings")
    assert warnings() == {
        "policies.require_starttls.mode": "reload: policies.require_starttls.mode: enforce -> monitor: "
        "this policy no longer refuses mail",
        "policies.spf.mode": "reload: policies.spf.mode: enforce -> off: this policy no longer refuses mail",
    }
