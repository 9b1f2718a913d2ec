"""The check registry.

A check is a plain function ``run(txn, cfg) -> Verdict``. It reads the facts the adapter collected
(:class:`mailpolicy.state.Transaction`) and its policy's options; it does not know the mode.
:mod:`mailpolicy.policy` turns the verdict plus the mode into a decision.

Adding a check: write ``checks/<name>.py`` exposing ``SPEC``, list it in :data:`CHECKS`, document
its keys in ``config/mailpolicy.toml`` and README.md, and add ``tests/mailpolicy/checks/test_<name>.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from mailpolicy.model import Action, PolicyConfig, Reply, Verdict

if TYPE_CHECKING:
    from mailpolicy.state import Transaction


class Stage(StrEnum):
    """When a check runs: at MAIL FROM (transport facts) or at end of message."""

    MAIL = "mail"
    EOM = "eom"


@dataclass(frozen=True)
class Option:
    default: Any
    parse: Callable[[Any], Any]
    """Returns the parsed value or raises ValueError with a message naming the problem."""


@dataclass(frozen=True)
class CheckSpec:
    name: str
    stage: Stage
    run: Callable[[Transaction, PolicyConfig], Verdict]
    options: Mapping[str, Option] = field(default_factory=dict)
    finalize: Callable[[dict[str, Any]], list[tuple[str, str]]] | None = None
    """Cross-key validation and derived defaults; returns (key, problem) pairs."""


def parse_action(*allowed: Action) -> Callable[[Any], Action]:
    def parse(value: Any) -> Action:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, one of {', '.join(a.value for a in allowed)}")
        try:
            action = Action(value)
        except ValueError:
            action = None
        if action not in allowed:
            raise ValueError(f"must be one of {', '.join(a.value for a in allowed)} (got {value!r})")
        assert action is not None
        return action

    return parse


def parse_optional_reply(value: Any) -> Reply | None:
    """``""`` means: the check's default reply for the configured action."""
    if not isinstance(value, str):
        raise ValueError("must be a string such as '550 5.7.1 text'")
    return Reply.parse(value) if value else None


def reply_for_action(
    opts: dict[str, Any], defaults: Mapping[Action, str], action_key: str = "action", reply_key: str = "reply"
) -> list[tuple[str, str]]:
    """Fill ``opts[reply_key]`` from ``defaults`` when empty, and check that a 5xx reply goes with
    ``reject`` and a 4xx reply with ``tempfail``."""
    action = opts.get(action_key)
    reply = opts.get(reply_key)
    if not isinstance(action, Action):
        return []
    if reply is None:
        opts[reply_key] = Reply.parse(defaults[action])
        return []
    assert isinstance(reply, Reply)
    if action is Action.REJECT and not reply.permanent:
        return [(reply_key, f"action 'reject' needs a 5xx reply (got {reply.code})")]
    if action is Action.TEMPFAIL and reply.permanent:
        return [(reply_key, f"action 'tempfail' needs a 4xx reply (got {reply.code})")]
    return []


def _registry() -> dict[str, CheckSpec]:
    from mailpolicy.checks import dmarc, spf, starttls, tls_version

    specs = (starttls.SPEC, tls_version.SPEC, spf.SPEC, dmarc.SPEC)
    return {s.name: s for s in specs}


CHECKS: dict[str, CheckSpec] = _registry()
"""Every check, by policy name, in evaluation order."""
