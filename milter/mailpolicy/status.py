"""``mailpolicy status``: what the milter on this box is doing, from its own metrics endpoint.

Version, how long it has been up, the configuration file it runs and when it was loaded (and
whether the file on disk has changed since), each policy's running mode, and since start-up what
each policy refused (enforce) or would have refused (monitor). Exit status as LSB asks of a status
action: 0 running, 3 not running (4 when it cannot tell: metrics disabled, unreadable config)."""

from __future__ import annotations

import argparse
import socket
import time
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from mailpolicy.config import DEFAULT_PATH, Config, ConfigError, read

RUNNING, NOT_RUNNING, UNKNOWN = 0, 3, 4
Samples = dict[str, list[tuple[dict[str, str], float]]]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_PATH, help=f"configuration file (default {DEFAULT_PATH})")
    p.add_argument(
        "--url", help="metrics URL (default: http://metrics.listen/metrics from the configuration)"
    )


def fetch(url: str, timeout: float = 5.0) -> Samples:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        text = r.read().decode("utf-8", "replace")
    out: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name].append((dict(s.labels), float(s.value)))
    return out


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def _socket_answers(cfg: Config) -> bool | None:
    kind, _, rest = cfg.milter.socket.partition(":")
    if kind not in ("unix", "local"):
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(rest)
        return True
    except OSError:
        return False
    finally:
        s.close()


def render(samples: Samples, path: str, file_hash: str | None, now: float) -> list[str]:
    def one(name: str, **labels: str) -> float | None:
        for lab, value in samples.get(name, []):
            if all(lab.get(k) == v for k, v in labels.items()):
                return value
        return None

    build = next((lab for lab, _ in samples.get("mailpolicy_build_info", [])), {})
    info = next((lab for lab, _ in samples.get("mailpolicy_config_info", [])), {})
    started = one("process_start_time_seconds")
    loaded = one("mailpolicy_config_last_reload_success_timestamp_seconds")
    lines = [f"mailpolicy {build.get('version', '?')} (Python {build.get('python_version', '?')}) is running"]
    if started:
        lines[0] += f", up {_ago(now - started)}"
    running_hash = info.get("hash", "?")
    when = ""
    if loaded:
        stamp = datetime.fromtimestamp(loaded, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        when = f", loaded {stamp} ({_ago(now - loaded)} ago)"
    lines.append(f"configuration: {info.get('path', path)} ({running_hash}){when}")
    if file_hash is not None and file_hash != running_hash:
        lines.append(
            f"  the file on disk has changed since ({file_hash}): `systemctl reload mailpolicy` loads it"
        )
    modes = {lab["policy"]: lab["mode"] for lab, v in samples.get("mailpolicy_policy_mode", []) if v == 1}
    refused: dict[tuple[str, str], float] = defaultdict(float)
    decided: dict[tuple[str, str], float] = defaultdict(float)
    for lab, v in samples.get("mailpolicy_policy_decisions_total", []):
        key = (lab["policy"], lab["mode"])
        decided[key] += v
        if lab["action"] in ("reject", "tempfail"):
            refused[key] += v
    lines.append("policies (since start):")
    for policy, mode in modes.items():
        if mode == "off":
            lines.append(f"  {policy:<18} off")
            continue
        n, total = int(refused[(policy, mode)]), int(decided[(policy, mode)])
        verb = "refused" if mode == "enforce" else "would refuse"
        lines.append(f"  {policy:<18} {mode:<8} {verb} {n} of {total} transaction{'s' if total != 1 else ''}")
    outcomes = {lab["outcome"]: int(v) for lab, v in samples.get("mailpolicy_transactions_total", [])}
    lines.append(
        "transactions: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) if outcomes else ""
    )
    return [x for x in lines if x]


def run(args: argparse.Namespace) -> int:
    path: str = args.config
    cfg: Config | None = None
    file_hash: str | None = None
    try:
        cfg, file_hash = read(path)
    except ConfigError as exc:
        if not args.url:
            for err in exc.errors:
                print(f"error: {err}")
            print("mailpolicy status: cannot read the configuration to find the metrics endpoint (use --url)")
            return UNKNOWN
    url = args.url
    if not url:
        assert cfg is not None
        if cfg.metrics.listen is None:
            print("mailpolicy status: metrics.listen is empty, so there is no endpoint to ask")
            up = _socket_answers(cfg)
            if up is not None:
                print(f"the milter socket {cfg.milter.socket} {'answers' if up else 'does not answer'}")
            return UNKNOWN
        host, port = cfg.metrics.listen
        host = "127.0.0.1" if host in ("0.0.0.0", "", "*") else "::1" if host == "::" else host
        url = f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"
    try:
        samples = fetch(url)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"mailpolicy is not running: nothing answers on {url} ({reason})")
        if cfg is not None and _socket_answers(cfg):
            print(f"(but something answers on the milter socket {cfg.milter.socket})")
        return NOT_RUNNING
    if "mailpolicy_build_info" not in samples:
        print(f"mailpolicy status: {url} answers, but not with mailpolicy's metrics")
        return UNKNOWN
    for line in render(samples, path, file_hash, time.time()):
        print(line)
    return RUNNING
