"""Suggestions, never applied:

- exemptions: client networks whose mail a policy refuses (or would refuse) although it is
  authenticated, i.e. mail the admin would really lose by enforcing the policy;
- trusted ARC sealers (``[policies.dmarc] trusted_arc_sealers``): the newest sealers of valid ARC
  chains on DMARC failures that the dmarc policy refuses or would refuse, i.e. forwarded and list
  mail that trusting the forwarder could keep. A trusted sealer can vouch for a spoof, so the
  snippet says so.

Every number of mail kept or let through counts only what the exemption (or the trusted sealer)
would change, ``PolicyStats.kept`` (see the docstring of aggregate.py): mail delivered today that
the policy would refuse (what enforcing it would lose), or mail the policy alone refused today.
Never mail another enforce-mode policy refuses anyway, nor mail that was not delivered for another
reason (aborted)."""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Any

from mailpolicy.report.aggregate import RCPTS, policy_order
from mailpolicy.report.tables import plural

if TYPE_CHECKING:
    from mailpolicy.report.aggregate import Aggregator, PolicyStats

MIN_AUTH_SHARE = 0.5
"""A network is suggested only when at least this share of the mail exempting it would let through
(what it keeps) is authenticated: exempting a network also lets its unauthenticated mail through."""
MAX_NAMES = 5
"""Sender domains and earlier sealers named per suggested sealer."""
_DOMAIN = re.compile(
    r"(?=.{1,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)


_KEY = re.compile(r"[a-z0-9_]{1,64}")  # a policy name as a TOML bare key (the configuration's are)


def config_network(text: str) -> str | None:
    """``text``, a network as ``aggregate.client_network`` makes it of a client address (a /24 for
    IPv4, a /48 for IPv6), as the configuration writes a network; None for anything else: the text
    of a client address that is no address (``(unknown)``, a forged event's ``0.0.0.0/0`` or
    ``"]`` and newlines), which ``client_network`` leaves as it is."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except (ValueError, TypeError):
        return None
    if net.prefixlen != (24 if net.version == 4 else 48):
        return None
    return str(net)


def config_domain(name: str) -> str | None:
    """``name`` as the configuration writes a domain (what ``mailpolicy.checks.base.parse_domain``
    accepts, same syntax), or None. Not imported from there: importing the checks loads every check
    and its libraries, which the report does not need."""
    text = name.strip().lower().rstrip(".")
    return text if _DOMAIN.fullmatch(text) else None


def suggestions(policies: dict[str, PolicyStats], top: int) -> list[dict[str, Any]]:
    """Suggested ``exempt_networks``: per policy, the networks whose mail an exemption would keep
    (``PolicyStats.kept``) holds authenticated mail, at least :data:`MIN_AUTH_SHARE` of it; each
    with what the policy refuses or would refuse from it (``affected``: delivered or not)."""
    out: list[dict[str, Any]] = []
    for name in sorted(policies, key=policy_order):
        kept = policies[name].kept.tables()
        total_auth = kept.total[1]
        if not total_auth:
            continue
        affected = policies[name].affected.tables().networks
        candidates = [
            (net, row)
            for net, row in kept.networks.items()
            if row[1] > 0 and row[1] / row[0] >= MIN_AUTH_SHARE
        ]
        candidates.sort(key=lambda kv: (-kv[1][1], kv[1][2], kv[0]))
        for net, row in candidates[:top]:
            out.append(
                {
                    "policy": name,
                    "network": net,
                    "affected": affected[net][0],
                    "authenticated_kept": row[1],
                    "unauthenticated_let_through": row[2],
                    "unknown_let_through": row[3],
                    "authenticated_recipients_kept": row[RCPTS + 1],
                    "unauthenticated_recipients_let_through": row[RCPTS + 2],
                    "unknown_recipients_let_through": row[RCPTS + 3],
                    "authenticated_share_of_policy": round(row[1] / total_auth, 6),
                    "client_names": list(kept.network_names.get(net, [])),
                }
            )
    return out


def sealer_suggestions(agg: Aggregator, stats: dict[str, PolicyStats], top: int) -> list[dict[str, Any]]:
    """Suggested ``trusted_arc_sealers`` for the dmarc policy: the newest sealer of each valid ARC
    chain on a DMARC failure that the policy refuses or would refuse (never mail that was accepted),
    with the number of such transactions that trusting it would keep (``Aggregator.arc_refused``:
    delivered today, or refused by the dmarc policy alone), most first (at most ``top``). A sealer
    the logs show as trusted already (the ``override_by`` of a ``trusted_forwarder`` override) is
    left out, and so is a name the configuration would not accept as a domain."""
    dm = stats.get("dmarc")
    trusted = {by for (reason, by) in dm.overrides_by if reason == "trusted_forwarder"} if dm else set()
    valid: dict[str, str | None] = {}

    def domain(name: str) -> str | None:
        if name not in valid:
            valid[name] = config_domain(name)
        return valid[name]

    totals: dict[str, list[int]] = {}  # sealer -> [transactions, recipients]
    domains: dict[str, dict[str, int]] = {}
    for (sealer, sender), (n, r) in agg.arc_refused.items():
        name = domain(sealer)
        if name is None or name in trusted:
            continue
        row = totals.setdefault(name, [0, 0])
        row[0] += n
        row[1] += r
        per = domains.setdefault(name, {})
        per[sender] = per.get(sender, 0) + n
    earlier: dict[str, dict[str, int]] = {}
    for (sealer, other), n in agg.arc_earlier.items():
        name = domain(sealer)
        if name in totals:
            per = earlier.setdefault(name, {})
            per[other] = per.get(other, 0) + n
    out: list[dict[str, Any]] = []
    for name, (n, r) in sorted(totals.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[:top]:
        senders = domains[name]
        out.append(
            {
                "policy": "dmarc",
                "sealer": name,
                "transactions": n,
                "recipients": r,
                "sender_domains": len(senders),
                "sender_domain_names": _most(senders),
                "earlier_sealers": _most(earlier.get(name, {})),
            }
        )
    return out


def _most(counts: dict[str, int]) -> list[str]:
    return [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_NAMES]]


def suggestions_toml(
    items: list[dict[str, Any]],
    agg: Aggregator,
    stats: dict[str, PolicyStats],
    sealers: list[dict[str, Any]] | None = None,
) -> str:
    """The suggestions as a TOML snippet for config/mailpolicy.toml, numbers in comments: one
    table per policy, the suggested sealers in the ``[policies.dmarc]`` table.

    The snippet is made from event values, which can be forged: every value in it is a network
    ``ipaddress`` parsed (:func:`config_network`), a domain :func:`config_domain` accepted, every
    table a policy name that is a bare key; what is not is left out, and said in a comment. Other
    text from the logs is only in comments (:func:`_comment_safe`)."""
    sealers = sealers or []
    if not items and not sealers:
        return ""
    hosts = len(agg.spans)
    span = _comment_safe(f"{(agg.first or '?')[:10]} .. {(agg.last or '?')[:10]}")
    period = f"Period {span}, {hosts} host{'' if hosts == 1 else 's'}."
    lines: list[str] = []
    if items:
        lines += [
            "# SUGGESTED exemptions from `mailpolicy report` -- NOT applied, review before use.",
            f"# {period} Each network below sent authenticated mail",
            "# (DMARC pass or aligned DKIM pass) that enforcing the policy would refuse. Exempting it",
            "# keeps that mail but also lets the network's unauthenticated mail through (numbers below).",
            "# Counted: mail delivered today that the policy would refuse, and mail it alone refused today;",
            "# not mail another enforced policy refuses anyway, nor mail that was never delivered.",
            "# Merge with any exempt_networks you already have for the policy.",
        ]
    if sealers:
        if items:
            lines.append("#")
        lines += [
            "# SUGGESTED trusted ARC sealers from `mailpolicy report` -- NOT applied, review before use.",
            "# A trusted sealer can vouch for a spoof: list only forwarders you trust with your users' mail.",
            *([f"# {period}"] if not items else []),
            "# Each sealer below sealed the newest set of a valid ARC chain on mail that failed DMARC",
            "# and that the dmarc policy alone refuses, or would refuse and it was delivered today (not",
            "# mail another enforced policy refuses anyway, nor mail never delivered). Trusting it keeps",
            "# such mail only when a trusted set's ARC-Authentication-Results recorded a pass for the",
            "# author domain, so the counts are upper bounds; when the newest sealer only passed the mail",
            "# on, the earlier sealers named must be trusted too. Merge with any trusted_arc_sealers you",
            "# already have.",
        ]
    by_policy: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_policy.setdefault(item["policy"], []).append(item)
    for name in sorted({*by_policy, *(["dmarc"] if sealers else [])}, key=policy_order):
        lines.append("")
        if not _KEY.fullmatch(name):
            lines.append(
                f"# left out: {plural(len(by_policy[name]), 'network')} for a policy whose name is not"
                f" a policy name of the configuration ({_comment_safe(ascii(name)[:80])})"
            )
            continue
        lines.append(f"[policies.{name}]")
        if name in by_policy:
            lines += _exemption_lines(by_policy[name], stats[name])
        if name == "dmarc" and sealers:
            lines += _sealer_lines(sealers)
    return "\n".join(lines) + "\n"


def _sealer_lines(sealers: list[dict[str, Any]]) -> list[str]:
    def note(s: dict[str, Any]) -> str:
        text = f"up to {plural(s['transactions'], 'transaction')} would be kept"
        names = s["sender_domain_names"][:3]
        if names:
            more = ", ..." if s["sender_domains"] > len(names) else ""
            text += f" (from {', '.join(names)}{more})"
        if s["earlier_sealers"]:
            text += "; earlier sealers: " + ", ".join(s["earlier_sealers"])
        return _comment_safe(text)

    # sealer_suggestions gives only names config_domain accepted; checked again, as the networks
    sealers = [s for s in sealers if config_domain(s["sealer"]) == s["sealer"]]
    if not sealers:
        return []
    total = sum(s["transactions"] for s in sealers)
    rcpts = sum(s["recipients"] for s in sealers)
    head = (
        f"# keeps up to {plural(total, 'DMARC failure')} ({plural(rcpts, 'recipient')}) this policy"
        " alone refuses or would lose (forwarded, valid ARC)"
    )
    if len(sealers) == 1:
        return [head, f'trusted_arc_sealers = ["{sealers[0]["sealer"]}"]  # {note(sealers[0])}']
    return [head, "trusted_arc_sealers = [", *(f'    "{s["sealer"]}",  # {note(s)}' for s in sealers), "]"]


def _exemption_lines(rows: list[dict[str, Any]], ps: PolicyStats) -> list[str]:
    """``exempt_networks`` of the rows whose network is an IP network; the others (a transaction
    without a client address, a forged event) are left out and said so in a comment."""
    valid: list[tuple[str, dict[str, Any]]] = []
    bad: list[str] = []
    for r in rows:
        net = config_network(r["network"])
        if net is None:
            bad.append(r["network"])
        elif all(net != v for v, _ in valid):
            valid.append((net, r))
    lines: list[str] = []
    if bad:
        shown = ", ".join(_comment_safe(ascii(b)[:60]) for b in bad[:3])
        lines.append(
            f"# left out: {plural(len(bad), 'client address', 'client addresses')} that"
            f" {'is' if len(bad) == 1 else 'are'} not an IP address (no /24 or /48 network):"
            f" {shown}{', ...' if len(bad) > 3 else ''}"
        )
    if not valid:
        return lines
    kept = sum(r["authenticated_kept"] for _, r in valid)
    kept_r = sum(r["authenticated_recipients_kept"] for _, r in valid)
    total = ps.kept.tables().total
    lines += [
        f"# keeps {kept} of {plural(total[1], 'authenticated transaction')}"
        f" ({kept_r} of {plural(total[RCPTS + 1], 'recipient')}) this policy alone refuses"
        f" or would lose; lets {sum(r['unauthenticated_let_through'] for _, r in valid)}"
        " unauthenticated through",
        "exempt_networks = [",
    ]
    for net, r in valid:
        names = ", ".join(r["client_names"][:3])
        lines.append(
            f'    "{net}",  # {r["authenticated_kept"]} authenticated kept,'
            f" {r['unauthenticated_let_through']} unauthenticated let through"
            + (f", {r['unknown_let_through']} without auth data" if r["unknown_let_through"] else "")
            + (f"; {_comment_safe(names)}" if names else "")
        )
    lines.append("]")
    return lines


def _comment_safe(text: str) -> str:
    """``text`` for a TOML comment: what is not printable (a newline would end the comment) as
    ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text)
