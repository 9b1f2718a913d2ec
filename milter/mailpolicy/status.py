"""``mailpolicy status``: what the milter on this box is doing, from its own metrics endpoint.

Version, how long it has been up, the configuration file it runs and when it was loaded (and
whether the file on disk has changed since), each policy's running mode, and since start-up what
each policy refused (enforce) or would have refused (monitor). Exit status as LSB asks of a status
action: 0 running, 3 not running (4 when it cannot tell: metrics disabled, no metrics.listen to be
read from the file). A file on disk that does not validate (after a refused reload, say) does not
stop it: ``metrics.listen`` alone is read from it, and the errors are shown with their keys."""

from __future__ import annotations

import argparse
import hashlib
import socket
import time
import tomllib
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mailpolicy.config import (
    DEFAULT_PATH,
    METRICS_KEYS,
    MILTER_KEYS,
    ConfigError,
    parse_listen,
    parse_socket,
    read,
)

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


def _socket_answers(spec: str) -> bool | None:
    kind, _, rest = spec.partition(":")
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


@dataclass(frozen=True)
class OnDisk:
    """What status needs from the configuration file: where to ask, the milter socket (``""``
    when unknown) and the file's hash."""

    listen: tuple[str, int] | None
    socket: str
    file_hash: str | None


def _raw_value(data: dict[str, Any], section: str, key: str, default: Any) -> Any:
    """``data[section][key]`` of a decoded TOML document, or ``default`` when absent; ValueError
    when the section is not a table."""
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ValueError(f"{section}: must be a table")
    return table.get(key, default)


def on_disk(path: str) -> tuple[OnDisk | None, list[str]]:
    """The file as status reads it, and its errors. A file that does not validate as a whole still
    gives ``metrics.listen`` (its default when absent) and ``milter.socket`` when those keys are
    valid; None when ``metrics.listen`` cannot be known (the file cannot be read, is not TOML, or
    that key is wrong)."""
    try:
        cfg, file_hash = read(path)
        return OnDisk(cfg.metrics.listen, cfg.milter.socket, file_hash), []
    except ConfigError as exc:
        errors = exc.errors
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        data = tomllib.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None, errors  # (read() said why)
    try:
        listen = parse_listen(_raw_value(data, "metrics", "listen", METRICS_KEYS["listen"].default))
    except ValueError:
        return None, errors  # (its error is among them)
    try:
        spec = parse_socket(_raw_value(data, "milter", "socket", MILTER_KEYS["socket"].default))
    except ValueError:
        spec = ""
    return OnDisk(listen, spec, hashlib.sha256(raw).hexdigest()[:16]), errors


def render(
    samples: Samples, path: str, file_hash: str | None, now: float, invalid: list[str] | None = None
) -> list[str]:
    """The report; ``invalid``: the errors of a file on disk that does not validate (``file_hash``
    is then its hash), which a reload would refuse."""

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
    if invalid:
        lines.append(
            f"  the file on disk ({file_hash or '?'}) is invalid, so a reload would change nothing "
            f"({len(invalid)} error{'s' if len(invalid) != 1 else ''}; `mailpolicy check-config` lists them "
            "too):"
        )
        lines.extend(f"    {_unprefixed(err, path)}" for err in invalid)
    elif file_hash is not None and file_hash != running_hash:
        lines.append(
            f"  the file on disk has changed since ({file_hash}): `systemctl reload mailpolicy` loads it"
        )
    pending = sorted(lab["key"] for lab, v in samples.get("mailpolicy_config_restart_pending", []) if v == 1)
    if pending:
        lines.append(
            f"  restart needed: the file changes {', '.join(pending)}, which only a restart applies "
            "(`systemctl restart mailpolicy`); the running values are kept until then"
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


def _unprefixed(err: str, path: str) -> str:
    """An error of :func:`~mailpolicy.config.read` without the file name it starts with."""
    return err.removeprefix(f"{path}: ")


def run(args: argparse.Namespace) -> int:
    path: str = args.config
    disk, errors = on_disk(path)
    url = args.url
    if not url:
        if disk is None:
            for err in errors:
                print(f"error: {err}")
            print("mailpolicy status: cannot read the configuration to find the metrics endpoint (use --url)")
            return UNKNOWN
        if disk.listen is None:
            print("mailpolicy status: metrics.listen is empty, so there is no endpoint to ask")
            up = _socket_answers(disk.socket)
            if up is not None:
                print(f"the milter socket {disk.socket} {'answers' if up else 'does not answer'}")
            _print_invalid(path, errors)
            return UNKNOWN
        host, port = disk.listen
        host = "127.0.0.1" if host in ("0.0.0.0", "", "*") else "::1" if host == "::" else host
        url = f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"
    try:
        samples = fetch(url)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"mailpolicy is not running: nothing answers on {url} ({reason})")
        if disk is not None and _socket_answers(disk.socket):
            print(f"(but something answers on the milter socket {disk.socket})")
        _print_invalid(path, errors)
        return NOT_RUNNING
    if "mailpolicy_build_info" not in samples:
        print(f"mailpolicy status: {url} answers, but not with mailpolicy's metrics")
        _print_invalid(path, errors)
        return UNKNOWN
    file_hash = disk.file_hash if disk is not None else None
    for line in render(samples, path, file_hash, time.time(), errors):
        print(line)
    return RUNNING


def _print_invalid(path: str, errors: list[str]) -> None:
    if errors:
        plural = "s" if len(errors) != 1 else ""
        print(f"the configuration file {path} is invalid ({len(errors)} error{plural}):")
        for err in errors:
            print(f"  {_unprefixed(err, path)}")
