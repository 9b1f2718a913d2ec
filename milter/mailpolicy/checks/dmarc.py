"""dmarc: act on the DMARC result (RFC 9989) computed at end of message.

A ``fail`` follows the domain's disposition (reject -> reject, quarantine -> quarantine, none ->
continue), capped by ``max_action``. ``temperror`` -> ``temperror_action`` (continue or tempfail).
``permerror`` (no usable From: missing, several, unparseable, no single author domain; see
auth/dmarc.py) -> ``permerror_action``, ``reject`` by default: the sender fully controls the From
field, so a message without a usable one must not walk past an enforced DMARC policy (RFC 9989
11.5; RFC 5322 requires exactly one From). pass and none always continue. Quarantine is the milter
quarantine (Postfix hold queue) or, with ``quarantine = "header"``, an added header."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from mailpolicy.checks import CheckSpec, Option, Stage, parse_action, parse_optional_reply
from mailpolicy.checks.spf import finalize_replies
from mailpolicy.model import ACTION_SEVERITY, Action, PolicyConfig, Reply, Verdict

if TYPE_CHECKING:
    from mailpolicy.state import Transaction

DEFAULT_REJECT = "550 5.7.1 Message rejected by the DMARC policy of the sender domain"
DEFAULT_TEMPFAIL = "451 4.7.5 DMARC evaluation could not complete, try again later"
DEFAULT_PERMERROR = "550 5.7.1 Message rejected: its From header field gives no single author domain (DMARC)"
_BY_DISPOSITION = {"reject": Action.REJECT, "quarantine": Action.QUARANTINE, "none": Action.CONTINUE}


def run(txn: Transaction, cfg: PolicyConfig) -> Verdict:
    dm = txn.auth.dmarc if txn.auth is not None else None
    if dm is None:
        return Verdict("none")
    details: dict[str, Any] = {"domain": dm.domain, "policy": dm.policy, "disposition": dm.disposition}
    o = cfg.options
    if dm.result == "fail":
        action = _BY_DISPOSITION.get(dm.disposition, Action.CONTINUE)
        cap: Action = o["max_action"]
        if ACTION_SEVERITY[action] > ACTION_SEVERITY[cap]:
            action = cap
        return Verdict("fail", action, o["reject_reply"] if action is Action.REJECT else None, details)
    if dm.result == "temperror" and o["temperror_action"] is Action.TEMPFAIL:
        return Verdict("temperror", Action.TEMPFAIL, o["tempfail_reply"], details)
    if dm.result == "permerror":
        details["author_problem"] = dm.author_problem
        action = o["permerror_action"]
        replies = {Action.REJECT: o["permerror_reply"], Action.TEMPFAIL: o["tempfail_reply"]}
        return Verdict("permerror", action, replies.get(action), details)
    return Verdict(dm.result, details=details)


def _header(value: Any) -> tuple[str, str]:
    if not isinstance(value, str):
        raise ValueError("must be a string 'Name: value'")
    m = re.fullmatch(r"([!-9;-~]+):[ \t]*([ -~]+)", value)
    if not m:
        raise ValueError(f"must be 'Header-Name: value' in printable ASCII (got {value!r})")
    return m.group(1), m.group(2)


def _finalize(opts: dict[str, Any]) -> list[tuple[str, str]]:
    problems = finalize_replies(opts, DEFAULT_REJECT, DEFAULT_TEMPFAIL)
    reply = opts.get("permerror_reply")
    if reply is None:
        opts["permerror_reply"] = Reply.parse(DEFAULT_PERMERROR)
    elif isinstance(reply, Reply) and not reply.permanent:
        problems.append(("permerror_reply", f"must be a 5xx reply (got {reply.code})"))
    return problems


def _quarantine(value: Any) -> str:
    if value not in ("hold", "header"):
        raise ValueError(f"must be 'hold' (milter quarantine) or 'header' (got {value!r})")
    return str(value)


SPEC = CheckSpec(
    name="dmarc",
    stage=Stage.EOM,
    run=run,
    options={
        "max_action": Option("reject", parse_action(Action.CONTINUE, Action.QUARANTINE, Action.REJECT)),
        "quarantine": Option("header", _quarantine),
        "quarantine_header": Option("X-Mailpolicy-Quarantine: DMARC policy quarantine", _header),
        "temperror_action": Option("continue", parse_action(Action.CONTINUE, Action.TEMPFAIL)),
        "permerror_action": Option(
            "reject", parse_action(Action.CONTINUE, Action.QUARANTINE, Action.REJECT, Action.TEMPFAIL)
        ),
        "permerror_reply": Option("", parse_optional_reply),
        "reject_reply": Option("", parse_optional_reply),
        "tempfail_reply": Option("", parse_optional_reply),
    },
    finalize=_finalize,
)
