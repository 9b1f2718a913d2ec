"""`mailpolicy status` against the real process: running (modes, would-refuse counts, the loaded
configuration and a changed file on disk), and not running."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support.milterclient import MilterClient
from support.stack import MilterProcess, free_port, wait_for


def status(m: MilterProcess, config: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailpolicy", "status", "--config", config or str(m.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_status_of_a_running_milter_and_of_none(tmp_path: Path) -> None:
    m = MilterProcess(
        config={"auth": {"enabled": False}, "policies": {"spf": {"mode": "off"}, "dmarc": {"mode": "off"}}}
    ).start()
    try:
        c = MilterClient(m.socket)
        c.connect("client.example", "203.0.113.9")
        c.helo("client.example")
        assert c.mail("a@sender.example").continued  # plaintext: require_starttls would refuse
        c.quit()
        m.wait_events(1)
        r = status(m)
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout
        assert out.startswith("mailpolicy ") and "is running, up" in out
        assert f"configuration: {m.config_path}" in out
        assert "require_starttls   monitor  would refuse 1 of 1 transaction" in out
        assert "spf                off" in out
        assert "transactions: aborted 1" in out
        m.write_config({"policies": {"require_starttls": {"mode": "enforce"}}})
        assert "the file on disk has changed since" in status(m).stdout
        m.signal(signal.SIGHUP)
        wait_for(lambda: "require_starttls   enforce" in status(m).stdout, 10, "the reload")
        assert "has changed" not in status(m).stdout
        kept = tmp_path / "mailpolicy.toml"
        kept.write_text(m.config_path.read_text())
    finally:
        m.stop()
    stopped = status(m, str(kept))
    assert (
        stopped.returncode == 3
        and "mailpolicy is not running: nothing answers on http://127.0.0.1:" in stopped.stdout
    )


def test_status_without_a_metrics_endpoint_cannot_tell(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[metrics]\nlisten = ""\n[milter]\nsocket = "inet:{free_port()}@127.0.0.1"\n')
    r = subprocess.run(
        [sys.executable, "-m", "mailpolicy", "status", "--config", str(path)], capture_output=True, text=True
    )
    assert r.returncode == 4 and "metrics.listen is empty" in r.stdout


def test_status_when_the_file_on_disk_is_invalid(tmp_path: Path) -> None:
    """Hole: after a reload refused an invalid file (mode = "enforced"), status exited 4, "cannot
    read the configuration to find the metrics endpoint": exactly when the admin needs it. It reads
    metrics.listen alone from the file, asks the running milter, and says the file is invalid."""
    m = MilterProcess(
        config={"auth": {"enabled": False}, "policies": {"spf": {"mode": "off"}, "dmarc": {"mode": "off"}}}
    ).start()
    try:
        m.write_config({"policies": {"require_starttls": {"mode": "enforced"}}})
        m.signal(signal.SIGHUP)
        wait_for(lambda: m.metric("mailpolicy_config_reloads_total", result="error") >= 1, 10, "the reload")
        r = status(m)
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout
        assert "is running, up" in out and f"configuration: {m.config_path}" in out
        assert "require_starttls   monitor" in out  # what runs, not what the file says
        assert "the file on disk" in out and "is invalid" in out and "reload would change nothing" in out
        assert "policies.require_starttls.mode: must be one of off, monitor, enforce (got 'enforced')" in out
        assert "cannot read the configuration" not in out and "has changed since" not in out
        kept = tmp_path / "mailpolicy.toml"
        kept.write_text(m.config_path.read_text())
    finally:
        m.stop()
    stopped = status(m, str(kept))
    assert stopped.returncode == 3, stopped.stdout
    assert "mailpolicy is not running: nothing answers on http://127.0.0.1:" in stopped.stdout
    assert (
        f"{kept} is invalid" in stopped.stdout
        and "policies.require_starttls.mode: must be one of" in stopped.stdout
    )


def run_status(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailpolicy", "status", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_status_of_an_invalid_file_without_metrics_listen_asks_the_default_endpoint(tmp_path: Path) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 9469))
        except OSError:
            pytest.skip("something uses 127.0.0.1:9469 here")
    path = tmp_path / "c.toml"
    path.write_text('[policies.spf]\nmode = "enforced"\n')
    r = run_status(path)
    assert r.returncode == 3, r.stdout
    assert "nothing answers on http://127.0.0.1:9469/metrics" in r.stdout
    assert "policies.spf.mode: must be one of" in r.stdout


@pytest.mark.parametrize(
    "body,expected",
    [
        ('[metrics]\nlisten = "localhost"\n[policies.spf]\nmode = "enforced"\n', "metrics.listen: must be"),
        ("[metrics\nlisten = 1\n", "TOML syntax error"),
    ],
)
def test_status_cannot_tell_without_a_usable_metrics_listen(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(body)
    r = run_status(path)
    assert r.returncode == 4 and expected in r.stdout, r.stdout
    assert "cannot read the configuration to find the metrics endpoint" in r.stdout
