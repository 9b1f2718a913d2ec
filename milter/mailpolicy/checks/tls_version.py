"""tls_min_version: a transaction on TLS older than the configured floor fails.

Plaintext sessions give ``none`` (that is require_starttls's business); a version string the
check cannot order gives ``permerror`` and never an action."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailpolicy.checks.base import CheckSpec, Option, parse_action, parse_optional_reply, reply_for_action
from mailpolicy.model import Action, PolicyConfig, Reply, Stage, Verdict
from mailpolicy.tls import UNKNOWN, normalize_version, version_key

if TYPE_CHECKING:
    from mailpolicy.state import Transaction


def parse_min_version(value: Any) -> str:
    if isinstance(value, str):
        norm = normalize_version(value)
        if norm not in (None, UNKNOWN) and norm.startswith("TLS"):
            return norm
    raise ValueError(f"must be a TLS version such as 'TLSv1.2' or 'TLSv1.3' (got {value!r})")


@dataclass(frozen=True)
class Options:
    min_version: str
    action: Action
    reply: Reply


def run(txn: Transaction, cfg: PolicyConfig) -> Verdict:
    tls = txn.tls
    if tls is None:
        return Verdict("none")
    o: Options = cfg.options
    floor = o.min_version
    details = {"tls_version": tls.version, "min_version": floor}
    have = version_key(tls.version)
    if have is None:
        return Verdict("permerror", details=details)
    want = version_key(floor)
    assert want is not None
    if have >= want:
        return Verdict("pass", details=details)
    return Verdict("fail", o.action, o.reply, details)


def _finalize(opts: dict[str, Any]) -> list[tuple[str, str]]:
    floor = opts.get("min_version", "TLSv1.2")
    defaults = {
        Action.REJECT: f"550 5.7.0 TLS version too old: use {floor} or newer",
        Action.TEMPFAIL: f"450 4.7.0 TLS version too old: use {floor} or newer",
    }
    return reply_for_action(opts, defaults)


SPEC = CheckSpec(
    name="tls_min_version",
    stage=Stage.MAIL,
    run=run,
    settings=Options,
    results=("pass", "fail", "none", "permerror", "temperror"),
    options={
        "min_version": Option("TLSv1.2", parse_min_version),
        "action": Option("reject", parse_action(Action.REJECT, Action.TEMPFAIL)),
        "reply": Option("", parse_optional_reply),
    },
    finalize=_finalize,
)
