"""Terminal rendering of the report document: the answer first (the combined scenario, the
per-policy table, the trend per day), then the details.

Every string of the document comes from the logs in part: :func:`render` makes them all printable
first (:func:`~mailpolicy.report.safe.printable_doc`: controls, ESC, bidi overrides... shown as
``\\uXXXX``), so that no value reaches the terminal as a control sequence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailpolicy.report import lookalike, tables
from mailpolicy.report.safe import printable_doc
from mailpolicy.report.tables import msgs_rcpts, num, plural, share

Write = Callable[[str], None]


_NUMERIC = frozenset("0123456789,.%<>/ -")


def _numeric(cell: str) -> bool:
    return bool(cell) and set(cell) <= _NUMERIC


def _table(headers: list[str], rows: list[list[Any]], indent: str = "  ") -> list[str]:
    """Columns of numbers right-aligned, the first column and columns of words left-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    right = [i > 0 and all(_numeric(r[i]) or not r[i] for r in cells[1:]) for i in range(len(headers))]
    out = []
    for n, r in enumerate(cells):
        parts = [
            c.rjust(w) if right[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append(indent + "  ".join(parts).rstrip())
        if n == 0:
            out.append(indent + "  ".join("-" * w for w in widths))
    return out


def _t(table: tables.Table, indent: str = "    ") -> str:
    return "\n".join(_table(*table, indent))


def days(period: dict[str, Any], n: int) -> str:
    return f"{period['first'][:10]} .. {period['last'][:10]} ({plural(n, 'day')})" if period["first"] else "-"


def no_events(doc: dict[str, Any]) -> str | None:
    """Why the report has no event, None when it has some: every event read was left out by the
    filters (which, and the time span of those events), the input was empty or unreadable, or none
    of the lines read was an event."""
    inp = doc["input"]
    if inp["events"]:
        return None
    n = inp["filtered_out"]
    if n:
        f = doc["filters"]
        by = [f"--{k} {f[k]}" for k in ("since", "until") if f[k]] + [f"--host {h}" for h in f["hosts"]]
        text = "the only event read was" if n == 1 else f"all {num(n)} events read were"
        text += f" filtered out by {' '.join(by) or '--since/--until/--host'}"
        span = inp.get("filtered_out_period") or {}
        if span.get("first"):
            if n == 1 or span["first"] == span["last"]:
                text += f"; {'it is' if n == 1 else 'they are'} from {span['first']}"
            else:
                text += f"; they are from {span['first']} to {span['last']}"
        return text
    if not inp["lines"]:
        sources = inp["sources"]
        return (
            "no input could be read" if sources and all(s["error"] for s in sources) else "the input is empty"
        )
    return (
        f"{plural(inp['lines'], 'line')} read, no event among them: is this mailpolicy's JSON event log?"
        " (journalctl -u mailpolicy -o cat)"
    )


def input_problems(doc: dict[str, Any]) -> list[str]:
    """What makes the numbers incomplete, in a few words each (empty when nothing does). Events
    that the filters left out are not a problem of the input."""
    inp = doc["input"]
    out = []
    reason = no_events(doc)
    if reason is not None and not inp["filtered_out"]:
        out.append(reason)
    for ver, n in inp["unsupported_schema"].items():
        out.append(f"{plural(n, 'event')} with event schema {ver} refused (upgrade mailpolicy to read them)")
    if inp["malformed_lines"]:
        out.append(f"{plural(inp['malformed_lines'], 'malformed line')} skipped")
    out += [f"{s['name']}: {s['error']}" for s in inp["sources"] if s["error"]]
    return out


def answer(doc: dict[str, Any], w: Write) -> None:
    """The combined scenario in one sentence, the per-policy table and the trend per day."""
    c = doc["combined"]
    ca = c["affected"]
    reason = no_events(doc)
    if reason is not None:
        w(f"No events to report: {reason}.")
        return
    if c["policies"]:
        w(f"If every monitor-mode policy were enforced ({', '.join(c['policies'])}):")
        w(
            f"  {msgs_rcpts(c['lost'], c['lost_recipients'])} lost"
            f" ({share(c['lost'], c['transactions'])} of messages,"
            f" {share(c['lost_recipients'], c['recipients'])} of recipients),"
        )
        w(
            f"  of which {msgs_rcpts(ca['authenticated'], ca['authenticated_recipients'])} authenticated"
            " (legitimate mail you would lose)."
        )
    else:
        w("No policy is in monitor mode: there is nothing to simulate.")
    w(
        "  Refused today by enforce mode:"
        f" {msgs_rcpts(c['already_refused'], c['already_refused_recipients'])}."
    )
    if not doc["policies"]:
        return
    w("")
    w(_t(tables.answer(doc), "  "))
    w("  would refuse: in monitor mode (reject or tempfail); refused: in enforce mode; recipients: theirs;")
    w("  authenticated: affected messages with DMARC pass or aligned DKIM pass;")
    w("  only by it: messages / recipients lost only because of this policy (kept if it stays in monitor);")
    w("  lost and only by it: mail delivered today only (not refused by enforce mode, not aborted);")
    w("  would refuse counts it all.")
    series = tables.daily_series(doc)
    if series[0].dates:
        w("")
        w("  per day (one character a day, each line on its own scale, · = none):")
        width = max(len(f"{s.label} {s.kind}") for s in series)
        for s in series:
            w(
                f"    {f'{s.label} {s.kind}'.ljust(width)}  {s.spark()}  {num(s.total)} /"
                f" {plural(s.total_recipients, 'recipient')}, {s.peak_text()}"
            )


def render(doc: dict[str, Any]) -> str:
    doc = printable_doc(doc)
    out: list[str] = []
    w = out.append
    period = doc["period"]
    c = doc["combined"]
    w("mailpolicy report: if I enforced these policies, which mail would I lose?")
    w(
        f"{days(period, len(c['daily']))}, {plural(len(doc['hosts']), 'host')}:"
        f" {msgs_rcpts(c['transactions'], c['recipients'])}; generated {doc['generated']}"
    )
    f = doc["filters"]
    active = [
        f"{k}={v if not isinstance(v, list) else ','.join(v)}" for k, v in f.items() if v and k != "top"
    ]
    if active:
        w("filters: " + "  ".join(active))
    problems = input_problems(doc)
    if problems:
        w("WARNING, incomplete input (see Input at the end): " + "; ".join(problems))
    w("")
    answer(doc, w)
    w("")
    _combined(doc, w)
    if "lookalikes" in doc:
        w("")
        out.extend(lookalike.text_lines(doc["lookalikes"]))
    w("")
    _suggestions(doc, w)
    for p in doc["policies"]:
        w("")
        _policy(doc, p, w)
    w("")
    _tls(doc["tls"], w)
    w("")
    _hosts_and_input(doc, w)
    return "\n".join(out) + "\n"


def _combined(doc: dict[str, Any], w: Write) -> None:
    c = doc["combined"]
    ca = c["affected"]
    w("== Combined scenario: every monitor-mode policy enforced at once ==")
    if not doc["input"]["events"]:
        w("  nothing to simulate: no events (see above)")
        return
    w(f"  policies switched: {', '.join(c['policies']) or '(none in monitor mode)'}")
    w(
        f"  lost: {msgs_rcpts(c['lost'], c['lost_recipients'])},"
        " each counted once however many policies refuse it, only mail delivered today (none that"
        " enforce mode refused, none aborted)"
    )
    w(
        f"  authenticated {num(ca['authenticated'])} / {num(ca['authenticated_recipients'])},"
        f" unauthenticated {num(ca['unauthenticated'])} / {num(ca['unauthenticated_recipients'])},"
        f" no auth data {num(ca['unknown'])} / {num(ca['unknown_recipients'])} (messages / recipients)"
    )
    w(
        f"  from {plural(ca['clients'], 'client')} in {plural(ca['networks'], 'network')},"
        f" {plural(ca['sender_domains'], 'sender domain')}"
    )
    if ca["transactions"]:
        _paths(ca, w)
        w("  top sender domains:")
        w(_t(tables.affected(ca["top_sender_domains"], "domain")))
        w("  top clients:")
        w(_t(tables.affected(ca["top_clients"], "client")))
    if c["daily"]:
        w(
            "  per day, messages / recipients: lost (all), would refuse (policy) or refused in enforce mode"
            " (policy (refused)):"
        )
        w(_t(tables.daily_matrix(doc)))


def already_refused(doc: dict[str, Any], p: dict[str, Any]) -> tuple[int, int]:
    """What policy ``p`` would refuse that enforce mode refused today as a whole (messages,
    recipients): its would refuse less what it would lose (``lost_by_policy``) and less what was
    not delivered anyway (:func:`aborted`)."""
    c = doc["combined"]
    gone, gone_r = aborted(p)
    return (
        p["would_refuse"] - c["lost_by_policy"].get(p["name"], 0) - gone,
        p["would_refuse_recipients"] - c["lost_recipients_by_policy"].get(p["name"], 0) - gone_r,
    )


def aborted(p: dict[str, Any]) -> tuple[int, int]:
    """What policy ``p`` would refuse that was neither delivered nor refused today (messages,
    recipients): aborted by the client or the MTA, so not lost by switching."""
    return p.get("would_refuse_aborted", 0), p.get("would_refuse_aborted_recipients", 0)


def not_lost(doc: dict[str, Any], p: dict[str, Any]) -> list[str]:
    """What policy ``p`` would refuse that switching would not lose, in words: refused today by
    enforce mode, not delivered anyway (aborted); empty when it is nothing."""
    already, already_r = already_refused(doc, p)
    gone, gone_r = aborted(p)
    out = []
    if already:
        out.append(f"{msgs_rcpts(already, already_r)} refused today by enforce mode (not lost by switching)")
    if gone:
        out.append(f"{msgs_rcpts(gone, gone_r)} not delivered anyway (aborted)")
    return out


def _policy(doc: dict[str, Any], p: dict[str, Any], w: Write) -> None:
    w(f"== Policy {p['name']} ==")
    w(
        f"  {msgs_rcpts(p['transactions'], p['recipients'])}; modes: "
        + ", ".join(f"{k} {num(v)}" for k, v in p["modes"].items())
    )
    w("  results: " + ", ".join(f"{k} {num(v)}" for k, v in p["results"].items()))
    if p["exempt"]:
        w("  exempt: " + ", ".join(f"{k} {num(v)}" for k, v in p["exempt"].items()))
    if p["overrides"]:
        w(
            f"  overrides (local policy changed the action; in monitor mode, what it saved):"
            f" {tables.overrides(p)}"
        )
        if p["overrides_by"]:
            w(_t(tables.overrides_by(p)))
    w(
        f"  would refuse {msgs_rcpts(p['would_refuse'], p['would_refuse_recipients'])}"
        f" ({share(p['would_refuse'], p['transactions'])}: reject {num(p['would_reject'])},"
        f" tempfail {num(p['would_tempfail'])}); would quarantine {num(p['would_quarantine'])}"
    )
    parts = not_lost(doc, p)
    if parts:
        c, name = doc["combined"], p["name"]
        lost = msgs_rcpts(c["lost_by_policy"].get(name, 0), c["lost_recipients_by_policy"].get(name, 0))
        w(f"    of which {', '.join(parts)}, {lost} lost if enforced")
    w(
        f"  refused in enforce mode: {msgs_rcpts(p['refused'], p['refused_recipients'])}"
        f" (rejected {num(p['rejected'])}, tempfailed {num(p['tempfailed'])});"
        f" quarantined {num(p['quarantined'])}"
    )
    a = p["affected"]
    if a["transactions"]:
        w(
            f"  affected: {msgs_rcpts(a['transactions'], a['recipients'])} ({num(a['authenticated'])}"
            f" authenticated, {num(a['unauthenticated'])} unauthenticated, {num(a['unknown'])} no auth"
            f" data) from {plural(a['clients'], 'client')} in {plural(a['networks'], 'network')},"
            f" {plural(a['sender_domains'], 'sender domain')}"
        )
        if p["name"] == "dmarc":
            _paths(a, w)
        elif a["paths"]["direct"]["transactions"] < a["transactions"]:
            w(f"  how it came: {tables.paths_line(a)}")
        w("  top sender domains:")
        w(_t(tables.affected(a["top_sender_domains"], "domain")))
        w("  top clients:")
        w(_t(tables.affected(a["top_clients"], "client")))


def _suggestions(doc: dict[str, Any], w: Write) -> None:
    w("== Suggestions ==")
    if not doc["suggestions_toml"]:
        w(
            "  none: no authenticated mail, nor DMARC failure forwarded with a valid ARC chain, that a"
            " policy alone refuses or would lose."
        )
        return
    if doc["suggestions"]:
        w("  Exemptions that would keep authenticated mail while enforcing (a suggestion, not applied):")
        w(_t(tables.suggestions(doc)))
    else:
        w("  No exemption: no authenticated mail that a policy alone refuses or would lose.")
    if doc["sealer_suggestions"]:
        w(
            "  Trusted ARC sealers that could keep forwarded mail failing DMARC (a suggestion, not"
            " applied; a trusted sealer can vouch for a spoof):"
        )
        w(_t(tables.sealer_suggestions(doc)))
    w("")
    w(doc["suggestions_toml"].rstrip("\n"))


def _paths(a: dict[str, Any], w: Write) -> None:
    """How the affected mail came: a valid ARC chain (forwarded), else a List-Id, else direct."""
    w("  how it came (a valid ARC chain counts as forwarded, else a List-Id as a list, else direct):")
    w(_t(tables.paths(a)))
    p = a["paths"]
    if p["forwarded_arc"]["sealers"]:
        w(_t(tables.path_sealers(a)))
    if p["mailing_list"]["lists"]:
        w(_t(tables.path_lists(a)))


def _tls(tls: dict[str, Any], w: Write) -> None:
    w("== TLS ==")
    for kind, word in (("sessions", "sessions"), ("transactions", "messages")):
        s = tls[kind]
        w(
            f"  {word}: {num(s['total'])}, plaintext {num(s['plaintext'])}"
            f" ({share(s['plaintext'], s['total'])})"
        )
        w(_t(tables.tls_versions(s)))
    w("  session ciphers:")
    w(_t(tables.tls_ciphers(tls)))
    b = tls["below_tls12"]
    w(
        f"  below TLS 1.2: {plural(b['clients'], 'client')}, {plural(b['sessions'], 'session')},"
        f" {plural(b['transactions'], 'message')}"
    )
    if b["top_clients"]:
        w(_t(tables.below_tls12(b)))
    for fl in tls["floor_simulation"]:
        t = fl["transactions"]
        lost = fl["with_require_starttls"]
        w(
            f"  raising the TLS floor to {fl['floor']}: {plural(fl['sessions'], 'session')} and"
            f" {msgs_rcpts(t['transactions'], t['recipients'])} from {plural(fl['clients'], 'client')}"
            " would fail the handshake and fall back to plaintext (no mail lost by that alone);"
        )
        kept = ", ".join(f"{k} {num(v)}" for k, v in lost["kept_by_exemption"].items()) or "none"
        ll = lost["lost"]
        w(
            f"    with require_starttls also enforced: {msgs_rcpts(ll['transactions'], ll['recipients'])}"
            f" lost ({num(ll['authenticated'])} authenticated) from {plural(lost['lost_clients'], 'client')};"
            f" kept by require_starttls exemptions: {kept}"
        )
        if fl["top_clients"]:
            w(_t(tables.affected(fl["top_clients"], "client")))


def _hosts_and_input(doc: dict[str, Any], w: Write) -> None:
    w("== Hosts ==")
    w(_t(tables.hosts(doc), "  "))
    t = doc["totals"]
    outcomes = ", ".join(f"{k} {num(v)}" for k, v in t["outcomes"].items())
    w(
        f"  total: {plural(t['connections'], 'connection')}, {msgs_rcpts(t['transactions'], t['recipients'])}"
        f" ({outcomes or 'none'})"
    )
    w("")
    inp = doc["input"]
    w("== Input ==")
    w(
        f"  {plural(inp['lines'], 'line')}: {plural(inp['events'], 'event')},"
        f" {num(inp['non_event_lines'])} diagnostics (non-event) lines, {num(inp['malformed_lines'])}"
        f" malformed, {num(inp['blank_lines'])} blank, {plural(inp['filtered_out'], 'event')} filtered out"
    )
    reason = no_events(doc)
    if reason is not None:
        w(f"  NO EVENTS: {reason}")
    for s in inp["sources"]:
        err = f"  ERROR: {s['error']}" if s["error"] else ""
        w(
            f"  {s['name']}: {plural(s['lines'], 'line')}, {plural(s['events'], 'event')},"
            f" {num(s['malformed'])} malformed{err}"
        )
    for ex in inp["malformed_examples"]:
        w(f"  malformed: {ex['source']} line {ex['line']}: {ex['error']}")
    for ver, n in inp["unsupported_schema"].items():
        w(
            f"  REFUSED: {plural(n, 'event')} with event schema {ver}; this report reads schema"
            f" {doc['event_schema']} only: upgrade mailpolicy to read them"
        )
    for kind, n in inp["unknown_event_types"].items():
        w(f"  ignored: {plural(n, 'event')} of unknown type {kind!r}")
