"""Terminal rendering of the report document."""

from __future__ import annotations

from typing import Any

from mailpolicy.report import tables
from mailpolicy.report.tables import pct


def _table(headers: list[str], rows: list[list[Any]], indent: str = "  ") -> list[str]:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for n, r in enumerate(cells):
        parts = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        out.append(indent + "  ".join(parts).rstrip())
        if n == 0:
            out.append(indent + "  ".join("-" * w for w in widths))
    return out


def _t(table: tables.Table, indent: str = "    ") -> str:
    return "\n".join(_table(*table, indent))


def render(doc: dict[str, Any]) -> str:
    out: list[str] = []
    w = out.append
    inp = doc["input"]
    period = doc["period"]
    w("mailpolicy report: if I enforced these policies, which mail would I lose?")
    w(f"period {period['first'] or '-'} .. {period['last'] or '-'}   generated {doc['generated']}")
    f = doc["filters"]
    active = [
        f"{k}={v if not isinstance(v, list) else ','.join(v)}" for k, v in f.items() if v and k != "top"
    ]
    if active:
        w("filters: " + "  ".join(active))
    w("")
    w("== Input ==")
    w(
        f"  {inp['lines']} lines: {inp['events']} events, {inp['non_event_lines']} diagnostics (non-event)"
        f" lines, {inp['malformed_lines']} malformed, {inp['blank_lines']} blank,"
        f" {inp['filtered_out']} events filtered out"
    )
    if not inp["events"]:
        w("  NO EVENTS read: is this mailpolicy's JSON event log? (journalctl -u mailpolicy -o cat)")
    for s in inp["sources"]:
        err = f"  ERROR: {s['error']}" if s["error"] else ""
        w(f"  {s['name']}: {s['lines']} lines, {s['events']} events, {s['malformed']} malformed{err}")
    for ex in inp["malformed_examples"]:
        w(f"  malformed: {ex['source']} line {ex['line']}: {ex['error']}")
    if inp["unsupported_schema"]:
        for ver, n in inp["unsupported_schema"].items():
            w(
                f"  REFUSED: {n} events with event schema {ver}; this report reads schema"
                f" {doc['event_schema']} only: upgrade mailpolicy to read them"
            )
    for kind, n in inp["unknown_event_types"].items():
        w(f"  ignored: {n} events of unknown type {kind!r}")
    w("")
    w("== Hosts ==")
    w(_t(tables.hosts(doc), "  "))
    t = doc["totals"]
    outcomes = ", ".join(f"{k} {v}" for k, v in t["outcomes"].items())
    w(f"  total: {t['connections']} connections, {t['transactions']} transactions ({outcomes or 'none'})")
    w("")
    w("== Policies ==")
    w("  would refuse = monitor mode, action reject or tempfail (what enforce mode would do);")
    w("  refused = enforce mode, applied. Authenticated = DMARC pass or aligned DKIM pass.")
    w(_t(tables.policies(doc, compact=True), "  "))
    w("")
    c = doc["combined"]
    w("== Combined scenario: every monitor-mode policy enforced at once ==")
    ca = c["affected"]
    w(f"  policies switched: {', '.join(c['policies']) or '(none in monitor mode)'}")
    w(
        f"  lost: {c['lost']} of {c['transactions']} transactions ({pct(c['lost_share'])}),"
        " each counted once;"
        f" {ca['authenticated']} authenticated, {ca['unauthenticated']} unauthenticated,"
        f" {ca['unknown']} without authentication data"
    )
    w(
        f"  from {ca['clients']} clients in {ca['networks']} networks, {ca['sender_domains']} sender domains;"
        f" already refused by enforce mode: {c['already_refused']}"
    )
    if c["lost_by_policy"]:
        w(
            "  by policy (lost / lost only by it): "
            + ", ".join(
                f"{k} {v}/{c['lost_only_by_policy'].get(k, 0)}" for k, v in c["lost_by_policy"].items()
            )
        )
    if ca["transactions"]:
        _paths(ca, w)
    if ca["top_sender_domains"]:
        w("  top sender domains:")
        w(_t(tables.affected(ca["top_sender_domains"], "domain")))
        w("  top clients:")
        w(_t(tables.affected(ca["top_clients"], "client")))
    if c["daily"]:
        w("  daily:")
        w(
            "\n".join(
                _table(
                    ["date", "transactions", "lost", "share", "refused"],
                    [
                        [
                            d["date"],
                            d["transactions"],
                            d["lost"],
                            pct(d["lost"] / d["transactions"] if d["transactions"] else 0),
                            d["refused"],
                        ]
                        for d in c["daily"]
                    ],
                    "    ",
                )
            )
        )
    for p in doc["policies"]:
        w("")
        w(f"== Policy {p['name']} ==")
        w(
            f"  {p['transactions']} transactions; modes: "
            + ", ".join(f"{k} {v}" for k, v in p["modes"].items())
        )
        w("  results: " + ", ".join(f"{k} {v}" for k, v in p["results"].items()))
        if p["exempt"]:
            w("  exempt: " + ", ".join(f"{k} {v}" for k, v in p["exempt"].items()))
        if p["overrides"]:
            w(
                f"  overrides (local policy changed the action; in monitor mode, what it saved):"
                f" {tables.overrides(p)}"
            )
            if p["overrides_by"]:
                w(_t(tables.overrides_by(p)))
        w(
            f"  would reject {p['would_reject']}, would tempfail {p['would_tempfail']}"
            f" ({pct(p['would_refuse_share'])}), would quarantine {p['would_quarantine']};"
            f" refused in enforce mode: rejected {p['rejected']}, tempfailed {p['tempfailed']}"
        )
        a = p["affected"]
        if a["transactions"]:
            w(
                f"  affected: {a['transactions']} transactions ({a['authenticated']} authenticated, "
                f"{a['unauthenticated']} unauthenticated, {a['unknown']} no auth data), "
                f"{a['clients']} clients, "
                f"{a['networks']} networks, {a['sender_domains']} sender domains"
            )
            if p["name"] == "dmarc":
                _paths(a, w)
            elif a["paths"]["direct"]["transactions"] < a["transactions"]:
                w(f"  how it came: {tables.paths_line(a)}")
            w("  top sender domains:")
            w(_t(tables.affected(a["top_sender_domains"], "domain")))
            w("  top clients:")
            w(_t(tables.affected(a["top_clients"], "client")))
        if p["daily"]:
            w("  daily:")
            w(_t(tables.policy_daily(p)))
    w("")
    _tls(doc["tls"], w)
    w("")
    w("== Suggestions ==")
    if doc["suggestions_toml"]:
        if doc["suggestions"]:
            w("  Exemptions that would keep authenticated mail while enforcing (a suggestion, not applied).")
        else:
            w("  No exemption: no policy refuses or would refuse authenticated mail.")
        if doc["sealer_suggestions"]:
            w(
                "  Trusted ARC sealers that could keep forwarded mail failing DMARC (a suggestion, not"
                " applied; a trusted sealer can vouch for a spoof):"
            )
            w(_t(tables.sealer_suggestions(doc)))
        w("")
        w(doc["suggestions_toml"].rstrip("\n"))
    else:
        w(
            "  none: no policy refuses or would refuse authenticated mail, nor DMARC failures forwarded"
            " with a valid ARC chain."
        )
    return "\n".join(out) + "\n"


def _paths(a: dict[str, Any], w: Any) -> None:
    """How the affected mail came: a valid ARC chain (forwarded), else a List-Id, else direct."""
    w("  how it came (a valid ARC chain counts as forwarded, else a List-Id as a list, else direct):")
    w(_t(tables.paths(a)))
    p = a["paths"]
    if p["forwarded_arc"]["sealers"]:
        w(_t(tables.path_sealers(a)))
    if p["mailing_list"]["lists"]:
        w(_t(tables.path_lists(a)))


def _tls(tls: dict[str, Any], w: Any) -> None:
    w("== TLS ==")
    for kind in ("sessions", "transactions"):
        s = tls[kind]
        w(f"  {kind}: {s['total']}, plaintext {s['plaintext']} ({pct(s['plaintext_share'])})")
        w(_t(tables.tls_versions(s)))
    w("  session ciphers:")
    w(_t(tables.tls_ciphers(tls)))
    b = tls["below_tls12"]
    w(f"  below TLS 1.2: {b['clients']} clients, {b['sessions']} sessions, {b['transactions']} transactions")
    if b["top_clients"]:
        w(_t(tables.below_tls12(b)))
    for fl in tls["floor_simulation"]:
        t = fl["transactions"]
        lost = fl["with_require_starttls"]
        w(
            f"  raising the TLS floor to {fl['floor']}: {fl['sessions']} sessions and {t['transactions']}"
            f" transactions from {fl['clients']} clients would fail the handshake and fall back to plaintext"
            " (no mail lost by that alone);"
        )
        kept = ", ".join(f"{k} {v}" for k, v in lost["kept_by_exemption"].items()) or "none"
        w(
            f"    with require_starttls also enforced: {lost['lost']['transactions']} transactions lost"
            f" ({lost['lost']['authenticated']} authenticated) from {lost['lost_clients']} clients;"
            f" kept by require_starttls exemptions: {kept}"
        )
        if fl["top_clients"]:
            w(_t(tables.affected(fl["top_clients"], "client")))
