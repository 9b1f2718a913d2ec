"""Small value types shared by config, checks, policy and adapter."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Mode(StrEnum):
    OFF = "off"
    MONITOR = "monitor"
    ENFORCE = "enforce"


class Action(StrEnum):
    """What a policy does (enforce) or would do (monitor) to a transaction."""

    CONTINUE = "continue"
    QUARANTINE = "quarantine"
    TEMPFAIL = "tempfail"
    REJECT = "reject"


class Stage(StrEnum):
    """When a check or an authentication method runs: at MAIL FROM (transport facts) or at end of
    message."""

    MAIL = "mail"
    EOM = "eom"


# Higher wins when several policies ask for different actions.
ACTION_SEVERITY = {Action.CONTINUE: 0, Action.QUARANTINE: 1, Action.TEMPFAIL: 2, Action.REJECT: 3}

_REPLY_RE = re.compile(r"^([45][0-9][0-9])(?: ([45])\.([0-9]{1,3})\.([0-9]{1,3}))?(?: (.*))?$")

REPLY_LINE_MAX = 512
"""RFC 5321 4.5.3.1.5: the longest reply line, in octets, its CRLF included. (libmilter's own limit
is looser, 980 octets of text, and refuses a longer one at the first refusal: smfi_setreply fails.)"""


@dataclass(frozen=True)
class Reply:
    """An SMTP reply: basic code, enhanced status code and text."""

    code: str
    xcode: str | None
    text: str

    @classmethod
    def parse(cls, value: str) -> Reply:
        """Parse ``"530 5.7.0 Must issue a STARTTLS command first"``; raise ValueError."""
        m = _REPLY_RE.fullmatch(value)
        if not m:
            raise ValueError(
                f"not an SMTP reply: {value!r} (expected e.g. '550 5.7.1 text', code 4xx or 5xx)"
            )
        code, xclass, xsub, xdet, text = m.groups()
        if xclass is None:
            # RFC 3463: Postfix advertises ENHANCEDSTATUSCODES, so clients expect one in every reply.
            looks = re.match(r"[0-9]+\.[0-9]+\.[0-9]+(?= |$)", text or "")
            if looks:
                raise ValueError(
                    f"{value!r}: enhanced status code {looks.group()} is not valid: it must be "
                    f"{code[0]}.Y.Z (its class, {code[0]}, as the reply code's; Y and Z of 1-3 digits)"
                )
            raise ValueError(
                f"{value!r} has no enhanced status code: write it as 'CODE X.Y.Z text', e.g. "
                f"'{code} {code[0]}.7.1 {text or 'text'}'"
            )
        if xclass is not None and xclass != code[0]:
            raise ValueError(f"enhanced code {xclass}.{xsub}.{xdet} does not match reply code {code}")
        text = text or ""
        if "%" in text:
            raise ValueError("reply text must not contain '%' (libmilter would drop the reply)")
        if any(not (32 <= ord(c) < 127) for c in text):
            raise ValueError("reply text must be printable ASCII on one line")
        xcode = f"{xclass}.{xsub}.{xdet}" if xclass is not None else None
        reply = cls(code, xcode, text)
        octets = len(str(reply)) + 2  # (ASCII) and its CRLF
        if octets > REPLY_LINE_MAX:
            raise ValueError(
                f"the reply line would be {octets} octets with its CRLF; RFC 5321 allows at most "
                f"{REPLY_LINE_MAX}: shorten the text to {len(text) - (octets - REPLY_LINE_MAX)} characters "
                "or fewer"
            )
        return reply

    @property
    def permanent(self) -> bool:
        return self.code.startswith("5")

    def __str__(self) -> str:
        return " ".join(p for p in (self.code, self.xcode, self.text) if p)


@dataclass(frozen=True)
class Exemptions:
    networks: tuple[IPNetwork, ...] = ()
    authenticated: bool = True
    recipients: tuple[str, ...] = ()

    def client_exempt(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        if ip is None:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == n.version and ip in n for n in self.networks)

    def recipient_exempt(self, rcpt: str) -> bool:
        """Patterns: ``user@example.org`` (address), ``postmaster@`` (local part, any domain),
        ``@example.org`` (whole domain). Case-insensitive."""
        addr = rcpt.strip().strip("<>").lower()
        local, _, domain = addr.rpartition("@")
        for pat in self.recipients:
            if pat == addr:
                return True
            if pat.endswith("@") and local == pat[:-1]:
                return True
            if pat.startswith("@") and domain == pat[1:]:
                return True
        return False


@dataclass(frozen=True)
class PolicyConfig:
    name: str
    mode: Mode
    exempt: Exemptions
    options: Any = None
    """The check's typed options: an instance of its ``CheckSpec.settings`` dataclass."""


OVERRIDE_REASONS = ("trusted_forwarder", "mailing_list", "local_policy", "policy_test_mode", "other")
"""Why local policy overrode a verdict (the words of RFC 9990's PolicyOverrideType)."""


@dataclass(frozen=True)
class Verdict:
    """What a check found, the action enforcing it would take, and how that action is applied."""

    result: str
    action: Action = Action.CONTINUE
    reply: Reply | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    quarantine_header: tuple[str, str] | None = None
    """For ``quarantine``: add this header field instead of the MTA's quarantine (hold queue)."""
    override: str | None = None
    """An :data:`OVERRIDE_REASONS` word when local policy changed the action the result asked for."""
    overridden: Action | None = None
    """With ``override``: the action the result asked for before the override."""


@dataclass
class Decision:
    """A verdict turned into a decision for one transaction under one policy's mode."""

    policy: str
    mode: Mode
    result: str
    action: Action
    reply: Reply | None = None
    exempt: str | None = None
    applied: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)
    quarantine_header: tuple[str, str] | None = None
    override: str | None = None
    overridden: Action | None = None

    def record(self) -> dict[str, Any]:
        # Mode and Action members are str (StrEnum): they encode as their value, and reading
        # ``.value`` on the way costs more than the rest of this record.
        rec: dict[str, Any] = {
            "mode": self.mode,
            "result": self.result,
            "action": self.action,
            "applied": self.applied,
            "exempt": self.exempt,
            "override": self.override,
            "overridden_action": self.overridden,
        }
        if self.reply is not None and self.action is not Action.CONTINUE:
            rec["reply"] = str(self.reply)
        if self.details:
            rec["details"] = dict(self.details)
        return rec


_second: tuple[int, str] = (-1, "")  # the last second formatted (most timestamps share it)
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


def iso(ts: float) -> str:
    """RFC 3339 UTC timestamp with milliseconds, e.g. ``2026-11-23T04:05:06.789Z``: what
    ``datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")`` gives (microseconds
    rounded half to even, then cut to milliseconds), with the date and time of the second
    formatted once."""
    global _second
    seconds = math.floor(ts)
    micros = round((ts - seconds) * 1_000_000)  # (ts - seconds is exact, as in math.modf)
    if micros == 1_000_000:
        seconds, micros = seconds + 1, 0
    cached = _second
    if cached[0] != seconds:
        cached = _second = (seconds, datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return cached[1] + _MILLIS[micros // 1000]
