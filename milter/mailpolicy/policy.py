"""Turn a check's verdict plus the policy's mode and exemptions into a decision.

This is the only place that knows what ``off``, ``monitor`` and ``enforce`` mean:
- off: the check does not run;
- monitor: the decision (including "would reject") is logged and counted, never applied;
- enforce: a non-``continue`` action is applied unless an exemption matches."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from mailpolicy import metrics
from mailpolicy.model import ACTION_SEVERITY, Action, Decision, Mode, PolicyConfig, Verdict

if TYPE_CHECKING:
    from mailpolicy.checks.base import CheckSpec
    from mailpolicy.state import Transaction

log = logging.getLogger("mailpolicy.policy")


def run_check(spec: CheckSpec, cfg: PolicyConfig, txn: Transaction) -> Verdict:
    """Run one check; an unexpected exception becomes ``temperror`` with no action."""
    t0 = time.perf_counter()
    try:
        return spec.run(txn, cfg)
    except Exception as exc:
        metrics.child(metrics.CHECK_ERRORS, spec.name).inc()
        log.exception(
            "check raised; result is temperror",
            extra={"conn_id": txn.conn.conn_id, "queue_id": txn.queue_id, "check": spec.name},
        )
        return Verdict("temperror", details={"error": f"{type(exc).__name__}: {exc}"[:300]})
    finally:
        metrics.child(metrics.CHECK_SECONDS, spec.name).observe(time.perf_counter() - t0)


def decide(cfg: PolicyConfig, verdict: Verdict, txn: Transaction) -> Decision:
    d = Decision(
        policy=cfg.name,
        mode=cfg.mode,
        result=verdict.result,
        action=verdict.action,
        reply=verdict.reply,
        details=verdict.details,
        quarantine_header=verdict.quarantine_header,
        override=verdict.override,
        overridden=verdict.overridden,
    )
    if d.action is Action.CONTINUE:
        return d
    if cfg.exempt.client_exempt(txn.client_ip):
        d.exempt = "network"
    elif cfg.exempt.authenticated and txn.auth_user:
        d.exempt = "authenticated"
    elif (
        cfg.exempt.recipients
        and txn.accepted_recipients
        and all(cfg.exempt.recipient_exempt(r) for r in txn.accepted_recipients)
    ):
        # Only at end of message (MAIL-stage checks see no recipients yet and act per RCPT
        # instead). A message cannot be split there, so it is exempt only when every recipient
        # it goes to is: one exempt recipient must not carry a refused message to the others.
        d.exempt = "recipient"
    if d.exempt:
        _override(d, "local_policy")
    return d


def _override(d: Decision, reason: str) -> None:
    """Local policy turns the decision into ``continue``; it keeps what it overrode."""
    d.override, d.overridden, d.action = reason, d.action, Action.CONTINUE


def evaluate(spec: CheckSpec, cfg: PolicyConfig, txn: Transaction) -> Decision:
    return decide(cfg, run_check(spec, cfg, txn), txn)


def enforceable(d: Decision) -> bool:
    """True when this decision asks the MTA to do something now."""
    return d.mode is Mode.ENFORCE and d.action is not Action.CONTINUE


def strongest(decisions: Iterable[Decision]) -> Decision | None:
    """The enforceable decision with the most severe action (first one wins a tie)."""
    best: Decision | None = None
    for d in decisions:
        if enforceable(d) and (best is None or ACTION_SEVERITY[d.action] > ACTION_SEVERITY[best.action]):
            best = d
    return best


def settle_recipients(d: Decision, rcpt_total: int, rcpt_exempt: int) -> None:
    """At the end of a transaction: if every recipient was exempt, nothing was (or would have
    been) refused, so the decision becomes ``continue`` with exemption ``recipient``."""
    if d.action is not Action.CONTINUE and rcpt_total > 0 and rcpt_exempt == rcpt_total and not d.applied:
        d.exempt = "recipient"
        _override(d, "local_policy")


def count(d: Decision) -> None:
    # (Mode and Action members are str, equal to their value: label values as they are.)
    metrics.child(metrics.POLICY_DECISIONS, d.policy, d.mode, d.result, d.action).inc()
    if d.exempt:
        metrics.child(metrics.POLICY_EXEMPTIONS, d.policy, d.exempt).inc()
    if d.override and d.overridden is not None:
        metrics.child(metrics.POLICY_OVERRIDES, d.policy, d.mode, d.override, d.overridden).inc()
