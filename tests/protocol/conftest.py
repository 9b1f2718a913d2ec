from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from support.stack import MilterProcess, make_workdir


@pytest.fixture(scope="module")
def milter_proc() -> Iterator[MilterProcess]:
    """The real mailpolicy process on a unix socket; require_starttls enforced, floor monitored,
    authentication off (tests/mailpolicy/test_adapter_auth.py drives it with authentication on)."""
    workdir = make_workdir("mailpolicy-proto-")
    proc = MilterProcess(
        workdir,
        {
            "auth": {"enabled": False},
            "policies": {
                "spf": {"mode": "off"},
                "dmarc": {"mode": "off"},
                "require_starttls": {"mode": "enforce", "exempt_networks": ["192.0.2.0/24"]},
                "tls_min_version": {"mode": "monitor", "min_version": "TLSv1.2"},
            },
        },
    ).start()
    try:
        yield proc
    finally:
        proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
