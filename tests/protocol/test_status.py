"""`mailpolicy status` against the real process: running (modes, would-refuse counts, the loaded
configuration and a changed file on disk), and not running."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

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
