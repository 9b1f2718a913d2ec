"""Exemption suggestions: client networks whose mail a policy refuses (or would refuse) although it
is authenticated, i.e. mail the admin would really lose by enforcing the policy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailpolicy.report.aggregate import Aggregator, PolicyStats

MIN_AUTH_SHARE = 0.5
"""A network is suggested only when at least this share of its affected mail is authenticated:
exempting a network also lets its unauthenticated mail through."""


def suggestions(policies: dict[str, PolicyStats], top: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in sorted(policies):
        aff = policies[name].affected.tables()
        total_auth = aff.total[1]
        if not total_auth:
            continue
        candidates = [
            (net, row)
            for net, row in aff.networks.items()
            if row[1] > 0 and row[1] / row[0] >= MIN_AUTH_SHARE
        ]
        candidates.sort(key=lambda kv: (-kv[1][1], kv[1][2], kv[0]))
        for net, row in candidates[:top]:
            out.append(
                {
                    "policy": name,
                    "network": net,
                    "affected": row[0],
                    "authenticated_kept": row[1],
                    "unauthenticated_let_through": row[2],
                    "unknown_let_through": row[3],
                    "authenticated_share_of_policy": round(row[1] / total_auth, 6),
                    "client_names": list(aff.network_names.get(net, [])),
                }
            )
    return out


def suggestions_toml(items: list[dict[str, Any]], agg: Aggregator, stats: dict[str, PolicyStats]) -> str:
    """The suggestions as a TOML snippet for config/mailpolicy.toml, numbers in comments."""
    if not items:
        return ""
    period = f"{(agg.first or '?')[:10]} .. {(agg.last or '?')[:10]}"
    lines = [
        "# SUGGESTED exemptions from `mailpolicy report` -- NOT applied, review before use.",
        f"# Period {period}, {len(agg.spans)} host(s). Each network below sent authenticated mail",
        "# (DMARC pass or aligned DKIM pass) that enforcing the policy would refuse. Exempting it",
        "# keeps that mail but also lets the network's unauthenticated mail through (numbers below).",
        "# Merge with any exempt_networks you already have for the policy.",
    ]
    by_policy: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_policy.setdefault(item["policy"], []).append(item)
    for name, rows in by_policy.items():
        ps = stats[name]
        kept = sum(r["authenticated_kept"] for r in rows)
        lines.append("")
        lines.append(f"[policies.{name}]")
        lines.append(
            f"# keeps {kept} of {ps.affected.tables().total[1]} authenticated transactions this policy"
            " refuses"
            f" or would refuse; lets {sum(r['unauthenticated_let_through'] for r in rows)}"
            " unauthenticated through"
        )
        lines.append("exempt_networks = [")
        for r in rows:
            names = ", ".join(r["client_names"][:3])
            lines.append(
                f'    "{r["network"]}",  # {r["authenticated_kept"]} authenticated kept,'
                f" {r['unauthenticated_let_through']} unauthenticated let through"
                + (f", {r['unknown_let_through']} without auth data" if r["unknown_let_through"] else "")
                + (f"; {_comment_safe(names)}" if names else "")
            )
        lines.append("]")
    return "\n".join(lines) + "\n"


def _comment_safe(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)
