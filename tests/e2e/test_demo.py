"""`make demo` runs tests/demo.py: keep it working (it is the first thing a postmaster tries)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

DEMO = Path(__file__).resolve().parents[1] / "demo.py"


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    first, week = out.split("=== apply the suggested exemptions", 1)
    assert first.count("-> accepted") == 12
    assert "require_starttls  would reject: 5   exempted: 1" in first
    assert "tls_min_version   would reject: 3" in out
    assert "== Combined scenario" in out and '"203.0.113.0/24"' in out  # the report's suggestion
    assert (tmp_path / "artifacts" / "demo-report.html").read_text().count("<svg") >= 3
    # the rest of the first week: suggestions merged (the network exempt from the start stays),
    # require_starttls enforced by a reload; the same traffic again loses only the unauthenticated
    # plaintext mail, both exempted networks pass
    assert "exempt_networks = [" in week and "reloaded" in week
    again = week.split("=== the same traffic, a week later", 1)[1].split("=== mailpolicy report --since", 1)[
        0
    ]
    assert again.count("-> accepted") == 10
    assert again.count("-> refused: 530 5.7.0 Must issue a STARTTLS command first") == 2
    assert "203.0.113.5    plaintext -> accepted" in again  # exempted: its authenticated mail kept
    assert "198.51.100.7   plaintext -> accepted" in again  # exempt before: merged, not replaced
    after = week.split("=== mailpolicy report --since", 1)[1]
    assert "require_starttls  enforce" in after
    assert "stopped Postfix and mailpolicy" in out
