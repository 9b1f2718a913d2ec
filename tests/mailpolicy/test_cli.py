"""mailpolicy.cli: what every command shares."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[2] / "config" / "mailpolicy.toml"


@pytest.mark.parametrize(
    "args", [["check-config", str(REFERENCE)], ["version"], ["status", "--url", "http://127.0.0.1:9/"]]
)
def test_a_reader_that_leaves_is_not_an_error(args: list[str]) -> None:
    """`mailpolicy status | head -3`: the pipe closes before the output is written; no traceback. The
    exit status is the command's own (status: 3, nothing answers) when the pipe broke only at the
    final flush, 0 when it broke mid-output (unbuffered output, as here)."""
    p = subprocess.Popen(
        [sys.executable, "-m", "mailpolicy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()
    err = p.stderr.read().decode()
    rc = p.wait(60)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert rc == 0
