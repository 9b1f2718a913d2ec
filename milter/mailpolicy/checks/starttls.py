"""require_starttls: a transaction on a plaintext session fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailpolicy.checks.base import CheckSpec, Option, parse_action, parse_optional_reply, reply_for_action
from mailpolicy.model import Action, PolicyConfig, Reply, Stage, Verdict

if TYPE_CHECKING:
    from mailpolicy.state import Transaction

DEFAULT_REPLIES = {
    Action.REJECT: "530 5.7.0 Must issue a STARTTLS command first",
    Action.TEMPFAIL: "450 4.7.0 Must issue a STARTTLS command first",
}


@dataclass(frozen=True)
class Options:
    action: Action
    reply: Reply


def run(txn: Transaction, cfg: PolicyConfig) -> Verdict:
    if txn.tls is not None:
        return Verdict("pass")
    o: Options = cfg.options
    return Verdict("fail", o.action, o.reply)


def _finalize(opts: dict[str, Any]) -> list[tuple[str, str]]:
    return reply_for_action(opts, DEFAULT_REPLIES)


SPEC = CheckSpec(
    name="require_starttls",
    stage=Stage.MAIL,
    run=run,
    settings=Options,
    results=("pass", "fail", "temperror"),
    options={
        "action": Option("reject", parse_action(Action.REJECT, Action.TEMPFAIL)),
        "reply": Option("", parse_optional_reply),
    },
    finalize=_finalize,
)
