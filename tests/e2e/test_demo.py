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
    assert out.count("-> accepted") == 12
    assert "require_starttls  would reject: 5   exempted: 1" in out
    assert "tls_min_version   would reject: 3" in out
    assert "== Combined scenario" in out and '"203.0.113.0/24"' in out  # the report's suggestion
    assert (tmp_path / "artifacts" / "demo-report.html").read_text().count("<svg") >= 3
    assert "stopped Postfix and mailpolicy" in out
