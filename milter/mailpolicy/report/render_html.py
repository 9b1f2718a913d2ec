"""One self-contained HTML page: inline CSS and inline SVG drawn here, no script, no external
resource (it must open on an offline admin workstation). Every value taken from the logs (domains,
host names, client names) is attacker-influenced and is escaped.

The page answers first (the combined scenario, the per-policy table with one small chart per
policy on its own scale), then shows who would lose mail, the suggestions, each policy, TLS and the
input. Numbers a chart stands for are one click away (``<details>``) and in the JSON. Labels are
HTML table cells, so the browser lays them out and never clips them; the SVG charts carry text only
on their axes, inside their margins."""

from __future__ import annotations

from html import escape
from typing import Any

from mailpolicy.report import lookalike, tables
from mailpolicy.report.render_text import no_events, not_lost
from mailpolicy.report.tables import Series, clip, msgs_rcpts, num, plural, share

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
AUTH_COLOURS = (("authenticated", "#c62828"), ("unauthenticated", "#adb5bd"), ("unknown", "#ced4da"))
PATH_COLOURS = {"forwarded_arc": "#1971c2", "mailing_list": "#9c36b5", "direct": "#ced4da"}
SERIES_COLOURS = {"lost": "#212529", "would refuse": "#1f5fa8", "refused": "#868e96"}
SPARK_W, SPARK_H = 150, 20
BAR_W = 100  # CSS px of a bar at full scale (CARD_BAR_W in a per-policy card)
CARD_BAR_W = 90
LABEL_CHARS = 32  # labels are shortened beyond this: a domain, a client's name (never its address)
CARD_LABEL_CHARS = 44
CARD_ROWS = 3  # rows of each per-policy chart; the full top N is in its details
SHOWN = 5  # rows of a suggestion table shown; all of them are one click away

CSS = """
body{font:13px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#212529;
  background:#f6f7f9}
header{background:#1f2a37;color:#fff;padding:16px 32px}
header h1{margin:0;font-size:21px}
header p{margin:4px 0 0;color:#cbd5e1}
main{padding:8px 32px 40px;max-width:1200px}
section{background:#fff;border:1px solid #dee2e6;border-radius:8px;padding:12px 20px;margin:12px 0;
  overflow-x:auto}
h2{font-size:18px;margin:0 0 8px}
h3{font-size:15px;margin:12px 0 4px}
h4{font-size:13px;margin:6px 0 2px}
p{margin:6px 0}
table{border-collapse:collapse;margin:4px 0 8px;font-size:12.5px}
th,td{padding:3px 8px;border-bottom:1px solid #e9ecef;text-align:right;white-space:nowrap}
thead th{background:#f1f3f5;font-weight:600;white-space:normal;vertical-align:bottom}
td:first-child,th:first-child{text-align:left}
tbody th{font-weight:normal}
tr.all td,tr.all th{font-weight:600;background:#f8f9fa}
.headline{font-size:17px;margin:4px 0 8px}
.headline b{font-size:20px}
.bad{color:#c62828}
.warn{background:#fff4e5;border:1px solid #f0a030;border-radius:6px;padding:8px 12px;margin:8px 0}
.note{color:#6c757d;font-size:12px}
pre{background:#1f2a37;color:#e9ecef;padding:12px 14px;border-radius:6px;overflow-x:auto;font-size:12px}
details{margin:4px 0}
summary{cursor:pointer;color:#1f5fa8;font-size:13px}
svg text{font:11px system-ui,sans-serif;fill:#343a40}
svg .grid{stroke:#e9ecef}
.spark{vertical-align:middle}
td.sparkcell{text-align:left}
td.sparkcell span{font-size:12px;color:#495057;margin-left:6px}
.cols{display:flex;flex-wrap:wrap;gap:0 16px;align-items:flex-start}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:12px}
.card{border:1px solid #dee2e6;border-radius:8px;padding:8px 14px;overflow-x:auto}
.card:has(details[open]){grid-column:1/-1}
svg.chart{max-width:100%}
.card h3{margin:2px 0 4px}
.card p{font-size:12px;margin:2px 0}
table.bars{font-size:12px}
table.bars td,table.bars th{padding:2px 6px}
table.bars tbody th{white-space:normal;overflow-wrap:anywhere;min-width:8em}
td.barcell{width:BAR_Wpx;min-width:BAR_Wpx;text-align:left;font-size:0;line-height:0}
.card td.barcell{width:CARD_BAR_Wpx;min-width:CARD_BAR_Wpx}
table.compact{font-size:12px}
table.compact td,table.compact th{padding:2px 6px}
td.barcell i{display:inline-block;height:11px}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:11px;height:11px;margin-right:4px;vertical-align:-1px;border-radius:2px}
""".replace("CARD_BAR_W", str(CARD_BAR_W)).replace("BAR_W", str(BAR_W))


def e(value: Any) -> str:
    return escape(str(value), quote=True)


def _legend(items: list[tuple[str, str]]) -> str:
    return (
        '<div class="legend">'
        + "".join(f'<span><i style="background:{c}"></i>{e(label)}</span>' for label, c in items)
        + "</div>"
    )


AUTH_LEGEND = _legend(
    [
        ("authenticated (mail you would really lose)", AUTH_COLOURS[0][1]),
        ("unauthenticated", AUTH_COLOURS[1][1]),
        ("no authentication data", AUTH_COLOURS[2][1]),
    ]
)


NICE_STEPS = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def _nice_max(v: float) -> float:
    """The smallest round number (:data:`NICE_STEPS` times a power of ten) that is at least ``v``
    and at least :data:`tables.MIN_SCALE`: the full scale of a bar chart."""
    v = tables.scale(v)
    mag = 10 ** (len(str(int(v))) - 1)
    for step in NICE_STEPS:
        if step * mag >= v:
            return float(step * mag)
    return float(10 * mag)


def table(headers: list[str], rows: list[list[Any]], cls: str = "", table_id: str = "") -> str:
    attrs = (f' class="{cls}"' if cls else "") + (f' id="{table_id}"' if table_id else "")
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def details(summary: str, body: str, open_: bool = False) -> str:
    """``summary`` is HTML (escape values before)."""
    return f"<details{' open' if open_ else ''}><summary>{summary}</summary>{body}</details>"


# ---- charts ----


def sparkline(s: Series, chart_id: str, colour: str = "") -> str:
    """One series over the report's days on its own scale (0 to :func:`tables.scale` of its peak):
    a line with the area below, the peak marked; no text inside (the peak is printed next to it)."""
    n = len(s.values)
    full = tables.scale(s.peak)
    colour = colour or SERIES_COLOURS[s.kind]
    pad = 2.0
    w, h = SPARK_W - 2 * pad, SPARK_H - 2 * pad

    def x(i: int) -> float:
        return pad + (w * i / (n - 1) if n > 1 else w / 2)

    def y(v: int) -> float:
        return pad + h * (1 - v / full)

    pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(s.values))
    title = (
        f"{s.label} {s.kind} per day, {s.dates[0] if s.dates else ''} .. {s.dates[-1] if s.dates else ''}:"
        f" {s.peak_text()}; scale 0 to {num(int(full))}"
    )
    parts = [
        f'<svg id="{e(chart_id)}" class="spark" width="{SPARK_W}" height="{SPARK_H}" '
        f'viewBox="0 0 {SPARK_W} {SPARK_H}" role="img" aria-label="{e(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{e(title)}</title>',
        f'<line class="grid" x1="{pad}" x2="{SPARK_W - pad}" y1="{y(0):.1f}" y2="{y(0):.1f}"/>',
    ]
    if n > 1:
        parts.append(
            f'<polygon points="{x(0):.1f},{y(0):.1f} {pts} {x(n - 1):.1f},{y(0):.1f}" fill="{colour}" '
            'fill-opacity="0.15"/>'
            f'<polyline class="series" points="{pts}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
        )
    if s.peak or n == 1:
        i = s.values.index(s.peak)
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(s.peak):.1f}" r="2.5" fill="{colour}"/>')
    parts.append("</svg>")
    return "".join(parts)


def spark_cell(s: Series | None, chart_id: str, colour: str = "") -> str:
    if s is None or not s.dates:
        return '<td class="sparkcell"></td>'
    peak = f"{num(s.peak)} on {s.peak_date[5:]}" if s.peak else "none"
    return f'<td class="sparkcell">{sparkline(s, chart_id, colour)}<span>{e(peak)}</span></td>'


def bar_table(
    items: list[dict[str, Any]], key: str, chart_id: str, label: str, rows: int = 0, card: bool = False
) -> str:
    """Horizontal bars as a table: one row per sender domain (``key`` "domain") or client, the bar
    split into authenticated, unauthenticated and no-data messages, then the counts. All bars of a
    table share one scale, 0 to a round number at least 10 (a count of 1 is a short bar). In a
    per-policy ``card``: narrower, without the authenticated column (the bar's red part)."""
    items = items[:rows] if rows else items
    if not items:
        return '<p class="note">Nothing affected.</p>'
    full = _nice_max(max(it["transactions"] for it in items))
    chars = CARD_LABEL_CHARS if card else LABEL_CHARS
    body = []
    for it in items:
        if key == "client":
            text, whole = tables.client(it, chars), tables.client(it)
        else:
            text, whole = clip(str(it[key]), chars), str(it[key])
        bars = "".join(
            f'<i style="width:{100 * it[field] / full:.2f}%;background:{colour}" '
            f'title="{e(whole)}: {num(it[field])} {field}"></i>'
            for field, colour in AUTH_COLOURS
            if it[field]
        )
        auth = "" if card else f"<td>{num(it['authenticated'])}</td>"
        body.append(
            f'<tr><th scope="row" title="{e(whole)}">{e(text)}</th><td class="barcell">{bars}</td>'
            f"<td>{num(it['transactions'])}</td><td>{num(it['recipients'])}</td>{auth}</tr>"
        )
    auth_head = "" if card else "<th>authenticated</th>"
    return (
        f'<table class="bars" id="{e(chart_id)}"><thead><tr><th>{e(label)}</th>'
        f"<th>0 to {num(int(full))}</th><th>messages</th><th>recipients</th>{auth_head}"
        f"</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def paths_chart(a: dict[str, Any], chart_id: str) -> str:
    """One bar split by how the affected mail came: forwarded (valid ARC chain), list, direct."""
    total = a["transactions"]
    if not total:
        return ""
    width, height = 600, 22
    parts = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" '
        'preserveAspectRatio="none" role="img" aria-label="How the affected mail came" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    x = 0.0
    for key, label in tables.PATH_LABELS.items():
        n = a["paths"][key]["transactions"]
        if not n:
            continue
        w = width * n / total
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="2" width="{w:.1f}" height="{height - 4}" '
            f'fill="{PATH_COLOURS[key]}"><title>{e(label)}: {num(n)} ({share(n, total)})</title></rect>'
        )
        x += w
    parts.append("</svg>")
    return "".join(parts) + _legend([(label, PATH_COLOURS[k]) for k, label in tables.PATH_LABELS.items()])


def paths_block(a: dict[str, Any], chart_id: str, what: str, compact: bool = False) -> str:
    """AFFECTED.paths: the bar, the three counts, the top sealers and list ids. ``compact`` (in a
    per-policy card): the bar and one line, the tables one click away."""
    if not a["transactions"]:
        return ""
    p = a["paths"]
    named = ""
    if p["forwarded_arc"]["sealers"]:
        named += table(*tables.path_sealers(a), cls="compact")
    if p["mailing_list"]["lists"]:
        named += table(*tables.path_lists(a), cls="compact")
    note = (
        "A message with a valid ARC chain (<code>arc=pass</code>) counts as forwarded, named by its newest"
        " sealer; else one with a List-Id as list mail; else as direct."
    )
    if compact:
        return "".join(
            [
                f"<h4>How the {e(what)} came</h4>",
                paths_chart(a, chart_id),
                details(
                    e(tables.paths_line(a)),
                    f'<p class="note">{note}</p>' + table(*tables.paths(a), cls="compact") + named,
                ),
            ]
        )
    out = [
        f"<h3>How the {e(what)} came</h3>",
        paths_chart(a, chart_id),
        table(*tables.paths(a), cls="compact"),
        details(
            "Sealers and list ids by name; what counts as forwarded",
            f'<p class="note">{note}</p>' + f'<div class="cols">{named}</div>',
        ),
    ]
    return "".join(out)


def tls_chart(daily: list[dict[str, Any]], chart_id: str = "chart-tls") -> str:
    """100 % stacked bars: share of sessions by TLS version per day."""
    width, height, left, right, bottom, top = 1000, 105, 44, 16, 20, 6
    if not daily:
        return '<p class="note">No connection events.</p>'
    versions: list[str] = []
    for d in daily:
        for v in d["versions"]:
            if v not in versions:
                versions.append(v)
    order = [v for v in VERSION_COLOURS if v in versions] + [v for v in versions if v not in VERSION_COLOURS]
    n = len(daily)
    plot_w, plot_h = width - left - right, height - bottom - top
    bw = plot_w / n
    parts = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        'aria-label="TLS versions over time" xmlns="http://www.w3.org/2000/svg">'
    ]
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
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
                f'height="{h:.1f}" fill="{colour}"><title>{e(d["date"])} {e(v)}: {num(count)} sessions '
                f"({share(count, total)})</title></rect>"
            )
    every = max(1, -(-n // 10))
    for i, d in enumerate(daily):
        if i % every == 0:
            x = left + i * bw + bw / 2
            parts.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle">{e(d["date"][5:])}</text>')
    parts.append("</svg>")
    return "".join(parts) + _legend([(v, VERSION_COLOURS.get(v, "#495057")) for v in order])


def tls_versions_chart(tls: dict[str, Any]) -> str:
    """Every TLS version (and plaintext): sessions and messages over the period with their shares,
    and for every version but TLS 1.3 a line of its sessions per day, each on its own scale."""
    daily = tls["daily_sessions"]
    dates = [d["date"] for d in daily]
    sessions, txns = tls["sessions"], tls["transactions"]
    by_txn = {v["version"]: v["count"] for v in txns["by_version"]}
    versions = [v["version"] for v in sessions["by_version"]]
    versions += [v for v in by_txn if v not in versions]
    by_session = {v["version"]: v["count"] for v in sessions["by_version"]}
    rows = []
    for version in versions:
        n, m = by_session.get(version, 0), by_txn.get(version, 0)
        cell = '<td class="sparkcell"></td>'
        if version != "TLSv1.3":
            values = [d["versions"].get(version, 0) for d in daily]
            s = Series(version, "sessions", dates, values, values)
            cell = spark_cell(s, f"spark-tls-{version}", VERSION_COLOURS.get(version, "#495057"))
        rows.append(
            f'<tr><th scope="row">{e(version)}</th><td>{num(n)}</td><td>{share(n, sessions["total"])}</td>'
            f"<td>{num(m)}</td><td>{share(m, txns['total'])}</td>{cell}</tr>"
        )
    if not rows:
        return '<p class="note">No connection events.</p>'
    return (
        '<table id="chart-tls-legacy"><thead><tr><th>version</th><th>sessions</th><th>share</th>'
        "<th>messages</th><th>share</th><th>sessions per day (own scale), peak</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


# ---- sections ----


def _answer(doc: dict[str, Any]) -> str:
    c = doc["combined"]
    ca = c["affected"]
    out = ['<section id="answer"><h2>If every monitor-mode policy were enforced</h2>']
    reason = no_events(doc)
    if reason is not None:
        out.append(f'<p class="headline">No events to report: {e(reason)}.</p></section>')
        return "".join(out)
    if c["policies"]:
        out.append(
            f'<p class="headline"><b>{e(msgs_rcpts(c["lost"], c["lost_recipients"]))}</b> would be lost'
            f" ({share(c['lost'], c['transactions'])} of messages,"
            f" {share(c['lost_recipients'], c['recipients'])}"
            f' of recipients), of which <b class="{"bad" if ca["authenticated"] else ""}">'
            f"{e(msgs_rcpts(ca['authenticated'], ca['authenticated_recipients']))} authenticated</b>"
            " (legitimate mail you would lose).</p>"
        )
    else:
        out.append('<p class="headline">No policy is in monitor mode: there is nothing to simulate.</p>')
    out.append(
        f'<p class="note">Policies switched to enforce: {e(", ".join(c["policies"]) or "none")}. A message'
        " counts once however many policies would refuse it; its recipients are those it still had after"
        " RCPT. Refused today by enforce mode:"
        f" {e(msgs_rcpts(c['already_refused'], c['already_refused_recipients']))}."
        f" How the lost mail came: {e(tables.paths_line(ca))}.</p>"
    )
    series = {(s.label, s.kind): s for s in tables.daily_series(doc)}
    headers, rows = tables.answer(doc, mode=False)
    head = "".join(f"<th>{e(h)}</th>" for h in headers) + "<th>per day (own scale), peak</th>"
    body = [
        '<tr class="all"><th scope="row">all monitor-mode policies</th>'
        f"<td>{num(c['transactions'])}</td><td>{num(c['lost'])}</td>"
        f"<td>{share(c['lost'], c['transactions'])}</td>"
        f"<td>{num(c['lost_recipients'])}</td><td>{num(ca['authenticated'])}</td><td></td>"
        f"<td>{num(c['already_refused'])}</td><td>{num(c['already_refused_recipients'])}</td>"
        + spark_cell(series.get(("all monitor-mode policies", "lost")), "spark-all")
        + "</tr>"
    ]
    for p, row in zip(doc["policies"], rows, strict=True):
        name = p["name"]
        s = series.get((name, "would refuse")) or series.get((name, "refused"))
        body.append(
            f'<tr><th scope="row">{e(name)} <span class="note">{e(tables.modes(p))}</span></th>'
            + "".join(f"<td>{e(cell)}</td>" for cell in row[1:])
            + spark_cell(s, f"spark-{name}")
            + "</tr>"
        )
    out.append(
        f'<table id="chart-answer"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )
    out.append(
        '<p class="note">would refuse: in monitor mode (action reject or tempfail); refused: in enforce mode;'
        " recipients: theirs; authenticated: affected messages with DMARC pass or aligned DKIM pass; only by"
        " it: messages / recipients lost only because of this policy (lost and only by it: mail delivered"
        " today only, not refused by enforce mode nor aborted; would refuse counts it all). Per day: would"
        " refuse (blue), lost (black) or refused in enforce mode (grey), each line from 0 to its own peak"
        f" (at least {tables.MIN_SCALE}).</p>"
    )
    if c["daily"]:
        out.append(details("Numbers per day (messages / recipients)", table(*tables.daily_matrix(doc))))
    out.append("</section>")
    return "".join(out)


def _who(doc: dict[str, Any]) -> str:
    c = doc["combined"]
    ca = c["affected"]
    out = ['<section id="senders"><h2>Who would lose mail (all monitor-mode policies enforced)</h2>']
    if not ca["transactions"]:
        why = "no monitor-mode policy would refuse anything" if doc["input"]["events"] else "no events"
        out.append(f"<p>Nobody: {why}.</p></section>")
        return "".join(out)
    out.append(
        f"<p>{e(msgs_rcpts(ca['transactions'], ca['recipients']))} from {e(plural(ca['clients'], 'client'))}"
        f" in {e(plural(ca['networks'], 'network'))}, {e(plural(ca['sender_domains'], 'sender domain'))}.</p>"
    )
    out.append('<div class="cols"><div>')
    out.append(bar_table(ca["top_sender_domains"], "domain", "chart-senders", "sender domain"))
    out.append("</div><div>")
    out.append(bar_table(ca["top_clients"], "client", "chart-clients", "client"))
    out.append("</div></div>")
    out.append(AUTH_LEGEND)
    out.append(paths_block(ca, "chart-paths", "lost mail"))
    out.append("</section>")
    return "".join(out)


def _suggestions(doc: dict[str, Any]) -> str:
    out = ['<section id="suggestions"><h2>Suggested exemptions and trusted ARC sealers']
    if not doc["suggestions_toml"]:
        out.append(
            "</h2><p>None: no authenticated mail, nor DMARC failure forwarded with a valid ARC chain, that a"
            " policy alone refuses or would lose.</p></section>"
        )
        return "".join(out)
    out.append(
        ' <span class="note">suggestions only, not applied: review, then copy into'
        " <code>config/mailpolicy.toml</code></span></h2>"
    )
    if doc["suggestions"]:
        out.append(
            "<h3>Exemptions: networks whose authenticated mail a policy alone refuses or would lose</h3>"
        )
        out.append(_shown(tables.suggestions(doc), "exemptions"))
    if doc["sealer_suggestions"]:
        out.append("<h3>Trusted ARC sealers (<code>[policies.dmarc] trusted_arc_sealers</code>)</h3>")
        out.append(
            '<div class="warn">A trusted sealer can vouch for a spoof: its ARC-Authentication-Results are '
            "taken at its word. List only forwarders you trust with your users' mail.</div>"
        )
        out.append(
            '<p class="note">Newest sealers of valid ARC chains on DMARC failures the dmarc policy alone'
            " refuses or would lose; upper bounds (a trusted sealer keeps a message only if it recorded a"
            " pass).</p>"
        )
        out.append(_shown(tables.sealer_suggestions(doc), "sealers"))
    out.append(details("The suggestions as TOML", f"<pre>{e(doc['suggestions_toml'])}</pre>"))
    out.append("</section>")
    return "".join(out)


def _shown(t: tables.Table, what: str) -> str:
    """The first :data:`SHOWN` rows, all of them one click away."""
    headers, rows = t
    if len(rows) <= SHOWN:
        return table(headers, rows, cls="compact")
    return table(headers, rows[:SHOWN], cls="compact") + details(
        f"All {len(rows)} {e(what)}", table(headers, rows, cls="compact")
    )


def _policy_card(doc: dict[str, Any], p: dict[str, Any]) -> str:
    a = p["affected"]
    name = p["name"]
    out = [
        f'<div class="card" id="policy-{e(name)}">'
        f'<h3>{e(name)} <span class="note">{e(tables.modes(p))}</span></h3>'
    ]
    refusing = []
    if p["would_refuse"] or not p["refused"]:
        refusing.append(
            f"Would refuse <b>{e(msgs_rcpts(p['would_refuse'], p['would_refuse_recipients']))}</b>"
            f" ({share(p['would_refuse'], p['transactions'])})"
        )
    if p["refused"]:
        refusing.append(
            f"refused in enforce mode <b>{e(msgs_rcpts(p['refused'], p['refused_recipients']))}</b>"
            f" ({share(p['refused'], p['transactions'])})"
        )
    sentence = "; ".join(refusing)
    out.append(f"<p>{sentence[:1].upper()}{sentence[1:]} of {e(plural(p['transactions'], 'message'))}.</p>")
    results = (
        "<p>Results: "
        + e(", ".join(f"{k} {num(v)}" for k, v in p["results"].items()))
        + ("; exempt " + e(", ".join(f"{k} {num(v)}" for k, v in p["exempt"].items())) if p["exempt"] else "")
        + ".</p>"
    )
    if p["overrides"]:
        out.append(
            f"<p>Overrides (local policy changed the action; in monitor mode, what it saved): "
            f"{e(tables.overrides(p))}.</p>"
        )
    if a["transactions"]:
        out.append(
            f"<p>Affected: {num(a['authenticated'])} authenticated,"
            f" {num(a['unauthenticated'])} unauthenticated,"
            f" {num(a['unknown'])} no auth data; {e(plural(a['clients'], 'client'))},"
            f" {e(plural(a['networks'], 'network'))}, {e(plural(a['sender_domains'], 'sender domain'))}"
            + ("" if name == "dmarc" else f"; {e(tables.paths_line(a, short=True))}")
            + ".</p>"
        )
        top = a["top_sender_domains"][:CARD_ROWS]
        out.append(
            "<p>Top sender domains: "
            + e(", ".join(f"{clip(d['domain'], LABEL_CHARS)} {num(d['transactions'])}" for d in top))
            + ".</p>"
        )
        out.append(
            bar_table(a["top_clients"], "client", f"chart-policy-{name}", "top clients", CARD_ROWS, True)
        )
        if name == "dmarc":
            out.append(paths_block(a, "chart-paths-dmarc", "affected mail", compact=True))
    numbers = results
    parts = not_lost(doc, p)
    if parts:
        numbers += f"<p>Of what it would refuse, {e(', '.join(parts))}.</p>"
    if a["transactions"]:
        numbers += table(*tables.affected(a["top_sender_domains"], "domain"))
        numbers += table(*tables.affected(a["top_clients"], "client"))
    if p["overrides_by"]:
        numbers += table(*tables.overrides_by(p))
    if p["daily"]:
        numbers += table(*tables.policy_daily(p))
    out.append(details("Numbers: results, top senders and clients, overrides, per day", numbers))
    out.append("</div>")
    return "".join(out)


def _tls(tls: dict[str, Any]) -> str:
    out = ['<section id="tls"><h2>TLS</h2>', "<h3>Sessions by TLS version, share per day</h3>"]
    out.append(tls_chart(tls["daily_sessions"]))
    s, t = tls["sessions"], tls["transactions"]
    out.append(
        f"<h3>By version: {e(plural(s['total'], 'session'))}, plaintext {num(s['plaintext'])}"
        f" ({share(s['plaintext'], s['total'])}); {e(plural(t['total'], 'message'))}, plaintext"
        f" {num(t['plaintext'])} ({share(t['plaintext'], t['total'])})</h3>"
    )
    out.append(tls_versions_chart(tls))
    out.append(details("Session ciphers", table(*tables.tls_ciphers(tls))))
    b = tls["below_tls12"]
    summary = (
        f"Below TLS 1.2: {e(plural(b['clients'], 'client'))}, {e(plural(b['sessions'], 'session'))},"
        f" {e(plural(b['transactions'], 'message'))}"
    )
    out.append(details(summary, table(*tables.below_tls12(b))) if b["top_clients"] else f"<p>{summary}</p>")
    out.append("<h3>Raising the TLS floor</h3>")
    out.append(
        '<p class="note">Clients below the floor fail the handshake and fall back to plaintext: no mail is'
        " lost by that alone. With require_starttls also enforced, their mail delivered today is lost,"
        " except what a require_starttls exemption keeps.</p>"
    )
    rows = []
    for fl in tls["floor_simulation"]:
        lost = fl["with_require_starttls"]
        ll, t = lost["lost"], fl["transactions"]
        rows.append(
            [
                fl["floor"],
                num(fl["sessions"]),
                f"{num(t['transactions'])} / {num(t['recipients'])}",
                num(fl["clients"]),
                f"{num(ll['transactions'])} / {num(ll['recipients'])}",
                num(ll["authenticated"]),
                num(lost["lost_clients"]),
                ", ".join(f"{k} {num(v)}" for k, v in lost["kept_by_exemption"].items()) or "none",
            ]
        )
    out.append(
        table(
            [
                "floor",
                "sessions below",
                "messages / recipients below",
                "clients",
                "lost with require_starttls",
                "authenticated",
                "clients",
                "kept by exemptions",
            ],
            rows,
        )
    )
    below = "".join(
        f"<h4>Below {e(fl['floor'])}</h4>"
        + table(*tables.affected(fl["top_clients"], "client"), cls="compact")
        for fl in tls["floor_simulation"]
        if fl["top_clients"]
    )
    if below:
        out.append(details("Clients below each floor", below))
    out.append("</section>")
    return "".join(out)


def _input(doc: dict[str, Any]) -> str:
    inp = doc["input"]
    t = doc["totals"]
    out = ['<section id="input"><h2>Hosts and input</h2>', table(*tables.hosts(doc))]
    outcomes = ", ".join(f"{k} {num(v)}" for k, v in t["outcomes"].items())
    out.append(
        f"<p>Total: {e(plural(t['connections'], 'connection'))},"
        f" {e(msgs_rcpts(t['transactions'], t['recipients']))} ({e(outcomes or 'none')}).</p>"
    )
    out.append(
        f"<p>{e(plural(inp['lines'], 'line'))}: {e(plural(inp['events'], 'event'))},"
        f" {num(inp['non_event_lines'])} diagnostics lines, {num(inp['malformed_lines'])} malformed,"
        f" {num(inp['blank_lines'])} blank, {num(inp['filtered_out'])} filtered out.</p>"
    )
    out.append(
        details(
            "Sources",
            table(
                ["source", "lines", "events", "malformed", "error"],
                [
                    [s["name"], num(s["lines"]), num(s["events"]), num(s["malformed"]), s["error"] or ""]
                    for s in inp["sources"]
                ],
            ),
        )
    )
    for ex in inp["malformed_examples"]:
        out.append(f'<p class="note">malformed: {e(ex["source"])} line {ex["line"]}: {e(ex["error"])}</p>')
    out.append("</section>")
    return "".join(out)


def render(doc: dict[str, Any]) -> str:
    inp, period, c = doc["input"], doc["period"], doc["combined"]
    days = (
        f"{period['first'][:10]} .. {period['last'][:10]} ({plural(len(c['daily']), 'day')})"
        if period["first"]
        else "-"
    )
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
        f"<p>{e(days)} &middot; {e(plural(len(doc['hosts']), 'host'))} &middot;"
        f" {e(msgs_rcpts(c['transactions'], c['recipients']))} &middot; generated {e(doc['generated'])}"
        f" &middot; report schema {doc['report_schema']}</p></header>",
        "<main>",
    ]
    w = out.append
    if inp["unsupported_schema"] or inp["malformed_lines"] or any(s["error"] for s in inp["sources"]):
        msgs = [
            f"Refused {e(plural(n, 'event'))} with event schema {e(v)} (this report reads schema"
            f" {doc['event_schema']}; upgrade mailpolicy to read them)."
            for v, n in inp["unsupported_schema"].items()
        ]
        if inp["malformed_lines"]:
            msgs.append(f"{e(plural(inp['malformed_lines'], 'malformed or truncated line'))} skipped.")
        msgs += [f"{e(s['name'])}: {e(s['error'])}" for s in inp["sources"] if s["error"]]
        w('<div class="warn">Incomplete input: ' + " ".join(msgs) + "</div>")
    reason = no_events(doc)
    if reason is not None and not inp["filtered_out"]:  # else not a problem of the input: see the answer
        w(f'<div class="warn">No events: {e(reason)}.</div>')
    w(_answer(doc))
    w(_who(doc))
    if "lookalikes" in doc:
        w(lookalike.html_section(doc["lookalikes"]))
    w(_suggestions(doc))
    if doc["policies"]:
        w('<section id="policies"><h2>Per policy</h2><div class="cards">')
        for p in doc["policies"]:
            w(_policy_card(doc, p))
        w("</div></section>")
    w(_tls(doc["tls"]))
    w(_input(doc))
    w("</main></body></html>")
    return "\n".join(out) + "\n"
