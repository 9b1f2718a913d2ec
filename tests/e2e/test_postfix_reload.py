"""Reload under load, end to end: a real Postfix receives continuous smtp-source traffic while
require_starttls is switched monitor -> enforce -> monitor ten times with SIGHUP and one invalid
reload is attempted. Zero tempfails, zero lost messages, and every transaction records the mode of
the configuration that was active when its MAIL FROM arrived."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from datetime import datetime
from functools import partial

import pytest

from support.stack import MilterProcess, running, wait_for

pytestmark = pytest.mark.e2e

MESSAGES = 3000
SWITCHES = 10  # monitor -> enforce -> monitor, ten times


def reloaded(m: MilterProcess, count: int) -> bool:
    return m.metric("mailpolicy_config_reloads_total", result="ok") >= count


def epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def test_switching_modes_under_load_loses_nothing() -> None:
    config = {
        "auth": {"enabled": False},
        "policies": {
            "spf": {"mode": "off"},
            "dmarc": {"mode": "off"},
            "tls_min_version": {"mode": "off"},
            # smtp-source speaks plaintext from 127.0.0.1: exempt, so enforce decides but refuses nothing.
            "require_starttls": {"mode": "monitor", "exempt_networks": ["127.0.0.0/8"]},
        },
    }
    with running(config) as stack:
        m = stack.milter
        assert m.proc is not None
        argv = ["smtp-source", "-c", "-l", "1024", "-m", str(MESSAGES), "-s", "8"]
        argv += ["-f", "load@sender.example", "-t", "user@rcpt.example", f"127.0.0.1:{stack.postfix.port}"]
        source = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: len(m.events("transaction")) >= 100, 30, "traffic to start")
        modes = ["enforce", "monitor"] * SWITCHES
        for i, mode in enumerate(modes):
            if i == 7:  # one bad reload in the middle: nothing changes
                good = m.config_path.read_text()
                m.write_config({"policies": {"require_starttls": {"mode": "enforced"}}})
                m.signal(signal.SIGHUP)
                wait_for(lambda: m.metric("mailpolicy_config_reloads_total", result="error") >= 1, 10, "bad")
                m.config_path.write_text(good)
            m.write_config({"policies": {"require_starttls": {"mode": mode}}})
            m.signal(signal.SIGHUP)
            wait_for(partial(reloaded, m, i + 1), 10, f"reload {i + 1}")
            time.sleep(0.15)
        _, err = source.communicate(timeout=300)
        assert source.returncode == 0, err
        m.wait_events(MESSAGES, timeout=60)
        txns = m.events("transaction")
        delivered = re.compile(r"postfix/discard\[\d+\]: \w+: to=<user@rcpt\.example>.* status=sent")

        def all_delivered() -> str | None:
            text = stack.postfix.log()
            return text if len(delivered.findall(text)) >= MESSAGES else None

        log: str = wait_for(all_delivered, 60, "every message delivered")
        lines = m.lines()

    # Every message delivered, none tempfailed or refused, no milter trouble in Postfix's log.
    assert len(txns) == MESSAGES
    assert [t["outcome"] for t in txns].count("accepted") == MESSAGES
    assert len(delivered.findall(log)) == MESSAGES
    trouble = r"milter-reject|milter.*(?:timeout|unavailable|error)|\b4[0-9][0-9] 4\."
    assert not re.search(trouble, log), log[-2000:]

    # The configurations in the order they were loaded: hash, mode, when.
    loads = [
        (line["msg"].split()[1], re.search(r"require_starttls=(\w+)", line["msg"]).group(1), line["ts"])  # type: ignore[union-attr]
        for line in lines
        if line.get("logger") == "mailpolicy.runtime" and line.get("msg", "").startswith("configuration ")
    ]
    assert [mode for _, mode, _ in loads] == modes  # the bad reload loaded nothing
    mode_of = {h: mode for h, mode, _ in loads}
    first = txns[0]["config"]
    mode_of.setdefault(first, "monitor")  # the start-up configuration
    order = [first] + [h for h, _, _ in loads]
    for t in txns:
        decision = t["policies"]["require_starttls"]
        assert decision["mode"] == mode_of[t["config"]], t
        assert decision["exempt"] == "network" and decision["applied"] is False
    # Each transaction took the configuration active when its MAIL FROM arrived: its start lies
    # between the moment that configuration was loaded and the moment the next one was (50 ms of
    # slack: the load is logged just after the swap, and times are in milliseconds).
    # (The file toggles between two contents, so a hash is active during several intervals.)
    loaded_at = [0.0] + [epoch(ts) for _, _, ts in loads] + [float("inf")]

    def active_then(t: dict[str, object]) -> bool:
        start = epoch(str(t["start"]))
        return any(
            h == t["config"] and loaded_at[i] - 0.05 <= start <= loaded_at[i + 1] + 0.05
            for i, h in enumerate(order)
        )

    outside = [t for t in txns if not active_then(t)]
    assert outside == [], outside[:3]
    recorded = [t["policies"]["require_starttls"]["mode"] for t in txns]
    counts = {mode: recorded.count(mode) for mode in ("monitor", "enforce")}
    print(f"{MESSAGES} messages, {len(loads)} reloads + 1 refused; by mode: {counts}")
    assert counts["enforce"] > 0 and counts["monitor"] > 0
