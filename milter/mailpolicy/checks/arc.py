"""arc: act on the ARC chain validation result (RFC 8617) computed at end of message.

``fail`` means the message carries ARC sets that do not validate: a broken or forged chain (an
intermediary that changes sealed fields breaks one as well, so watch the monitor counts before
acting). It gets the ``fail`` action: continue (the default: the result is recorded and counted),
quarantine, or reject. Every other result (pass, none, temperror, permerror) continues: a chain
that validates is a fact for the ``dmarc`` policy's overrides (``trusted_arc_sealers``), not a
reason to accept anything by itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailpolicy.checks.base import (
    CheckSpec,
    Option,
    parse_action,
    parse_header,
    parse_optional_reply,
    parse_quarantine,
)
from mailpolicy.model import Action, PolicyConfig, Reply, Stage, Verdict

if TYPE_CHECKING:
    from mailpolicy.state import Transaction

DEFAULT_REJECT = "550 5.7.29 ARC validation failure"  # X.7.29: the code RFC 8617 registered for ARC


@dataclass(frozen=True)
class Options:
    fail: Action
    reject_reply: Reply
    quarantine: str
    quarantine_header: tuple[str, str]


def run(txn: Transaction, cfg: PolicyConfig) -> Verdict:
    arc = txn.auth.results.get("arc") if txn.auth is not None else None
    if arc is None:
        return Verdict("none")
    details: dict[str, Any] = {"instances": arc.instances, "sealers": list(arc.sealers)}
    if arc.result != "fail":
        return Verdict(arc.result, details=details)
    o: Options = cfg.options
    header = o.quarantine_header if o.quarantine == "header" else None
    reply = o.reject_reply if o.fail is Action.REJECT else None
    return Verdict("fail", o.fail, reply, {**details, "reason": arc.reason}, quarantine_header=header)


def _finalize(opts: dict[str, Any]) -> list[tuple[str, str]]:
    reply = opts.get("reject_reply")
    if reply is None:
        opts["reject_reply"] = Reply.parse(DEFAULT_REJECT)
    elif isinstance(reply, Reply) and not reply.permanent:
        return [("reject_reply", f"must be a 5xx reply (got {reply.code})")]
    return []


SPEC = CheckSpec(
    name="arc",
    stage=Stage.EOM,
    run=run,
    settings=Options,
    default_mode="off",
    results=("pass", "fail", "none", "temperror", "permerror"),
    needs=lambda options: ("arc",),
    annotates="arc",
    options={
        "fail": Option("continue", parse_action(Action.CONTINUE, Action.QUARANTINE, Action.REJECT)),
        "reject_reply": Option("", parse_optional_reply),
        "quarantine": Option("header", parse_quarantine),
        "quarantine_header": Option("X-Mailpolicy-Quarantine: ARC validation failure", parse_header),
    },
    finalize=_finalize,
)
