"""One self-contained HTML page: inline CSS and inline SVG charts drawn here, no script, no
external resource (it must open on an offline admin workstation). Every value taken from the logs
(domains, host names, client names) is attacker-influenced and is escaped."""

from __future__ import annotations

from html import escape
from typing import Any

from mailpolicy.report import tables
from mailpolicy.report.tables import client as _client
from mailpolicy.report.tables import pct

VERSION_COLOURS = {
    "TLSv1.3": "#1b7f3b",
    "TLSv1.2": "#6cbf5a",
    "TLSv1.1": "#f0a030",
    "TLSv1": "#e06020",
    "SSLv3": "#b02020",
    "SSLv2": "#801010",
    "unknown": "#9e9e9e",
    "plaintext": "#c62828",
}
SERIES = ["#1f5fa8", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#5c940d", "#e67700", "#0b7285"]
AUTH_COLOURS = (("authenticated", "#c62828"), ("unauthenticated", "#adb5bd"), ("unknown", "#e9ecef"))
PATH_COLOURS = {"forwarded_arc": "#1971c2", "mailing_list": "#9c36b5", "direct": "#ced4da"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#212529;
  background:#f6f7f9}
header{background:#1f2a37;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cbd5e1}
main{padding:16px 32px 48px;max-width:1200px}
section{background:#fff;border:1px solid #dee2e6;border-radius:8px;padding:16px 20px;margin:16px 0;
  overflow-x:auto}
h2{font-size:18px;margin:0 0 10px}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #e9ecef;text-align:right;white-space:nowrap}
th{background:#f1f3f5;font-weight:600;white-space:normal}
td:first-child,th:first-child{text-align:left}
.kpis{display:flex;flex-wrap:wrap;gap:12px}
.kpi{border:1px solid #dee2e6;border-radius:8px;padding:10px 14px;min-width:140px;background:#fbfcfd}
.kpi b{display:block;font-size:22px}
.kpi span{color:#6c757d;font-size:12px}
.bad b{color:#c62828}
.warn{background:#fff4e5;border:1px solid #f0a030;border-radius:6px;padding:8px 12px;margin:8px 0}
.note{color:#6c757d;font-size:12px}
pre{background:#1f2a37;color:#e9ecef;padding:12px 14px;border-radius:6px;overflow-x:auto;font-size:12px}
svg text{font:12px system-ui,sans-serif;fill:#343a40}
svg .axis{stroke:#adb5bd}
svg .grid{stroke:#e9ecef}
.cols{display:flex;flex-wrap:wrap;gap:0 28px;align-items:flex-start}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:11px;height:11px;margin-right:4px;vertical-align:-1px;border-radius:2px}
"""


def e(value: Any) -> str:
    return escape(str(value), quote=True)


def _legend(items: list[tuple[str, str]]) -> str:
    return (
        '<div class="legend">'
        + "".join(f'<span><i style="background:{c}"></i>{e(label)}</span>' for label, c in items)
        + "</div>"
    )


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = 10 ** (len(str(int(v))) - 1)
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * mag >= v:
            return float(step * mag)
    return float(10 * mag)


def _date_labels(dates: list[str], x_of: Any, y: float) -> list[str]:
    every = max(1, len(dates) // 12)
    return [
        f'<text x="{x_of(i):.1f}" y="{y}" text-anchor="middle">{e(d[5:])}</text>'
        for i, d in enumerate(dates)
        if i % every == 0 or i == len(dates) - 1
    ]


def tls_chart(daily: list[dict[str, Any]], chart_id: str = "chart-tls") -> str:
    """100 % stacked bars: share of sessions by TLS version per day."""
    width, height, left, bottom, top = 1000, 260, 48, 28, 10
    if not daily:
        return '<p class="note">No connection events.</p>'
    versions: list[str] = []
    for d in daily:
        for v in d["versions"]:
            if v not in versions:
                versions.append(v)
    order = [v for v in VERSION_COLOURS if v in versions] + [v for v in versions if v not in VERSION_COLOURS]
    n = len(daily)
    plot_w, plot_h = width - left - 10, height - bottom - top
    bw = plot_w / n
    parts = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        'aria-label="TLS versions over time" xmlns="http://www.w3.org/2000/svg">'
    ]
    for frac in (0, 0.25, 0.5, 0.75, 1):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{int(frac * 100)}%</text>')
    for i, d in enumerate(daily):
        total = sum(d["versions"].values()) or 1
        y = top + plot_h
        for v in order:
            count = d["versions"].get(v, 0)
            if not count:
                continue
            h = plot_h * count / total
            y -= h
            colour = VERSION_COLOURS.get(v, "#495057")
            parts.append(
                f'<rect class="bar" x="{left + i * bw + bw * 0.1:.1f}" y="{y:.1f}" width="{bw * 0.8:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{e(d["date"])} {e(v)}: {count} sessions '
                f"({pct(count / total)})</title></rect>"
            )
    parts += _date_labels([d["date"] for d in daily], lambda i: left + i * bw + bw / 2, height - 8)
    parts.append("</svg>")
    return "".join(parts) + _legend([(v, VERSION_COLOURS.get(v, "#495057")) for v in order])


def line_chart(
    dates: list[str],
    series: list[tuple[str, list[float], str, bool]],
    chart_id: str,
    label: str,
    percent: bool = False,
) -> str:
    """Lines over days; each series is (name, values, colour, dashed)."""
    width, height, left, bottom, top = 1000, 260, 56, 28, 12
    if not dates or not series:
        return '<p class="note">No data.</p>'
    vmax = max(max(s[1]) for s in series)
    vmax = _nice_max(vmax * 100) / 100 if percent else _nice_max(vmax)
    plot_w, plot_h = width - left - 10, height - bottom - top
    n = len(dates)

    def x_of(i: int) -> float:
        return left + (plot_w * (i + 0.5) / n)

    def y_of(v: float) -> float:
        return top + plot_h * (1 - v / vmax)

    def fmt(v: float) -> str:
        return f"{v * 100:.3g}%" if percent else f"{v:g}"

    parts = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{e(label)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for k in range(5):
        v = vmax * k / 4
        y = y_of(v)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(v)}</text>')
    for name, values, colour, dashed in series:
        pts = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(values))
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        parts.append(
            f'<polyline class="series" points="{pts}" fill="none" stroke="{colour}" stroke-width="2.5"{dash}>'
            f"<title>{e(name)}</title></polyline>"
        )
        for i, v in enumerate(values):
            parts.append(
                f'<circle cx="{x_of(i):.1f}" cy="{y_of(v):.1f}" r="3" fill="{colour}">'
                f"<title>{e(dates[i])} {e(name)}: {fmt(v)}</title></circle>"
            )
    parts += _date_labels(dates, x_of, height - 8)
    parts.append("</svg>")
    return "".join(parts) + _legend([(s[0], s[2]) for s in series])


def policy_chart(doc: dict[str, Any], chart_id: str = "chart-policies") -> str:
    """Transactions each monitor-mode policy would refuse per day, and the combined loss."""
    dates = [d["date"] for d in doc["combined"]["daily"]]
    series: list[tuple[str, list[float], str, bool]] = []
    for i, p in enumerate(doc["policies"]):
        by_day = {d["date"]: d["would_refuse"] for d in p["daily"]}
        values: list[float] = [by_day.get(day, 0) for day in dates]
        if any(values):
            series.append((p["name"], values, SERIES[i % len(SERIES)], False))
    lost: list[float] = [d["lost"] for d in doc["combined"]["daily"]]
    series.append(
        ("all monitor-mode policies enforced at once (each transaction once)", lost, "#212529", True)
    )
    return line_chart(dates, series, chart_id, "Would-be refused transactions per policy per day")


def enforced_chart(doc: dict[str, Any], chart_id: str = "chart-enforced") -> str:
    """Transactions refused per day by policies already in enforce mode."""
    dates = [d["date"] for d in doc["combined"]["daily"]]
    series: list[tuple[str, list[float], str, bool]] = []
    for i, p in enumerate(doc["policies"]):
        by_day = {d["date"]: d["refused"] for d in p["daily"]}
        values: list[float] = [by_day.get(day, 0) for day in dates]
        if any(values):
            series.append((p["name"], values, SERIES[i % len(SERIES)], False))
    if not series:
        return ""
    return line_chart(dates, series, chart_id, "Transactions refused by enforce-mode policies per day")


def legacy_tls_chart(daily: list[dict[str, Any]], chart_id: str = "chart-tls-legacy") -> str:
    """Zoom on what is not TLS 1.3: share of sessions per day for each other version."""
    dates = [d["date"] for d in daily]
    names = [v for v in VERSION_COLOURS if v != "TLSv1.3" and any(d["versions"].get(v) for d in daily)]
    series: list[tuple[str, list[float], str, bool]] = []
    for v in names:
        values = [d["versions"].get(v, 0) / (sum(d["versions"].values()) or 1) for d in daily]
        series.append((v, values, VERSION_COLOURS[v], v == "plaintext"))
    if not series:
        return '<p class="note">Every session used TLS 1.3.</p>'
    return line_chart(dates, series, chart_id, "Share of sessions not on TLS 1.3, per day", percent=True)


def senders_chart(items: list[dict[str, Any]], key: str, chart_id: str) -> str:
    """Horizontal stacked bars: affected transactions per sender, authenticated first."""
    if not items:
        return '<p class="note">Nothing affected.</p>'
    width, row_h, left, right = 1000, 24, 260, 70
    height = row_h * len(items) + 10
    vmax = max(it["transactions"] for it in items) or 1
    plot_w = width - left - right
    parts = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        'aria-label="Top affected senders" xmlns="http://www.w3.org/2000/svg">'
    ]
    for r, it in enumerate(items):
        y = 5 + r * row_h
        label = it[key] if key != "client" else _client(it)
        if len(label) > 38:
            label = label[:37] + "…"
        parts.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{e(label)}</text>')
        x = float(left)
        for field, colour in AUTH_COLOURS:
            v = it[field]
            if not v:
                continue
            w = plot_w * v / vmax
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" '
                f'fill="{colour}">'
                f"<title>{e(label)}: {v} {field}</title></rect>"
            )
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 16}">{it["transactions"]}</text>')
    parts.append("</svg>")
    return "".join(parts) + _legend(
        [
            ("authenticated (mail you would really lose)", AUTH_COLOURS[0][1]),
            ("unauthenticated", AUTH_COLOURS[1][1]),
            ("no authentication data", "#ced4da"),
        ]
    )


def paths_chart(a: dict[str, Any], chart_id: str) -> str:
    """One bar split by how the affected mail came: forwarded (valid ARC chain), list, direct."""
    total = a["transactions"]
    if not total:
        return ""
    width, height, left, right = 1000, 34, 10, 10
    plot_w = width - left - right
    parts = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        'aria-label="How the affected mail came" xmlns="http://www.w3.org/2000/svg">'
    ]
    x = float(left)
    for key, label in tables.PATH_LABELS.items():
        n = a["paths"][key]["transactions"]
        if not n:
            continue
        w = plot_w * n / total
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="4" width="{w:.1f}" height="{height - 8}" '
            f'fill="{PATH_COLOURS[key]}"><title>{e(label)}: {n} ({pct(n / total)})</title></rect>'
        )
        x += w
    parts.append("</svg>")
    return "".join(parts) + _legend([(label, PATH_COLOURS[k]) for k, label in tables.PATH_LABELS.items()])


def paths_block(a: dict[str, Any], chart_id: str, what: str) -> str:
    """AFFECTED.paths: the bar, the three counts, the top sealers and list ids."""
    if not a["transactions"]:
        return ""
    p = a["paths"]
    out = [
        f"<h3>How the {e(what)} came</h3>",
        '<p class="note">A transaction with a valid ARC chain (<code>arc=pass</code>) counts as forwarded,'
        " named by its newest sealer; else one with a List-Id as list mail; else as direct.</p>",
        paths_chart(a, chart_id),
        table(*tables.paths(a)),
        '<div class="cols">',
    ]
    if p["forwarded_arc"]["sealers"]:
        out.append(table(*tables.path_sealers(a)))
    if p["mailing_list"]["lists"]:
        out.append(table(*tables.path_lists(a)))
    out.append("</div>")
    return "".join(out)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _auth_table(items: list[dict[str, Any]], key: str) -> str:
    return table(*tables.affected(items, key))


def kpi(label: str, value: Any, sub: str = "", bad: bool = False) -> str:
    cls = "kpi bad" if bad else "kpi"
    return f'<div class="{cls}"><span>{e(label)}</span><b>{e(value)}</b><span>{e(sub)}</span></div>'


def render(doc: dict[str, Any]) -> str:
    inp, comb, tls = doc["input"], doc["combined"], doc["tls"]
    period = doc["period"]
    ca = comb["affected"]
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'; "
        'img-src data:">',
        "<title>mailpolicy report</title>",
        f"<style>{CSS}</style></head><body>",
        "<header><h1>mailpolicy report: which mail would enforcing lose?</h1>",
        f"<p>{e(period['first'] or '-')} .. {e(period['last'] or '-')} &middot; {len(doc['hosts'])} host(s)"
        f" &middot; generated {e(doc['generated'])} &middot; report schema {doc['report_schema']}"
        "</p></header>",
        "<main>",
    ]
    w = out.append
    if inp["unsupported_schema"] or inp["malformed_lines"] or any(s["error"] for s in inp["sources"]):
        msgs = [
            f"Refused {n} events with event schema {e(v)} (this report reads schema {doc['event_schema']}"
            "; upgrade mailpolicy to read them)."
            for v, n in inp["unsupported_schema"].items()
        ]
        if inp["malformed_lines"]:
            msgs.append(f"{inp['malformed_lines']} malformed or truncated lines were skipped.")
        msgs += [f"{e(s['name'])}: {e(s['error'])}" for s in inp["sources"] if s["error"]]
        w('<div class="warn">' + "<br>".join(msgs) + "</div>")
    # Summary
    w('<section id="summary"><h2>If every monitor-mode policy were enforced</h2><div class="kpis">')
    w(kpi("transactions seen", comb["transactions"]))
    w(kpi("would be lost", comb["lost"], pct(comb["lost_share"]), bad=comb["lost"] > 0))
    w(kpi("of which authenticated", ca["authenticated"], "really lost mail", bad=ca["authenticated"] > 0))
    w(kpi("clients / networks", f"{ca['clients']} / {ca['networks']}", "affected"))
    w(kpi("sender domains", ca["sender_domains"], "affected"))
    w(kpi("plaintext sessions", pct(tls["sessions"]["plaintext_share"]), f"{tls['sessions']['plaintext']}"))
    w("</div>")
    w(
        f'<p class="note">Policies switched to enforce: {e(", ".join(comb["policies"]) or "none")}. '
        "A transaction counts once even when several policies would refuse it. Already refused by enforce "
        f"mode: {comb['already_refused']}. How the lost mail came: {e(tables.paths_line(ca))}.</p>"
    )
    w(table(*tables.policies(doc)))
    w("</section>")
    w('<section id="trend"><h2>Would be refused per policy, per day (monitor mode)</h2>')
    w(policy_chart(doc))
    enforced = enforced_chart(doc)
    if enforced:
        w("<h3>Refused per day by policies already in enforce mode</h3>")
        w(enforced)
    w("</section>")
    w('<section id="senders"><h2>Top affected senders (combined scenario)</h2>')
    w(senders_chart(ca["top_sender_domains"], "domain", "chart-senders"))
    w("<h3>By client</h3>")
    w(senders_chart(ca["top_clients"], "client", "chart-clients"))
    w(paths_block(ca, "chart-paths", "lost mail"))
    w("</section>")
    # TLS
    w('<section id="tls"><h2>TLS</h2>')
    w("<h3>Sessions by TLS version, per day</h3>")
    w(tls_chart(tls["daily_sessions"]))
    w("<h3>Zoom: sessions not on TLS 1.3 (share per day)</h3>")
    w(legacy_tls_chart(tls["daily_sessions"]))
    for kind in ("sessions", "transactions"):
        s = tls[kind]
        w(
            f"<h3>{kind.capitalize()}: {s['total']}, plaintext {s['plaintext']}"
            f" ({pct(s['plaintext_share'])})</h3>"
        )
        w(table(*tables.tls_versions(s)))
    w("<h3>Session ciphers</h3>")
    w(table(*tables.tls_ciphers(tls)))
    b = tls["below_tls12"]
    w(
        f"<h3>Below TLS 1.2: {b['clients']} clients, {b['sessions']} sessions,"
        f" {b['transactions']} transactions</h3>"
    )
    w(table(*tables.below_tls12(b)))
    for fl in tls["floor_simulation"]:
        lost = fl["with_require_starttls"]
        kept = ", ".join(f"{k} {v}" for k, v in lost["kept_by_exemption"].items()) or "none"
        w(f"<h3>Raising the TLS floor to {e(fl['floor'])}</h3>")
        w(
            f"<p>{fl['sessions']} sessions and {fl['transactions']['transactions']} transactions from "
            f"{fl['clients']} clients would fail the handshake and fall back to plaintext: no mail is "
            "lost by that alone. <b>With require_starttls also enforced, "
            f"{lost['lost']['transactions']} transactions ({lost['lost']['authenticated']} authenticated)"
            f" from {lost['lost_clients']} clients would be lost"
            f"</b>; kept by require_starttls exemptions: {e(kept)}.</p>"
        )
        w(_auth_table(fl["top_clients"], "client"))
    w("</section>")
    # Per policy
    for p in doc["policies"]:
        a = p["affected"]
        w(f'<section id="policy-{e(p["name"])}"><h2>Policy {e(p["name"])}</h2>')
        w(
            f"<p>{p['transactions']} transactions; modes "
            + e(", ".join(f"{k} {v}" for k, v in p["modes"].items()))
            + "; results "
            + e(", ".join(f"{k} {v}" for k, v in p["results"].items()))
            + ("; exempt " + e(", ".join(f"{k} {v}" for k, v in p["exempt"].items())) if p["exempt"] else "")
            + f". Would reject {p['would_reject']}, would tempfail {p['would_tempfail']} "
            f"({pct(p['would_refuse_share'])}); refused in enforce mode {p['refused']}.</p>"
        )
        if p["overrides"]:
            w(
                f"<p>Overrides (local policy changed the action; in monitor mode, what it saved): "
                f"{e(tables.overrides(p))}.</p>"
            )
            if p["overrides_by"]:
                w(table(*tables.overrides_by(p)))
        if a["transactions"]:
            w(senders_chart(a["top_sender_domains"], "domain", f"chart-policy-{e(p['name'])}"))
            w(_auth_table(a["top_sender_domains"], "domain"))
            w(_auth_table(a["top_clients"], "client"))
            if p["name"] == "dmarc":
                w(paths_block(a, "chart-paths-dmarc", "affected mail"))
            elif a["paths"]["direct"]["transactions"] < a["transactions"]:
                w(f"<p>How it came: {e(tables.paths_line(a))}.</p>")
        if p["daily"]:
            w(table(*tables.policy_daily(p)))
        w("</section>")
    # Suggestions
    w('<section id="suggestions"><h2>Suggested exemptions and trusted ARC sealers</h2>')
    if doc["suggestions_toml"]:
        w("<p>Suggestions only, not applied. Copy into <code>config/mailpolicy.toml</code> after review.</p>")
    if doc["suggestions"]:
        w("<h3>Exemptions: networks whose authenticated mail a policy refuses or would refuse</h3>")
        w(
            table(
                [
                    "policy",
                    "network",
                    "affected",
                    "authenticated kept",
                    "unauthenticated let through",
                    "clients",
                ],
                [
                    [
                        s["policy"],
                        s["network"],
                        s["affected"],
                        s["authenticated_kept"],
                        s["unauthenticated_let_through"],
                        ", ".join(s["client_names"]),
                    ]
                    for s in doc["suggestions"]
                ],
            )
        )
    if doc["sealer_suggestions"]:
        w("<h3>Trusted ARC sealers (<code>[policies.dmarc] trusted_arc_sealers</code>)</h3>")
        w(
            '<div class="warn">A trusted sealer can vouch for a spoof: its ARC-Authentication-Results are '
            "taken at its word. List only forwarders you trust with your users' mail.</div>"
        )
        w(
            "<p>Newest sealers of valid ARC chains on DMARC failures the dmarc policy refuses or would "
            "refuse. Trusting one keeps such mail only when a trusted set recorded a pass for the author "
            "domain: the counts are upper bounds.</p>"
        )
        w(table(*tables.sealer_suggestions(doc)))
    if doc["suggestions_toml"]:
        w(f"<pre>{e(doc['suggestions_toml'])}</pre>")
    else:
        w(
            "<p>None: no policy refuses or would refuse authenticated mail, nor DMARC failures forwarded "
            "with a valid ARC chain.</p>"
        )
    w("</section>")
    # Input and hosts
    w('<section id="input"><h2>Hosts and input</h2>')
    w(table(*tables.hosts(doc)))
    w(
        table(
            ["source", "lines", "events", "malformed", "error"],
            [[s["name"], s["lines"], s["events"], s["malformed"], s["error"] or ""] for s in inp["sources"]],
        )
    )
    w(
        f"<p>{inp['lines']} lines: {inp['events']} events, {inp['non_event_lines']} diagnostics lines, "
        f"{inp['malformed_lines']} malformed, {inp['blank_lines']} blank,"
        f" {inp['filtered_out']} filtered out.</p>"
    )
    for ex in inp["malformed_examples"]:
        w(f'<p class="note">malformed: {e(ex["source"])} line {ex["line"]}: {e(ex["error"])}</p>')
    w("</section></main></body></html>")
    return "\n".join(out) + "\n"
