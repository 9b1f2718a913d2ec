"""Load and validate the TOML configuration.

Every problem is collected with its key path (``policies.require_starttls.mode: ...``) so that
``mailpolicy check-config`` can print all of them at once and ``mailpolicy run`` can refuse to start."""

from __future__ import annotations

import grp
import hashlib
import pwd
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mailpolicy.checks import CHECKS
from mailpolicy.checks.base import ItemErrors, Option
from mailpolicy.checks.base import each as _each
from mailpolicy.checks.base import parse_networks as _networks
from mailpolicy.dns import parse_nameserver
from mailpolicy.model import Action, Exemptions, Mode, PolicyConfig

DEFAULT_PATH = "/etc/mailpolicy/mailpolicy.toml"


class ConfigError(Exception):
    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


# ---- value parsers: return the parsed value or raise ValueError(problem) ----


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string (got {type(value).__name__})")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false (got {value!r})")
    return value


def _int_range(lo: int, hi: int) -> Any:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"must be an integer from {lo} to {hi} (got {value!r})")
        return value

    return parse


def _one_of(*choices: str) -> Any:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)} (got {value!r})")
        return str(value)

    return parse


_SOCKET_RE = re.compile(r"^(unix|local):(/.+)$|^inet6?:([0-9]{1,5})(?:@(.+))?$")


def parse_socket(value: Any) -> str:
    """``unix:/run/mailpolicy/milter.sock`` or ``inet:PORT@HOST`` / ``inet6:PORT@HOST``."""
    text = _str(value)
    m = _SOCKET_RE.fullmatch(text)
    if not m or (m.group(3) and not 0 < int(m.group(3)) < 65536):
        raise ValueError(f"must be 'unix:/absolute/path' or 'inet:PORT@HOST' (got {text!r})")
    return text


def _octal(value: Any, example: str) -> tuple[str, int]:
    """A file mode written as an octal string ("0640" or "640"): the text and its value."""
    text = _str(value)
    if not re.fullmatch(r"0?[0-7]{3}", text):
        raise ValueError(f"must be an octal mode string such as '{example}' (got {text!r})")
    return text, int(text, 8)


def _octal_mode(value: Any) -> int:
    text, mode = _octal(value, "0660")
    if mode & 0o060 != 0o060:
        raise ValueError(f"must give the group read and write permission (got {text!r})")
    if mode & 0o002:  # any local user could then connect and drive the milter as if it were the MTA
        raise ValueError(f"must not let everybody connect (got {text!r}): put the MTA's user in socket_group")
    return mode


def _group(value: Any) -> str:
    name = _str(value)
    if name:
        try:
            grp.getgrnam(name)
        except KeyError:
            raise ValueError(f"no such group {name!r} on this host") from None
    return name


def _user(value: Any) -> str:
    name = _str(value)
    if name:
        try:
            pwd.getpwnam(name)
        except KeyError:
            raise ValueError(f"no such user {name!r} on this host") from None
    return name


def parse_listen(value: Any) -> tuple[str, int] | None:
    """``"127.0.0.1:9469"``, ``"[::1]:9469"``; ``""`` disables."""
    text = _str(value)
    if not text:
        return None
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\[\]]+):([0-9]{1,5})", text)
    if m:
        host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        if 0 < int(port) < 65536:
            return host, int(port)
    raise ValueError(f"must be 'HOST:PORT' or '[IPV6]:PORT', or '' to disable (got {text!r})")


def _float_range(lo: float, hi: float) -> Any:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise ValueError(f"must be a number from {lo:g} to {hi:g} (got {value!r})")
        return float(value)

    return parse


def _nameservers(value: Any) -> tuple[tuple[str, int], ...]:
    """``["127.0.0.1", "192.0.2.53:5353", "[::1]:5353"]``; ``[]`` means /etc/resolv.conf."""
    parsed: tuple[tuple[str, int], ...] = _each(
        value, "['127.0.0.1', '192.0.2.53:5353', '[::1]:5353']", lambda item: parse_nameserver(_str(item))
    )
    return parsed


_AUTHSERV_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


def _authserv_id(value: Any) -> str:
    text = _str(value)
    if text and (len(text) > 253 or not _AUTHSERV_RE.fullmatch(text) or ".." in text):
        raise ValueError(f"must be a host name such as 'mx.example.org', or '' for this host (got {text!r})")
    return text


_RCPT_RE = re.compile(r"^[^@\s]+@$|^@[^@\s]+$|^[^@\s]+@[^@\s]+$")


def _recipient(item: Any) -> str:
    text = _str(item).strip().lower()
    if not _RCPT_RE.fullmatch(text):
        raise ValueError(f"{item!r} is not 'local@domain', 'local@' or '@domain'")
    return text


def _recipients(value: Any) -> tuple[str, ...]:
    out: tuple[str, ...] = _each(value, "['postmaster@', 'abuse@example.org', '@example.net']", _recipient)
    return out


def _file_mode(value: Any) -> int:
    text, mode = _octal(value, "0640")
    if mode & 0o002:
        raise ValueError(f"must not let everybody write the event file (got {text!r})")
    if not mode & 0o200:
        raise ValueError(f"must let the owner write (got {text!r})")
    return mode


# ---- schema ----

MILTER_KEYS: dict[str, Option] = {
    "socket": Option("unix:/run/mailpolicy/milter.sock", parse_socket),
    "socket_group": Option("postfix", _group),
    "socket_mode": Option("0660", _octal_mode),
    "client_user": Option("postfix", _user),
    "timeout": Option(300, _int_range(1, 3600)),
    "on_error": Option("continue", _one_of("continue", "tempfail")),
    "name": Option("mailpolicy", _str),
    "hostname": Option("", _authserv_id),
}
LOG_KEYS: dict[str, Option] = {
    "stdout": Option(True, _bool),
    "file": Option("", _str),
    "file_mode": Option("0640", _file_mode),
    "file_group": Option("adm", _group),
    "level": Option("info", _one_of("debug", "info", "warning", "error")),
}
METRICS_KEYS: dict[str, Option] = {
    "listen": Option("127.0.0.1:9469", parse_listen),
}
DNS_KEYS: dict[str, Option] = {
    "nameservers": Option([], _nameservers),
    "timeout": Option(5.0, _float_range(0.1, 60)),
    "cache_size": Option(10000, _int_range(0, 1_000_000)),
}
AUTH_KEYS: dict[str, Option] = {
    "enabled": Option(True, _bool),
    "authserv_id": Option("", _authserv_id),
    "spf_timeout": Option(20.0, _float_range(0.5, 120)),
    "dkim_max_signatures": Option(5, _int_range(1, 50)),
    "dkim_min_key_bits": Option(1024, _int_range(512, 8192)),
    "dkim_max_key_bits": Option(4096, _int_range(2048, 8192)),
    "max_message_bytes": Option(25 * 1024 * 1024, _int_range(1024, 1024**3)),
}
POLICY_KEYS: dict[str, Option] = {
    "mode": Option("monitor", _one_of(*(m.value for m in Mode))),
    "exempt_networks": Option([], _networks),
    "exempt_authenticated": Option(True, _bool),
    "exempt_recipients": Option([], _recipients),
}


@dataclass(frozen=True)
class MilterConfig:
    socket: str
    socket_group: str
    socket_mode: int
    client_user: str
    timeout: int
    on_error: str
    name: str
    hostname: str


@dataclass(frozen=True)
class LogConfig:
    stdout: bool
    file: str
    file_mode: int
    file_group: str
    level: str


@dataclass(frozen=True)
class MetricsConfig:
    listen: tuple[str, int] | None


@dataclass(frozen=True)
class DnsConfig:
    nameservers: tuple[tuple[str, int], ...] = ()
    timeout: float = 5.0
    cache_size: int = 10000


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool = True
    authserv_id: str = ""
    spf_timeout: float = 20.0
    dkim_max_signatures: int = 5
    dkim_min_key_bits: int = 1024
    dkim_max_key_bits: int = 4096
    max_message_bytes: int = 25 * 1024 * 1024


@dataclass(frozen=True)
class Config:
    milter: MilterConfig
    log: LogConfig
    metrics: MetricsConfig
    policies: Mapping[str, PolicyConfig] = field(default_factory=dict)
    dns: DnsConfig = field(default_factory=DnsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)

    @property
    def on_error_action(self) -> Action:
        return Action(self.milter.on_error)

    def active(self) -> list[PolicyConfig]:
        return [p for p in self.policies.values() if p.mode is not Mode.OFF]


def _section(data: Any, path: str, schema: Mapping[str, Option], errors: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append(f"{path}: must be a table")
        data = {}
    for key in data:
        if key not in schema:
            errors.append(f"{path}.{key}: unknown key (known: {', '.join(schema)})")
    for key, opt in schema.items():
        raw = data.get(key, opt.default)
        try:
            out[key] = opt.parse(raw)
        except ItemErrors as exc:
            errors.extend(f"{path}.{key}[{i}]: {problem}" for i, problem in exc.items)
        except ValueError as exc:
            errors.append(f"{path}.{key}: {exc}")
    return out


def parse(data: Mapping[str, Any]) -> Config:
    """Validate a decoded TOML document; raise ConfigError listing every problem."""
    errors: list[str] = []
    known = ("milter", "log", "metrics", "dns", "auth", "policies")
    for key in data:
        if key not in known:
            errors.append(f"{key}: unknown section (known: {', '.join(known)})")
    milter = _section(data.get("milter"), "milter", MILTER_KEYS, errors)
    log = _section(data.get("log"), "log", LOG_KEYS, errors)
    metrics = _section(data.get("metrics"), "metrics", METRICS_KEYS, errors)
    dns = _section(data.get("dns"), "dns", DNS_KEYS, errors)
    auth = _section(data.get("auth"), "auth", AUTH_KEYS, errors)
    if auth.get("dkim_min_key_bits", 0) > auth.get("dkim_max_key_bits", 8192):
        errors.append("auth.dkim_min_key_bits: must not be above auth.dkim_max_key_bits")

    policies_raw = data.get("policies", {})
    if not isinstance(policies_raw, dict):
        errors.append("policies: must be a table of [policies.NAME] tables")
        policies_raw = {}
    for name in policies_raw:
        if name not in CHECKS:
            errors.append(f"policies.{name}: unknown policy (known: {', '.join(CHECKS)})")
    policies: dict[str, PolicyConfig] = {}
    for name, spec in CHECKS.items():
        path = f"policies.{name}"
        raw = policies_raw.get(name, {})
        mode = Option(spec.default_mode, POLICY_KEYS["mode"].parse)
        schema = {**POLICY_KEYS, "mode": mode, **spec.options}
        values = _section(raw, path, schema, errors)
        opts = {k: v for k, v in values.items() if k in spec.options}
        if spec.finalize is not None and all(k in opts for k in spec.options):
            errors.extend(f"{path}.{k}: {msg}" for k, msg in spec.finalize(opts))
        if all(k in values for k in POLICY_KEYS) and all(k in opts for k in spec.options):
            policies[name] = PolicyConfig(
                name=name,
                mode=Mode(values["mode"]),
                exempt=Exemptions(
                    networks=values["exempt_networks"],
                    authenticated=values["exempt_authenticated"],
                    recipients=values["exempt_recipients"],
                ),
                options=spec.settings(**opts),
            )
    if errors:
        raise ConfigError(errors)
    if not milter["hostname"]:
        host = socket.gethostname()
        try:
            milter["hostname"] = _authserv_id(host) or "localhost"
        except ValueError as exc:
            raise ConfigError([f"milter.hostname: empty, and this host's name is unusable: {exc}"]) from None
    if not auth["authserv_id"]:
        auth["authserv_id"] = milter["hostname"]
    return Config(
        milter=MilterConfig(**milter),
        log=LogConfig(**log),
        metrics=MetricsConfig(**metrics),
        policies=policies,
        dns=DnsConfig(**dns),
        auth=AuthConfig(**auth),
    )


def read(path: str) -> tuple[Config, str]:
    """The configuration in ``path`` and the first 16 hex digits of the file's SHA-256 (what the
    metrics and every transaction event record as the running configuration)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}: not UTF-8 (line {line}): {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        hint = ""
        if "Cannot declare" in str(exc) or "Cannot overwrite" in str(exc):
            hint = (
                "; a table or key may appear only once: merge the new keys into the table that is "
                "already there (e.g. a snippet from `mailpolicy report` into the shipped file's)"
            )
        raise ConfigError([f"{path}: TOML syntax error: {exc}{hint}"]) from None
    try:
        return parse(data), hashlib.sha256(raw).hexdigest()[:16]
    except ConfigError as exc:
        raise ConfigError([f"{path}: {e}" for e in exc.errors]) from None


def load(path: str) -> Config:
    return read(path)[0]
