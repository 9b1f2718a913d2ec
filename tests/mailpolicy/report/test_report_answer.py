"""The report a postmaster reads: recipients counted next to messages (known answers for
``rcpt_count`` and ``rcpt_rejected``), shares and plurals that never mislead, one policy order, a
client's address shown once, and the answer first in the text, JSON and HTML reports of a
realistic month (30 days, 4 hosts)."""

from __future__ import annotations

import io
import json
import re
from html import escape as e_
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from mailpolicy.report import build_report
from mailpolicy.report import tables as t
from mailpolicy.report.aggregate import POLICY_ORDER, policy_order
from mailpolicy.report.render_html import bar_table, sparkline
from mailpolicy.report.render_html import render as render_html
from mailpolicy.report.render_text import render as render_text
from support.report_events import (
    arc_chain,
    conn,
    count_by_hand,
    decision,
    dmarc_override,
    generate,
    month,
    policy,
    report,
    txn,
    would_reject,
)

ENFORCED = decision("enforce", "fail", "reject", applied=True)


def recipients_scenario() -> list[dict[str, Any]]:
    """Seven messages on one host and day, with the recipients each refusal concerns:

    A  spf would refuse, 5 recipients, authenticated (own network)           -> lost 5
    B  spf would refuse; require_starttls (enforce) refused 3 of 4 at RCPT   -> lost 1, refused 3
    C  dmarc (enforce) refused the whole message to 50                       -> refused 50
    D  dmarc refused it whole (7, 2 of them already at RCPT); spf would too  -> refused 7, not lost:
       (spf would refuse the 5 left after RCPT; refused today already)
       forwarded with a valid ARC chain
    E  accepted, 10 recipients
    F  spf (enforce) refused at MAIL FROM: no recipient yet                  -> refused 0
    H  dmarc fail kept by a trusted forwarder's override, 9 recipients       -> override saved 9
    """
    return [
        txn(policies={"spf": would_reject()}, rcpts=5, authenticated=True, ip="198.51.100.7"),
        txn(
            policies={"spf": would_reject(), "require_starttls": ENFORCED},
            rcpts=4,
            rcpt_rejected=3,
            authenticated=False,
        ),
        txn(policies={"dmarc": ENFORCED}, rcpts=50, outcome="rejected", authenticated=False),
        txn(
            policies={"dmarc": ENFORCED, "spf": would_reject()},
            rcpts=7,
            rcpt_rejected=2,
            outcome="rejected",
            authenticated=False,
            header_from="bank.example",
            dmarc="fail",
            arc=arc_chain("fwd.example.net"),
        ),
        txn(policies={"spf": decision("monitor", "pass")}, rcpts=10),
        txn(policies={"spf": ENFORCED}, rcpts=0, outcome="rejected"),
        txn(
            policies={"dmarc": dmarc_override("trusted_forwarder", "trusted.example")},
            rcpts=9,
            arc=arc_chain("trusted.example"),
        ),
    ]


def test_recipients_known_answers(tmp_path: Path) -> None:
    doc = report(tmp_path, recipients_scenario())
    assert doc["totals"]["recipients"] == 5 + 4 + 50 + 7 + 10 + 0 + 9
    # refused today: C, D and F as a whole (50 + 7 + 0), and B's 3 at RCPT
    assert doc["totals"]["refused_recipients"] == 60
    spf = policy(doc, "spf")
    assert (spf["transactions"], spf["recipients"]) == (5, 5 + 4 + 7 + 10 + 0)
    # A 5, B 4 - 3 already refused at RCPT, D 7 - 2
    assert (spf["would_refuse"], spf["would_refuse_recipients"]) == (3, 11)
    assert (spf["refused"], spf["refused_recipients"]) == (1, 0)  # F: refused before any RCPT
    rs = policy(doc, "require_starttls")
    assert (rs["refused"], rs["refused_recipients"]) == (1, 3)  # B: only those refused at RCPT
    assert rs["affected"]["recipients"] == 3
    dm = policy(doc, "dmarc")
    assert (dm["refused"], dm["refused_recipients"]) == (2, 57)  # refused whole: all recipients
    assert dm["affected"]["recipients"] == 57
    assert dm["overrides_by"] == [
        {"override": "trusted_forwarder", "by": "trusted.example", "transactions": 1, "recipients": 9}
    ]
    # affected = would refuse + refused, with the same recipients
    a = spf["affected"]
    assert (a["transactions"], a["recipients"]) == (4, 11)
    assert (a["authenticated"], a["authenticated_recipients"]) == (1, 5)
    assert a["unauthenticated_recipients"] + a["unknown_recipients"] == 6
    assert a["paths"]["forwarded_arc"]["recipients"] == 5
    assert a["paths"]["forwarded_arc"]["sealers"] == [
        {"sealer": "fwd.example.net", "transactions": 1, "recipients": 5}
    ]
    assert dm["affected"]["paths"]["forwarded_arc"]["recipients"] == 7
    c = doc["combined"]
    # A 5 and B 1; D was refused today as a whole: not lost by switching spf
    assert (c["lost"], c["lost_recipients"]) == (2, 6)
    assert c["recipients"] == doc["totals"]["recipients"]
    assert c["lost_recipients_share"] == round(6 / 85, 6)
    assert (c["lost_by_policy"], c["lost_recipients_by_policy"]) == ({"spf": 2}, {"spf": 6})
    assert (c["lost_only_by_policy"], c["lost_recipients_only_by_policy"]) == ({"spf": 2}, {"spf": 6})
    assert (c["already_refused"], c["already_refused_recipients"]) == (3, 60)
    assert c["affected"]["authenticated_recipients"] == 5
    (day,) = c["daily"]
    assert (day["recipients"], day["lost_recipients"], day["refused_recipients"]) == (85, 6, 60)
    (host,) = doc["hosts"]
    assert (host["recipients"], host["would_lose_recipients"], host["refused_recipients"]) == (85, 6, 60)
    (spf_day,) = spf["daily"]
    assert (spf_day["would_refuse_recipients"], spf_day["refused_recipients"]) == (11, 0)
    # the authenticated network is suggested with its recipients; the sealer with its own
    (sugg,) = doc["suggestions"]
    assert (sugg["network"], sugg["authenticated_recipients_kept"]) == ("198.51.100.0/24", 5)
    (sealer,) = doc["sealer_suggestions"]
    assert (sealer["sealer"], sealer["transactions"], sealer["recipients"]) == ("fwd.example.net", 1, 7)


def test_recipient_counts_from_odd_events(tmp_path: Path) -> None:
    """A count refused at RCPT above the recipients seen counts as all of them; a negative count
    makes the line malformed; an event written before the milter logged recipients counts one."""
    old = txn(policies={"spf": would_reject()})
    del old["rcpt_count"], old["rcpt_rejected"]
    events = [
        txn(policies={"spf": would_reject()}, rcpts=2, rcpt_rejected=5),
        {**txn(policies={"spf": would_reject()}), "rcpt_count": -1},
        {**txn(policies={"spf": would_reject()}), "rcpt_rejected": -3},
        old,
    ]
    doc = report(tmp_path, events)
    assert doc["input"]["malformed_lines"] == 2
    spf = policy(doc, "spf")
    assert (spf["would_refuse"], spf["would_refuse_recipients"]) == (2, 0 + 1)
    assert doc["totals"]["recipients"] == 3 and doc["totals"]["refused_recipients"] == 2


def test_floor_simulation_counts_recipients(tmp_path: Path) -> None:
    plain = {"require_starttls": decision("monitor", "pass")}
    exempt = {"require_starttls": decision("monitor", "pass", exempt="network")}
    events = [
        txn(tls="TLSv1", ip="192.0.2.3", policies=plain, rcpts=3, authenticated=True),
        txn(tls="TLSv1.1", ip="192.0.2.4", policies=exempt, rcpts=4),
        txn(tls="TLSv1.2", ip="192.0.2.5", policies=plain, rcpts=6),
        conn(tls="TLSv1", ip="192.0.2.3"),
    ]
    f12, f13 = report(tmp_path, events)["tls"]["floor_simulation"]
    assert f12["transactions"]["recipients"] == 7
    assert f12["with_require_starttls"]["lost"]["recipients"] == 3
    assert f12["with_require_starttls"]["lost"]["authenticated_recipients"] == 3
    assert f13["with_require_starttls"]["lost"]["recipients"] == 9
    assert {c["ip"]: c["recipients"] for c in f12["top_clients"]} == {"192.0.2.3": 3, "192.0.2.4": 4}


def test_recipients_add_up_on_a_month(tmp_path: Path) -> None:
    """Every place that counts recipients agrees with the others on generated traffic."""
    doc = report(tmp_path, month(20_000, seed=4, policies=6))
    c = doc["combined"]
    assert c["recipients"] == doc["totals"]["recipients"] == sum(h["recipients"] for h in doc["hosts"])
    assert c["recipients"] > c["transactions"]  # messages to several recipients
    assert c["lost_recipients"] == sum(d["lost_recipients"] for d in c["daily"])
    assert c["lost_recipients"] == sum(h["would_lose_recipients"] for h in doc["hosts"])
    assert c["lost"] == sum(h["would_lose"] for h in doc["hosts"]) == c["affected"]["transactions"]
    ca = c["affected"]
    assert ca["recipients"] == c["lost_recipients"] == sum(ca["paths"][k]["recipients"] for k in ca["paths"])
    assert ca["recipients"] == sum(
        ca[f"{k}_recipients"] for k in ("authenticated", "unauthenticated", "unknown")
    )
    for p in doc["policies"]:
        assert p["would_refuse_recipients"] == sum(d["would_refuse_recipients"] for d in p["daily"])
        assert p["refused_recipients"] == sum(d["refused_recipients"] for d in p["daily"])
        assert p["recipients"] == sum(d["recipients"] for d in p["daily"])
        a = p["affected"]
        assert a["recipients"] == p["would_refuse_recipients"] + p["refused_recipients"], p["name"]
        # what it would refuse, less what enforce mode refused today (another policy, as a whole)
        assert c["lost_by_policy"].get(p["name"], 0) <= p["would_refuse"]
        assert c["lost_recipients_by_policy"].get(p["name"], 0) <= p["would_refuse_recipients"]
        assert c["lost_only_by_policy"].get(p["name"], 0) <= c["lost_by_policy"].get(p["name"], 0)


# ---- mail refused today is not lost by switching ----

TLS_ENFORCED = decision("enforce", "fail", "reject", applied=True)
DMARC_REJECTED = decision("enforce", "fail", "reject", applied=True)
DMARC_TEMPFAILED = decision("enforce", "temperror", "tempfail", applied=True)


def refused_today_scenario() -> list[dict[str, Any]]:
    """Seven messages, three of them refused today by an enforce-mode policy that a monitor-mode
    policy would refuse too, one refused only at RCPT for some recipients:

    A  tls_min_version (enforce) refused it at MAIL FROM; spf would too         -> refused 1 / 0
    B  dmarc (enforce) rejected it at end of message, 4 recipients; spf and     -> refused 1 / 4
       arc would refuse it too
    C  dmarc (enforce) tempfailed it, 3 recipients; require_starttls would      -> refused 1 / 3
       refuse it
    D  tls_min_version (enforce, exempt_recipients) refused 2 of 3 at RCPT;     -> refused 0 / 2,
       spf would refuse the message with the one left                             lost 1 / 1
    E  spf alone would refuse it, 5 recipients                                  -> lost 1 / 5
    F  spf and require_starttls would refuse it, 2 recipients                   -> lost 1 / 2
    G  accepted, 6 recipients
    """
    return [
        txn(
            tls="TLSv1",
            policies={"tls_min_version": TLS_ENFORCED, "spf": would_reject()},
            rcpts=0,
            outcome="rejected",
        ),
        txn(
            policies={"spf": would_reject(), "dmarc": DMARC_REJECTED, "arc": would_reject()},
            rcpts=4,
            outcome="rejected",
            authenticated=True,
        ),
        txn(
            tls=None,
            policies={"require_starttls": would_reject(), "dmarc": DMARC_TEMPFAILED},
            rcpts=3,
            outcome="tempfailed",
        ),
        txn(
            tls="TLSv1",
            policies={"tls_min_version": TLS_ENFORCED, "spf": would_reject()},
            rcpts=3,
            rcpt_rejected=2,
        ),
        txn(policies={"spf": would_reject()}, rcpts=5),
        txn(tls=None, policies={"spf": would_reject(), "require_starttls": would_reject()}, rcpts=2),
        txn(policies={"spf": decision("monitor", "pass"), "dmarc": decision("enforce", "pass")}, rcpts=6),
    ]


def test_mail_refused_today_is_not_lost(tmp_path: Path) -> None:
    doc = report(tmp_path, refused_today_scenario())
    c = doc["combined"]
    assert (c["already_refused"], c["already_refused_recipients"]) == (3, 4 + 3 + 2)
    # lost: D, E, F; never A, B or C, which enforce mode refused today
    assert (c["lost"], c["lost_recipients"]) == (3, 1 + 5 + 2)
    assert (c["affected"]["transactions"], c["affected"]["recipients"]) == (3, 8)
    assert c["affected"]["paths"]["direct"] == {"transactions": 3, "recipients": 8}
    assert c["affected"]["authenticated"] == 0  # B, the authenticated one, is not lost
    assert c["lost_by_policy"] == {"require_starttls": 1, "spf": 3}
    assert c["lost_recipients_by_policy"] == {"require_starttls": 2, "spf": 8}
    assert c["lost_only_by_policy"] == {"spf": 2}  # D and E; not A (refused by tls_min_version)
    assert c["lost_recipients_only_by_policy"] == {"spf": 6}
    (day,) = c["daily"]
    assert (day["lost"], day["lost_recipients"], day["refused"], day["refused_recipients"]) == (3, 8, 3, 9)
    (host,) = doc["hosts"]
    assert (host["would_lose"], host["would_lose_recipients"], host["refused"]) == (3, 8, 3)
    # what each policy would refuse is what its decisions say, refused today or not
    spf, rs, arc = policy(doc, "spf"), policy(doc, "require_starttls"), policy(doc, "arc")
    assert (spf["would_refuse"], spf["would_refuse_recipients"]) == (5, 0 + 4 + 1 + 5 + 2)
    assert (rs["would_refuse"], rs["would_refuse_recipients"]) == (2, 3 + 2)
    assert (arc["would_refuse"], arc["would_refuse_recipients"]) == (1, 4)
    # TLS floor: A (refused today) is below TLS 1.2 but not lost; D's one recipient is
    f12 = doc["tls"]["floor_simulation"][0]
    assert (f12["transactions"]["transactions"], f12["transactions"]["recipients"]) == (2, 1)
    assert (
        f12["with_require_starttls"]["lost"]["transactions"],
        f12["with_require_starttls"]["lost"]["recipients"],
    ) == (1, 1)

    text = render_text(doc)
    assert "  3 messages / 8 recipients lost (" in text
    head = text[: text.index("== Combined")].splitlines()
    rows = {n: next(r for r in head if r.startswith(f"  {n} ")) for n in ("spf", "require_starttls", "arc")}
    assert re.search(r"\s2 / 6\s", rows["spf"]), rows["spf"]
    assert re.search(r"\s0 / 0\s", rows["require_starttls"]) and re.search(r"\s0 / 0\s", rows["arc"])
    assert "  lost: 3 messages / 8 recipients," in text
    spf_section = text[text.index("== Policy spf ==") : text.index("== Policy dmarc ==")]
    assert "of which 2 messages / 4 recipients refused today by enforce mode" in spf_section
    assert "3 messages / 8 recipients lost if enforced" in spf_section

    page = render_html(doc)
    assert "<b>3 messages / 8 recipients</b> would be lost" in page
    answer = page[page.index('<section id="answer"') : page.index('<section id="senders"')]
    cells = re.findall(r'<tr><th scope="row">spf .*?</tr>', answer)
    assert cells and "<td>2 / 6</td>" in cells[0]
    card = page[page.index('id="policy-spf"') : page.index('id="policy-dmarc"')]
    assert "2 messages / 4 recipients refused today by enforce mode" in card


def test_generated_traffic_never_loses_mail_refused_today() -> None:
    """On generated traffic (dmarc enforced, five policies in monitor mode) the combined loss and
    each policy's part in it are the transactions a monitor-mode policy would refuse that enforce
    mode did not refuse today, counted here from the events themselves."""
    data = b"".join(generate(6000, seed=5, hosts=2, days=13, policies=6))
    doc = build_report(["-"], stdin=io.BytesIO(data))
    hand = count_by_hand([json.loads(line) for line in data.splitlines()])
    lost, by, only = hand["lost"], hand["by"], hand["only"]
    # the traffic has mail both refused today and refused by a monitor-mode policy
    assert hand["refused_today"] > 0
    c = doc["combined"]
    assert [c["lost"], c["lost_recipients"]] == lost
    assert c["lost_by_policy"] == {k: v[0] for k, v in by.items()}
    assert c["lost_recipients_by_policy"] == {k: v[1] for k, v in by.items()}
    assert c["lost_only_by_policy"] == {k: v[0] for k, v in only.items()}
    assert c["lost_recipients_only_by_policy"] == {k: v[1] for k, v in only.items()}
    assert sum(h["would_lose"] for h in doc["hosts"]) == lost[0]
    assert sum(d["lost_recipients"] for d in c["daily"]) == lost[1]


# ---- a report without events says why ----


def test_all_events_filtered_out(tmp_path: Path) -> None:
    events = [
        txn(seconds=60, policies={"spf": would_reject()}),
        txn(seconds=3600, policies={"spf": decision("enforce", "pass")}),
        conn(seconds=7200),
    ]
    since = "2026-11-25T00:00:00.000Z"
    doc = report(tmp_path, events, since=since)
    assert doc["input"]["filtered_out"] == 3 and not doc["input"]["events"]
    assert doc["input"]["filtered_out_period"] == {
        "first": "2026-11-20T00:01:00.000Z",
        "last": "2026-11-20T02:00:00.000Z",
    }
    reason = (
        f"all 3 events read were filtered out by --since {since};"
        " they are from 2026-11-20T00:01:00.000Z to 2026-11-20T02:00:00.000Z"
    )
    text = render_text(doc)
    assert reason in text
    assert f"\nNo events to report: {reason}.\n" in text and f"\n  NO EVENTS: {reason}\n" in text
    for wrong in (
        "No policy is in monitor mode",
        "NO EVENTS read",
        "JSON event log",
        "Refused today",
        "WARNING",
    ):
        assert wrong not in text, wrong
    page = render_html(doc)
    assert e_(reason) in page
    for wrong in ("No policy is in monitor mode", "No events read", "JSON event log"):
        assert wrong not in page, wrong
    # one event, another filter: the words agree with the count
    doc = report(tmp_path, events[:1], hosts=frozenset({"mx9"}))
    text = render_text(doc)
    assert "the only event read was filtered out by --host mx9; it is from 2026-11-20T00:01:00.000Z" in text
    assert "1 lines" not in text and "1 events" not in text
    # events that are kept: no such sentence, the span of those left out is in the JSON
    doc = report(tmp_path, events, until="2026-11-20T00:30:00.000Z")
    assert doc["input"]["filtered_out_period"] == {
        "first": "2026-11-20T01:00:00.000Z",
        "last": "2026-11-20T02:00:00.000Z",
    }
    assert "filtered out by" not in render_text(doc)
    assert report(tmp_path, events)["input"]["filtered_out_period"] == {"first": None, "last": None}


def test_no_events_without_filters_says_why(tmp_path: Path) -> None:
    empty = render_text(report(tmp_path, b""))
    assert "the input is empty" in empty and "No policy is in monitor mode" not in empty
    junk = report(tmp_path, b'{"level":"info","msg":"ready"}\n')
    text = render_text(junk)
    assert "1 line read, no event among them: is this mailpolicy's JSON event log?" in text
    assert "1 line: 0 events" in text and "No policy is in monitor mode" not in text
    assert "No policy is in monitor mode" not in render_html(junk)


# ---- words and numbers ----


@pytest.mark.parametrize(
    ("fraction", "text"),
    [
        (0, "0%"),
        (0.0, "0%"),
        (1e-9, "<0.1%"),
        (0.00049, "<0.1%"),
        (0.00099, "<0.1%"),
        (0.001, "0.1%"),
        (0.0123, "1.2%"),
        (0.5, "50.0%"),
        (0.998, "99.8%"),
        (0.999, "99.9%"),
        (0.9991, ">99.9%"),
        (0.99951, ">99.9%"),
        (1, "100%"),
    ],
)
def test_shares_never_read_as_nothing_or_everything(fraction: float, text: str) -> None:
    assert t.pct(fraction) == text


def test_shares_from_counts_not_rounded_json() -> None:
    # 1 in 10 million: the JSON's 6-decimal share is 0.0, the report still says it is not nothing
    assert round(1 / 10_000_000, 6) == 0.0
    assert t.share(1, 10_000_000) == "<0.1%"
    assert t.share(0, 10) == "0%"
    assert t.share(0, 0) == "-"


def test_plurals_and_thousands() -> None:
    assert t.plural(1, "message") == "1 message"
    assert t.plural(0, "message") == "0 messages"
    assert t.plural(2, "message") == "2 messages"
    assert t.plural(1777, "recipient") == "1,777 recipients"
    assert t.plural(2, "policy") == "2 policies"
    assert t.plural(2, "day") == "2 days"
    assert t.plural(3, "address") == "3 addresses"
    assert t.msgs_rcpts(1, 50) == "1 message / 50 recipients"


@pytest.mark.parametrize(
    ("ip", "name", "label"),
    [
        ("192.0.2.1", "[192.0.2.1]", "[192.0.2.1]"),
        ("192.0.2.1", "192.0.2.1", "[192.0.2.1]"),
        ("192.0.2.1", "unknown", "[192.0.2.1]"),
        ("192.0.2.1", "", "[192.0.2.1]"),
        ("192.0.2.1", None, "[192.0.2.1]"),
        ("2001:db8::1", "[IPv6:2001:DB8::1]", "[2001:db8::1]"),
        ("::ffff:192.0.2.1", "[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]"),
        ("192.0.2.1", "mx.example.net", "mx.example.net [192.0.2.1]"),
        ("(unknown)", "", "(unknown)"),
    ],
)
def test_a_client_shows_its_address_once(ip: str, name: str | None, label: str) -> None:
    assert t.client({"ip": ip, "name": name}) == label


def test_a_long_client_name_is_shortened_never_its_address() -> None:
    c = {"ip": "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "name": "a-very-long-host-name." * 5 + "example"}
    for width in (20, 40, 60):
        label = t.client(c, width)
        assert label.endswith(" [2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]")
        assert label.startswith("a-very-")
        assert "…" in label
    assert t.client({"ip": "192.0.2.1", "name": "mx.example.net"}, 26) == "mx.example.net [192.0.2.1]"
    assert t.client({"ip": "192.0.2.1", "name": "mx.example.net"}, 20) == "mx.exam… [192.0.2.1]"


# ---- one policy order ----


def test_policy_order_is_the_milters() -> None:
    from mailpolicy.checks import CHECKS

    assert tuple(CHECKS) == POLICY_ORDER
    names = ["zz_later", "arc", "dmarc", "spf", "tls_min_version", "require_starttls", "dnsbl"]
    assert sorted(names, key=policy_order) == [*POLICY_ORDER, "dnsbl", "zz_later"]


def test_one_policy_order_everywhere(tmp_path: Path) -> None:
    ip = "198.51.100.1"  # authenticated mail refused from one network: a suggestion for each policy
    events = [
        txn(
            policies={name: would_reject() for name in ("zz_later", "dmarc", "arc", "spf")},
            ip=ip,
            authenticated=True,
        ),
        txn(tls=None, policies={"require_starttls": would_reject()}, ip=ip, authenticated=True),
        txn(tls="TLSv1", policies={"tls_min_version": would_reject()}, ip=ip, authenticated=True),
    ]
    doc = report(tmp_path, events)
    order = ["require_starttls", "tls_min_version", "spf", "dmarc", "arc", "zz_later"]
    assert [p["name"] for p in doc["policies"]] == order
    c = doc["combined"]
    for key in ("policies", "lost_by_policy", "lost_recipients_by_policy"):
        assert list(c[key]) == order, key
    assert [s["policy"] for s in doc["suggestions"]] == order
    toml = doc["suggestions_toml"]
    at = [toml.index(f"[policies.{name}]") for name in order]
    assert at == sorted(at)
    text = render_text(doc)
    at = [text.index(f"== Policy {name} ==") for name in order]
    assert at == sorted(at)
    answer = text[: text.index("== Combined")]
    at = [answer.index(f"\n  {name} ") for name in order]
    assert at == sorted(at)
    page = render_html(doc)
    at = [page.index(f'id="spark-{name}"') for name in order]
    assert at == sorted(at)
    at = [page.index(f'id="policy-{name}"') for name in order]
    assert at == sorted(at)


# ---- the answer first, in every format ----


@pytest.fixture(scope="module")
def month_doc() -> dict[str, Any]:
    return build_report(["-"], stdin=io.BytesIO(month(40_000, seed=30)))


def test_text_answers_first(month_doc: dict[str, Any]) -> None:
    text = render_text(month_doc)
    head = text.splitlines()[:16]
    c, ca = month_doc["combined"], month_doc["combined"]["affected"]
    assert head[0] == "mailpolicy report: if I enforced these policies, which mail would I lose?"
    assert head[1].startswith("2026-11-20 .. 2026-12-19 (30 days), 4 hosts: ")
    assert head[3] == "If every monitor-mode policy were enforced (require_starttls, tls_min_version, spf):"
    assert head[4].startswith(f"  {c['lost']:,} messages / {c['lost_recipients']:,} recipients lost (")
    assert head[5].startswith(
        f"  of which {ca['authenticated']:,} messages / {ca['authenticated_recipients']:,} recipients"
        " authenticated"
    )
    table = head[head.index(next(h for h in head if h.startswith("  policy "))) :]
    assert [row.split()[0] for row in table[2:6]] == ["require_starttls", "tls_min_version", "spf", "dmarc"]
    # then the trend: one line per series, each on its own scale, before any detail section
    trend = text[text.index("  per day (one character a day") : text.index("== Combined")]
    assert len(trend.strip().splitlines()) == 1 + 5  # the combined loss, three monitor, dmarc refused
    assert text.index("== Input ==") > text.index("== TLS ==") > text.index("== Combined")
    assert not re.search(r"(?<![\d.])0\.0%", text) and not re.search(
        r"(?<![\d,])1 (messages|recipients)", text
    )


def test_json_answers_first(month_doc: dict[str, Any]) -> None:
    keys = list(json.loads(json.dumps(month_doc)))
    assert keys[:8] == [
        "report_schema",
        "generated",
        "mailpolicy_version",
        "event_schema",
        "filters",
        "period",
        "combined",
        "policies",
    ]
    assert keys.index("input") == len(keys) - 1
    c = month_doc["combined"]
    for key in ("recipients", "lost_recipients", "lost_recipients_share", "already_refused_recipients"):
        assert isinstance(c[key], int | float), key
    assert month_doc["report_schema"] == 1


class _Tables(HTMLParser):
    """Each <table>: whether it sits inside a <details>, and its header cells."""

    def __init__(self) -> None:
        super().__init__()
        self.details = 0
        self.tables: list[tuple[bool, list[str]]] = []
        self._th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "details":
            self.details += 1
        elif tag == "table":
            self.tables.append((self.details > 0, []))
        elif tag == "th":
            self._th = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "details":
            self.details -= 1
        elif tag == "th":
            self._th = False

    def handle_data(self, data: str) -> None:
        if self._th and self.tables:
            self.tables[-1][1].append(data.strip())


def test_html_answers_first_without_daily_tables(month_doc: dict[str, Any]) -> None:
    page = render_html(month_doc)
    sections = re.findall(r'<section id="([a-z-]+)"', page)
    assert sections == ["answer", "senders", "lookalikes", "suggestions", "policies", "tls", "input"]
    c = month_doc["combined"]
    answer = page[page.index('<section id="answer"') : page.index('<section id="senders"')]
    assert f"<b>{c['lost']:,} messages / {c['lost_recipients']:,} recipients</b> would be lost" in answer
    # the combined line is its own row and sparkline, never drawn over a policy's line
    assert answer.count('class="spark"') == 1 + len(month_doc["policies"])
    assert 'id="spark-all"' in answer
    # numbers per day exist only one click away
    parser = _Tables()
    parser.feed(page)
    dated = [folded for folded, heads in parser.tables if "date" in heads]
    assert dated and all(dated), "a table of days outside <details>"
    assert "<script" not in page.lower()


def test_small_multiples_each_on_its_own_scale() -> None:
    """23 next to 1,777: each policy's line reaches the top of its own chart; a count of 1 is a
    short bar (the scale is at least 10), never full width."""
    dates = [f"2026-11-{d:02d}" for d in range(1, 8)]
    big = t.Series("spf", "would refuse", dates, [100, 300, 1777, 200, 100, 90, 80], [0] * 7)
    small = t.Series("tls_min_version", "would refuse", dates, [1, 0, 23, 2, 0, 0, 1], [0] * 7)
    tiny = t.Series("arc", "would refuse", dates, [0, 1, 0, 0, 0, 0, 0], [0] * 7)

    def peak_y(svg: str) -> float:
        return float(re.search(r'<circle cx="[\d.]+" cy="([\d.]+)"', svg).group(1))  # type: ignore[union-attr]

    top = 2.0  # the sparkline's padding
    assert peak_y(sparkline(big, "a")) == peak_y(sparkline(small, "b")) == top
    assert peak_y(sparkline(tiny, "c")) > 15  # 1 of at least 10: near the bottom of 20 px
    assert tiny.spark() == "·▁·····"
    assert small.spark()[2] == "█" and big.spark()[2] == "█"
    one = [{"domain": "a.example", "transactions": 1, "recipients": 1, "authenticated": 1,
            "unauthenticated": 0, "unknown": 0}]  # fmt: skip
    bars = bar_table(one, "domain", "x", "sender domain")
    assert re.findall(r"width:([\d.]+)%", bars) == ["10.00"]
    assert ">0 to 10<" in bars


def test_html_client_labels_keep_the_address(tmp_path: Path) -> None:
    long_name = "a-rather-long-reverse-name-for-a-mail-server." * 2 + "example"
    events = [
        txn(policies={"spf": would_reject()}, ip="2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff", name=long_name),
        txn(policies={"spf": would_reject()}, ip="192.0.2.1", name="[192.0.2.1]"),
    ]
    page = render_html(report(tmp_path, events))
    labels = re.findall(r'<th scope="row" title="([^"]*)">([^<]*)</th>', page)
    shown = {text for _, text in labels}
    assert "[192.0.2.1]" in shown and "[192.0.2.1] [192.0.2.1]" not in page
    v6 = [text for whole, text in labels if "eeee" in whole]
    assert v6 and all(text.endswith(" [2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]") for text in v6)
    assert all(len(text) < len(long_name) for text in v6)
