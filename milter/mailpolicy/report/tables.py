"""The report's tables, shared by the terminal and HTML renderers: each function returns
``(headers, rows)`` from the report document; the renderers only lay them out."""

from __future__ import annotations

from typing import Any

Table = tuple[list[str], list[list[Any]]]


def pct(share: float) -> str:
    return f"{share * 100:.1f}%" if share else "0%"


def client(c: dict[str, Any]) -> str:
    """``name [ip]``, or just the IP when there is no (other) name."""
    name = c.get("name") or ""
    return f"{name} [{c['ip']}]" if name and name != c["ip"] else str(c["ip"])


def affected(items: list[dict[str, Any]], key: str) -> Table:
    """Top senders (``key`` "domain") or clients (``key`` "client") split by authentication."""
    return (
        [key, "transactions", "authenticated", "unauthenticated", "no auth data"],
        [
            [
                it[key] if key != "client" else client(it),
                it["transactions"],
                it["authenticated"],
                it["unauthenticated"],
                it["unknown"],
            ]
            for it in items
        ],
    )


def hosts(doc: dict[str, Any]) -> Table:
    return (
        ["host", "connections", "transactions", "refused", "would lose", "first", "last"],
        [
            [
                h["host"],
                h["connections"],
                h["transactions"],
                h["refused"],
                h["would_lose"],
                h["first"],
                h["last"],
            ]
            for h in doc["hosts"]
        ],
    )


def policy_daily(p: dict[str, Any]) -> Table:
    return (
        ["date", "transactions", "would refuse", "refused"],
        [[d["date"], d["transactions"], d["would_refuse"], d["refused"]] for d in p["daily"]],
    )


def tls_versions(section: dict[str, Any]) -> Table:
    return (
        ["version", "count", "share"],
        [[v["version"], v["count"], pct(v["share"])] for v in section["by_version"]],
    )


def tls_ciphers(tls: dict[str, Any], limit: int = 15) -> Table:
    return (
        ["version", "cipher", "count", "share"],
        [
            [c["version"], c["cipher"] or "-", c["count"], pct(c["share"])]
            for c in tls["sessions"]["by_cipher"][:limit]
        ],
    )


def below_tls12(below: dict[str, Any]) -> Table:
    return (
        ["client", "versions", "sessions", "transactions"],
        [
            [client(c), ", ".join(c["versions"]), c["sessions"], c["transactions"]]
            for c in below["top_clients"]
        ],
    )


def policies(doc: dict[str, Any], compact: bool = False) -> Table:
    """One row per policy. ``compact``: shorter headers for a terminal."""
    refused, auth = (
        ("refused", "affected auth") if compact else ("refused (enforce)", "affected authenticated")
    )
    return (
        [
            "policy",
            "mode",
            "transactions",
            "would reject",
            "would tempfail",
            "share",
            refused,
            auth,
            "clients",
            "networks",
            "domains",
        ],
        [
            [
                p["name"],
                "/".join(p["modes"]),
                p["transactions"],
                p["would_reject"],
                p["would_tempfail"],
                pct(p["would_refuse_share"]),
                p["refused"],
                p["affected"]["authenticated"],
                p["affected"]["clients"],
                p["affected"]["networks"],
                p["affected"]["sender_domains"],
            ]
            for p in doc["policies"]
        ],
    )


PATH_LABELS = {
    "forwarded_arc": "forwarded with a valid ARC chain",
    "mailing_list": "mailing list (List-Id)",
    "direct": "direct",
}
"""AFFECTED.paths keys, as the renderers name them."""


def paths(a: dict[str, Any]) -> Table:
    """How the affected mail came: one row per path, with its share of the affected mail and how
    many sealers or lists it names."""
    p, total = a["paths"], a["transactions"]
    named = {
        "forwarded_arc": f"{p['forwarded_arc']['distinct_sealers']} sealers",
        "mailing_list": f"{p['mailing_list']['distinct_lists']} lists",
        "direct": "",
    }
    return (
        ["path", "transactions", "share", "named"],
        [
            [label, p[k]["transactions"], pct(p[k]["transactions"] / total if total else 0), named[k]]
            for k, label in PATH_LABELS.items()
        ],
    )


def paths_line(a: dict[str, Any]) -> str:
    """``forwarded with a valid ARC chain 3, mailing list (List-Id) 2, direct 10``."""
    return ", ".join(f"{label} {a['paths'][k]['transactions']}" for k, label in PATH_LABELS.items())


def path_sealers(a: dict[str, Any]) -> Table:
    fa = a["paths"]["forwarded_arc"]
    return (
        [_bounded("sealer (newest ARC set)", len(fa["sealers"]), fa["distinct_sealers"]), "transactions"],
        [[s["sealer"], s["transactions"]] for s in fa["sealers"]],
    )


def path_lists(a: dict[str, Any]) -> Table:
    ml = a["paths"]["mailing_list"]
    return (
        [_bounded("list id", len(ml["lists"]), ml["distinct_lists"]), "transactions"],
        [[x["list_id"], x["transactions"]] for x in ml["lists"]],
    )


def _bounded(label: str, shown: int, distinct: int) -> str:
    return f"{label}, top {shown} of {distinct}" if distinct > shown else label


def overrides(p: dict[str, Any]) -> str:
    """``trusted_forwarder 3, local_policy 1``: the policy's decisions by override reason."""
    return ", ".join(f"{k} {v}" for k, v in p["overrides"].items())


def overrides_by(p: dict[str, Any]) -> Table:
    return (
        ["override", "by (network, sealer or list)", "transactions"],
        [[o["override"], o["by"], o["transactions"]] for o in p["overrides_by"]],
    )


def sealer_suggestions(doc: dict[str, Any]) -> Table:
    return (
        ["sealer", "would keep at most", "sender domains", "earlier sealers"],
        [
            [
                s["sealer"],
                s["transactions"],
                ", ".join(s["sender_domain_names"])
                + (" ..." if s["sender_domains"] > len(s["sender_domain_names"]) else ""),
                ", ".join(s["earlier_sealers"]),
            ]
            for s in doc["sealer_suggestions"]
        ],
    )
