"""spf: act on the SPF result (RFC 7208) the adapter computed at MAIL FROM.

Each result word maps to an action (continue, reject or tempfail); defaults: fail -> reject
(``550 5.7.23``), every other result -> continue. A missing computation gives ``none``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailpolicy.auth import spf as auth_spf
from mailpolicy.checks.base import CheckSpec, Option, parse_action, parse_optional_reply
from mailpolicy.model import Action, PolicyConfig, Reply, Stage, Verdict

if TYPE_CHECKING:
    from mailpolicy.state import Transaction

RESULT_KEYS = ("fail", "softfail", "neutral", "none", "permerror", "temperror")
DEFAULT_REJECT = "550 5.7.23 SPF validation failed"
DEFAULT_TEMPFAIL = "451 4.7.24 SPF validation error, try again later"


@dataclass(frozen=True)
class Options:
    fail: Action
    softfail: Action
    neutral: Action
    none: Action
    permerror: Action
    temperror: Action
    reject_reply: Reply
    tempfail_reply: Reply


def run(txn: Transaction, cfg: PolicyConfig) -> Verdict:
    spf = txn.auth.spf if txn.auth is not None else None
    if spf is None:
        return Verdict("none")
    details = {"scope": spf.scope, "domain": spf.domain}
    if spf.result == "pass" or spf.result not in RESULT_KEYS:
        return Verdict(spf.result, details=details)
    o: Options = cfg.options
    action: Action = getattr(o, spf.result)
    reply = {Action.REJECT: o.reject_reply, Action.TEMPFAIL: o.tempfail_reply}.get(action)
    return Verdict(spf.result, action, reply, details)


def finalize_replies(opts: dict[str, Any], reject: str, tempfail: str) -> list[tuple[str, str]]:
    """Fill empty reject_reply/tempfail_reply with the defaults and check their classes."""
    problems: list[tuple[str, str]] = []
    for key, default, permanent in (("reject_reply", reject, True), ("tempfail_reply", tempfail, False)):
        reply = opts.get(key)
        if reply is None:
            opts[key] = Reply.parse(default)
        elif isinstance(reply, Reply) and reply.permanent is not permanent:
            want = "5xx" if permanent else "4xx"
            problems.append((key, f"must be a {want} reply (got {reply.code})"))
    return problems


def _finalize(opts: dict[str, Any]) -> list[tuple[str, str]]:
    return finalize_replies(opts, DEFAULT_REJECT, DEFAULT_TEMPFAIL)


_ACTION = parse_action(Action.CONTINUE, Action.REJECT, Action.TEMPFAIL)

SPEC = CheckSpec(
    name="spf",
    stage=Stage.MAIL,
    run=run,
    settings=Options,
    results=auth_spf.RESULTS,
    needs=lambda options: ("spf",),
    options={
        "fail": Option("reject", _ACTION),
        "softfail": Option("continue", _ACTION),
        "neutral": Option("continue", _ACTION),
        "none": Option("continue", _ACTION),
        "permerror": Option("continue", _ACTION),
        "temperror": Option("continue", _ACTION),
        "reject_reply": Option("", parse_optional_reply),
        "tempfail_reply": Option("", parse_optional_reply),
    },
    finalize=_finalize,
)
