"""The report's words, numbers and tables, shared by the terminal and HTML renderers: each table
function returns ``(headers, rows)`` from the report document; the renderers only lay them out.

Human output says "message" for what the JSON counts as ``transactions`` (one SMTP transaction,
MAIL FROM to its end), formats counts with thousands separators and shares so that a small share
never reads as nothing (:func:`pct`)."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Any

from mailpolicy.report.aggregate import UNKNOWN_CLIENT

Table = tuple[list[str], list[list[Any]]]


def num(n: int) -> str:
    """``1,777``."""
    return f"{n:,}"


def pct(fraction: float) -> str:
    """A share as a percentage with one decimal, never rounded to a misleading end: ``0%`` only
    for a true zero, ``<0.1%`` below 0.1 %, ``>99.9%`` above 99.9 %, ``100%`` for all."""
    if fraction <= 0:
        return "0%"
    if fraction < 0.001:
        return "<0.1%"
    if fraction >= 1:
        return "100%"
    if fraction > 0.999:
        return ">99.9%"
    return f"{fraction * 100:.1f}%"


def share(part: int, whole: int) -> str:
    """``part`` of ``whole`` as :func:`pct` (``-`` when ``whole`` is 0). Computed from the counts,
    not from the JSON's rounded shares (a 6-decimal share of a huge total can round to 0)."""
    return pct(part / whole) if whole else "-"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 message``, ``2 messages``, ``1,777 policies``."""
    if n == 1:
        return f"1 {word}"
    if many is None:
        if word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u"):
            many = word[:-1] + "ies"
        elif word.endswith(("s", "x", "ch", "sh")):
            many = word + "es"
        else:
            many = word + "s"
    return f"{num(n)} {many}"


def msgs_rcpts(n: int, r: int) -> str:
    """``3 messages / 52 recipients``."""
    return f"{plural(n, 'message')} / {plural(r, 'recipient')}"


def _bare(name: str) -> str:
    text = name.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text.startswith("ipv6:"):
        text = text[5:]
    return text


def client_name(c: dict[str, Any]) -> str:
    """The client's name, or "" when it has none worth showing: no name, the MTA's ``unknown``, or
    its own address (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``) as an MTA names an address without
    a PTR record."""
    name = str(c.get("name") or "")
    ip = str(c["ip"])
    bare = _bare(name)
    if not bare or bare == "unknown" or bare == ip.lower():
        return ""
    try:
        if ipaddress.ip_address(bare) == ipaddress.ip_address(ip.strip("[]")):
            return ""
    except ValueError:
        pass
    return name


def client_ip(c: dict[str, Any]) -> str:
    """``[192.0.2.1]``; ``(unknown)`` for a transaction without a client address."""
    ip = str(c["ip"])
    return ip if ip == UNKNOWN_CLIENT else f"[{ip}]"


def client(c: dict[str, Any], width: int = 0) -> str:
    """``name [ip]``, or ``[ip]`` alone when there is no (other) name: the address is shown once,
    and always whole. ``width`` (when > 0) shortens a long name so that the label fits in that many
    characters, never the address (the name keeps at least 8)."""
    name, ip = client_name(c), client_ip(c)
    if width and len(name) + 1 + len(ip) > width:
        name = clip(name, max(8, width - 1 - len(ip)))
    return f"{name} {ip}" if name else ip


def clip(text: str, n: int) -> str:
    """``text`` cut to ``n`` characters with an ellipsis (for a sender domain in a chart)."""
    return text if len(text) <= n else text[: n - 1] + "…"


def names(items: list[str], shown: int = 2, total: int = 0, width: int = 40) -> str:
    """The first ``shown`` names (each cut to ``width``), then ``+N`` for the others of ``total``
    (at least the list's length)."""
    more = max(total, len(items)) - min(shown, len(items))
    text = ", ".join(clip(n, width) for n in items[:shown])
    return f"{text} +{more}" if more > 0 else text


def affected(items: list[dict[str, Any]], key: str) -> Table:
    """Top senders (``key`` "domain") or clients (``key`` "client") split by authentication."""
    return (
        [key, "messages", "recipients", "authenticated", "unauthenticated", "no auth data"],
        [
            [
                it[key] if key != "client" else client(it),
                num(it["transactions"]),
                num(it["recipients"]),
                num(it["authenticated"]),
                num(it["unauthenticated"]),
                num(it["unknown"]),
            ]
            for it in items
        ],
    )


def hosts(doc: dict[str, Any]) -> Table:
    return (
        [
            "host",
            "connections",
            "messages",
            "recipients",
            "refused",
            "would lose",
            "recipients",
            "first",
            "last",
        ],
        [
            [
                h["host"],
                num(h["connections"]),
                num(h["transactions"]),
                num(h["recipients"]),
                num(h["refused"]),
                num(h["would_lose"]),
                num(h["would_lose_recipients"]),
                h["first"],
                h["last"],
            ]
            for h in doc["hosts"]
        ],
    )


def policy_daily(p: dict[str, Any]) -> Table:
    return (
        ["date", "messages", "recipients", "would refuse", "recipients", "refused", "recipients"],
        [
            [
                d["date"],
                num(d["transactions"]),
                num(d["recipients"]),
                num(d["would_refuse"]),
                num(d["would_refuse_recipients"]),
                num(d["refused"]),
                num(d["refused_recipients"]),
            ]
            for d in p["daily"]
        ],
    )


def combined_daily(c: dict[str, Any]) -> Table:
    return (
        ["date", "messages", "recipients", "lost", "recipients", "share", "refused"],
        [
            [
                d["date"],
                num(d["transactions"]),
                num(d["recipients"]),
                num(d["lost"]),
                num(d["lost_recipients"]),
                share(d["lost"], d["transactions"]),
                num(d["refused"]),
            ]
            for d in c["daily"]
        ],
    )


def daily_matrix(doc: dict[str, Any]) -> Table:
    """One row per day, messages / recipients: lost in the combined scenario ("all"), then what
    each policy would refuse, or refused ("NAME (refused)", enforce mode): the numbers behind the
    per-day lines."""
    series = daily_series(doc)
    return (
        ["date", *(s.column for s in series)],
        [
            [day, *(f"{num(s.values[i])} / {num(s.recipients[i])}" for s in series)]
            for i, day in enumerate(series[0].dates)
        ],
    )


def tls_versions(section: dict[str, Any]) -> Table:
    return (
        ["version", "count", "share"],
        [[v["version"], num(v["count"]), share(v["count"], section["total"])] for v in section["by_version"]],
    )


def tls_ciphers(tls: dict[str, Any], limit: int = 15) -> Table:
    total = tls["sessions"]["total"]
    return (
        ["version", "cipher", "sessions", "share"],
        [
            [c["version"], c["cipher"] or "-", num(c["count"]), share(c["count"], total)]
            for c in tls["sessions"]["by_cipher"][:limit]
        ],
    )


def below_tls12(below: dict[str, Any]) -> Table:
    return (
        ["client", "versions", "sessions", "messages"],
        [
            [client(c), ", ".join(c["versions"]), num(c["sessions"]), num(c["transactions"])]
            for c in below["top_clients"]
        ],
    )


def modes(p: dict[str, Any]) -> str:
    return "/".join(p["modes"])


def answer(doc: dict[str, Any], mode: bool = True) -> Table:
    """The per-policy table that opens the report: what each policy would refuse (monitor mode) or
    refused (enforce mode), in messages and recipients, the authenticated part, and what only it
    would lose in the combined scenario."""
    c = doc["combined"]
    only, only_r = c["lost_only_by_policy"], c["lost_recipients_only_by_policy"]
    return (
        [
            "policy",
            *(["mode"] if mode else []),
            "messages",
            "would refuse",
            "share",
            "recipients",
            "authenticated",
            "only by it",
            "refused",
            "recipients",
        ],
        [
            [
                p["name"],
                *([modes(p)] if mode else []),
                num(p["transactions"]),
                num(p["would_refuse"]),
                share(p["would_refuse"], p["transactions"]),
                num(p["would_refuse_recipients"]),
                num(p["affected"]["authenticated"]),
                f"{num(only.get(p['name'], 0))} / {num(only_r.get(p['name'], 0))}",
                num(p["refused"]),
                num(p["refused_recipients"]),
            ]
            for p in doc["policies"]
        ],
    )


def policies(doc: dict[str, Any]) -> Table:
    """Who each policy affects: one row per policy."""
    return (
        [
            "policy",
            "affected messages",
            "recipients",
            "authenticated",
            "clients",
            "networks",
            "sender domains",
        ],
        [
            [
                p["name"],
                num(p["affected"]["transactions"]),
                num(p["affected"]["recipients"]),
                num(p["affected"]["authenticated"]),
                num(p["affected"]["clients"]),
                num(p["affected"]["networks"]),
                num(p["affected"]["sender_domains"]),
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
        "forwarded_arc": plural(p["forwarded_arc"]["distinct_sealers"], "sealer"),
        "mailing_list": plural(p["mailing_list"]["distinct_lists"], "list"),
        "direct": "",
    }
    return (
        ["path", "messages", "recipients", "share", "named"],
        [
            [
                label,
                num(p[k]["transactions"]),
                num(p[k]["recipients"]),
                share(p[k]["transactions"], total),
                named[k],
            ]
            for k, label in PATH_LABELS.items()
        ],
    )


PATH_SHORT = {"forwarded_arc": "forwarded (valid ARC)", "mailing_list": "list", "direct": "direct"}


def paths_line(a: dict[str, Any], short: bool = False) -> str:
    """``forwarded with a valid ARC chain 3, mailing list (List-Id) 2, direct 10`` (``short``:
    ``forwarded (valid ARC) 3, list 2, direct 10``)."""
    labels = PATH_SHORT if short else PATH_LABELS
    return ", ".join(f"{label} {num(a['paths'][k]['transactions'])}" for k, label in labels.items())


def path_sealers(a: dict[str, Any]) -> Table:
    fa = a["paths"]["forwarded_arc"]
    return (
        [
            _bounded("sealer (newest ARC set)", len(fa["sealers"]), fa["distinct_sealers"]),
            "messages",
            "recipients",
        ],
        [[s["sealer"], num(s["transactions"]), num(s["recipients"])] for s in fa["sealers"]],
    )


def path_lists(a: dict[str, Any]) -> Table:
    ml = a["paths"]["mailing_list"]
    return (
        [_bounded("list id", len(ml["lists"]), ml["distinct_lists"]), "messages", "recipients"],
        [[x["list_id"], num(x["transactions"]), num(x["recipients"])] for x in ml["lists"]],
    )


def _bounded(label: str, shown: int, distinct: int) -> str:
    return f"{label}, top {shown} of {distinct}" if distinct > shown else label


def overrides(p: dict[str, Any]) -> str:
    """``trusted_forwarder 3, local_policy 1``: the policy's decisions by override reason."""
    return ", ".join(f"{k} {num(v)}" for k, v in p["overrides"].items())


def overrides_by(p: dict[str, Any]) -> Table:
    return (
        ["override", "by (network, sealer or list)", "messages", "recipients"],
        [[o["override"], o["by"], num(o["transactions"]), num(o["recipients"])] for o in p["overrides_by"]],
    )


def suggestions(doc: dict[str, Any]) -> Table:
    return (
        [
            "policy",
            "network",
            "affected",
            "authenticated kept",
            "recipients",
            "unauthenticated let through",
            "clients",
        ],
        [
            [
                s["policy"],
                s["network"],
                num(s["affected"]),
                num(s["authenticated_kept"]),
                num(s["authenticated_recipients_kept"]),
                num(s["unauthenticated_let_through"]),
                names([_bracket(n) for n in s["client_names"]]),
            ]
            for s in doc["suggestions"]
        ],
    )


def _bracket(name: str) -> str:
    """A client name that is an address (a client without a name) as ``[ip]``."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    return f"[{name}]"


def sealer_suggestions(doc: dict[str, Any]) -> Table:
    return (
        ["sealer", "would keep at most", "recipients", "sender domains", "earlier sealers"],
        [
            [
                s["sealer"],
                num(s["transactions"]),
                num(s["recipients"]),
                names(s["sender_domain_names"], 3, s["sender_domains"]),
                names(s["earlier_sealers"], 3),
            ]
            for s in doc["sealer_suggestions"]
        ],
    )


MIN_SCALE = 10
"""The smallest full scale of a chart or sparkline: a count of 1 never fills it."""
SPARKS = "▁▂▃▄▅▆▇█"
NO_SPARK = "·"  # a day with nothing


def scale(peak: float) -> float:
    """The full scale for values up to ``peak``: at least :data:`MIN_SCALE`, else ``peak``."""
    return max(float(peak), float(MIN_SCALE))


@dataclass(frozen=True)
class Series:
    """One line of the per-day small multiples: what the combined scenario would lose, or what one
    policy would refuse (monitor mode) or refused (enforce mode), per day of the report."""

    label: str
    kind: str  # "lost", "would refuse", "refused"
    dates: list[str]
    values: list[int]
    recipients: list[int]

    @property
    def column(self) -> str:
        """The series' short name: ``all``, ``spf``, ``dmarc (refused)``."""
        if self.kind == "lost":
            return "all"
        return self.label if self.kind == "would refuse" else f"{self.label} ({self.kind})"

    @property
    def total(self) -> int:
        return sum(self.values)

    @property
    def total_recipients(self) -> int:
        return sum(self.recipients)

    @property
    def peak(self) -> int:
        return max(self.values, default=0)

    @property
    def peak_date(self) -> str:
        return self.dates[self.values.index(self.peak)] if self.values else ""

    def peak_text(self) -> str:
        """``peak 1,777 on 2026-11-23`` (``none`` when every day is 0)."""
        if not self.peak:
            return "none"
        return f"peak {num(self.peak)} on {self.peak_date}"

    def spark(self) -> str:
        """The series as text: one block character per day on :func:`scale` (a day with nothing
        as ``·``)."""
        full = scale(self.peak)
        return "".join(
            SPARKS[min(len(SPARKS) - 1, max(0, math.ceil(v / full * len(SPARKS)) - 1))] if v else NO_SPARK
            for v in self.values
        )


def daily_series(doc: dict[str, Any]) -> list[Series]:
    """The combined loss, then per policy (in the report's order) what it would refuse and what it
    refused, when not nothing; every series over the same days (the report's)."""
    dates = [d["date"] for d in doc["combined"]["daily"]]
    out = [
        Series(
            "all monitor-mode policies",
            "lost",
            dates,
            [d["lost"] for d in doc["combined"]["daily"]],
            [d["lost_recipients"] for d in doc["combined"]["daily"]],
        )
    ]
    for p in doc["policies"]:
        by_day = {d["date"]: d for d in p["daily"]}
        for kind, key in (("would refuse", "would_refuse"), ("refused", "refused")):
            if p[key]:
                out.append(
                    Series(
                        p["name"],
                        kind,
                        dates,
                        [by_day[d][key] if d in by_day else 0 for d in dates],
                        [by_day[d][key + "_recipients"] if d in by_day else 0 for d in dates],
                    )
                )
    return out
