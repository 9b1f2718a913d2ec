"""The shipped systemd unit: what the README promises of it, and `systemd-analyze verify` on it
(with ExecStart pointing at this checkout's mailpolicy)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "mailpolicy.service"


def settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_unit_is_notify_reloads_and_always_restarts() -> None:
    s = settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["Restart"] == ["always"]
    assert s["LogRateLimitIntervalSec"] == ["0"]  # a busy MX must not lose events to journald
    assert "adm" in s["SupplementaryGroups"][0].split() and "postfix" in s["SupplementaryGroups"][0].split()
    assert s["ExecStartPre"][0].endswith("check-config /etc/mailpolicy/mailpolicy.toml")


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    exe = shutil.which("mailpolicy") or str(Path(sys.executable).parent / "mailpolicy")
    unit = tmp_path / "mailpolicy.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/mailpolicy", exe))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr
