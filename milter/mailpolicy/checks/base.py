"""The check contract: what a check module declares (:class:`CheckSpec`) and the helpers its
options use. The registry of checks is :mod:`mailpolicy.checks`; a check module imports only this
module (and the model), so importing one never goes through the registry.

A check is a plain function ``run(txn, cfg) -> Verdict``. It reads the facts the session collected
(:class:`mailpolicy.state.Transaction`, with the results of the authentication methods it
``needs``) and its policy's typed options (``cfg.options``, an instance of the check's frozen
``settings`` dataclass); it does not know the mode. :mod:`mailpolicy.policy` turns the verdict
plus the mode into a decision."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mailpolicy.model import Action, IPNetwork, PolicyConfig, Reply, Stage, Verdict

if TYPE_CHECKING:
    from mailpolicy.state import Transaction


@dataclass(frozen=True)
class Option:
    default: Any
    parse: Callable[[Any], Any]
    """Returns the parsed value or raises ValueError with a message naming the problem."""


def _no_needs(options: Any) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class CheckSpec:
    name: str
    stage: Stage
    run: Callable[[Transaction, PolicyConfig], Verdict]
    settings: Callable[..., Any]
    """The check's frozen options dataclass, built from the parsed ``options`` by keyword."""
    options: Mapping[str, Option] = field(default_factory=dict)
    finalize: Callable[[dict[str, Any]], list[tuple[str, str]]] | None = None
    """Cross-key validation and derived defaults; returns (key, problem) pairs."""
    default_mode: str = "monitor"
    """The mode when the configuration does not name one (a check added later is ``off`` by
    default, so that an upgrade does not start work nobody asked for)."""
    results: tuple[str, ...] = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
    """Every ``result`` its decisions can carry (temperror: the check raised); metric labels."""
    needs: Callable[[Any], tuple[str, ...]] = _no_needs
    """The authentication methods (:mod:`mailpolicy.auth`) whose results the check reads, given
    its options; the session runs them (and what they need) whenever the policy is active."""
    annotates: str | None = None
    """The authentication method whose clause in our Authentication-Results header carries this
    policy's override (as a comment), if any."""


class ItemErrors(ValueError):
    """Problems with several items of one list: reported one per item (``key[i]: problem``)."""

    def __init__(self, items: list[tuple[int, str]]):
        super().__init__("; ".join(f"item {i}: {p}" for i, p in items))
        self.items = items


def each(value: Any, example: str, parse: Callable[[Any], Any]) -> tuple[Any, ...]:
    """Parse every item of a list with ``parse``; every bad item is reported, not only the first."""
    if not isinstance(value, list):
        raise ValueError(f"must be a list such as {example}")
    out, bad = [], []
    for i, item in enumerate(value):
        try:
            out.append(parse(item))
        except ValueError as exc:
            bad.append((i, str(exc)))
    if bad:
        raise ItemErrors(bad)
    return tuple(out)


def _network(item: Any) -> IPNetwork:
    if not isinstance(item, str):
        raise ValueError(f"must be a string (got {type(item).__name__})")
    try:
        return ipaddress.ip_network(item, strict=True)
    except ValueError as exc:
        raise ValueError(f"not a valid CIDR network: {item!r} ({exc})") from None


def parse_networks(value: Any) -> tuple[IPNetwork, ...]:
    nets: tuple[IPNetwork, ...] = each(value, "['192.0.2.0/24', '2001:db8::/32']", _network)
    return nets


_DOMAIN = re.compile(
    r"(?=.{1,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)


def parse_domain(item: Any) -> str:
    """A domain name (ASCII; an IDN as its A-label), lower case without a trailing dot."""
    if not isinstance(item, str):
        raise ValueError(f"must be a string (got {type(item).__name__})")
    text = item.strip().lower().rstrip(".")
    if not _DOMAIN.fullmatch(text):
        raise ValueError(f"not a domain name: {item!r} (write an IDN as its xn-- A-label)")
    return text


def parse_domains(value: Any) -> tuple[str, ...]:
    out: tuple[str, ...] = each(value, "['example.org', 'lists.example.net']", parse_domain)
    return out


def parse_header(value: Any) -> tuple[str, str]:
    """A header field to add, ``"Name: value"`` in printable ASCII."""
    if not isinstance(value, str):
        raise ValueError("must be a string 'Name: value'")
    m = re.fullmatch(r"([!-9;-~]+):[ \t]*([ -~]+)", value)
    if not m:
        raise ValueError(f"must be 'Header-Name: value' in printable ASCII (got {value!r})")
    return m.group(1), m.group(2)


def parse_quarantine(value: Any) -> str:
    """How a quarantine is applied: ``hold`` (the MTA's quarantine) or ``header``."""
    if value not in ("hold", "header"):
        raise ValueError(f"must be 'hold' (milter quarantine) or 'header' (got {value!r})")
    return str(value)


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
