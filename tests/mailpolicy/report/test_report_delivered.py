"""Lost mail is mail delivered today: a transaction whose outcome is ``accepted`` or
``quarantined`` that a monitor-mode policy would refuse. Mail enforce mode refused today and mail
that was never delivered (outcome ``aborted``: the client sent RSET or QUIT or went away, or the
MTA itself refused every recipient) is not lost by switching, wherever lost is counted; what a
policy would refuse still counts it, and the policy's section says how much was aborted. The
suggestions (exemptions, trusted ARC sealers) keep only such mail: never mail another enforced
policy refuses anyway, nor mail that was never delivered. Known answers on hand-built events, in
the JSON, text and HTML reports."""

from __future__ import annotations

import io
import json
import random
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from mailpolicy.report import build_report, main
from mailpolicy.report.render_html import render as render_html
from mailpolicy.report.render_text import render as render_text
from support.report_events import (
    arc_chain,
    count_by_hand,
    decision,
    generate,
    lines,
    policy,
    report,
    txn,
    would_reject,
)

ENFORCED = decision("enforce", "fail", "reject", applied=True)
NOT_APPLIED = decision("enforce", "fail", "reject")  # another enforce-mode refusal came first
QUARANTINED = decision("enforce", "fail", "quarantine", applied=True)
EXEMPT = decision("monitor", "pass", exempt="network")


def aborted_scenario() -> list[dict[str, Any]]:
    """Ten messages:

    A  spf would refuse; aborted, the MTA refused every recipient (0)        -> not lost
    B  spf would refuse; aborted after RCPT, 2 recipients, TLSv1             -> not lost
    C  spf would refuse; accepted, 3 recipients, authenticated               -> lost 1 / 3
    D  spf would refuse; quarantined by dmarc (enforce), 2 recipients        -> lost 1 / 2
    E  spf would refuse; tls_min_version (enforce) refused it at MAIL, TLSv1 -> refused today
    F  require_starttls would refuse; aborted, 1 recipient, plaintext        -> not lost
    G  accepted, nothing to refuse, 4 recipients
    H  TLSv1, require_starttls exempt (network); aborted                     -> not kept by the exemption
    I  TLSv1, require_starttls exempt (network); accepted                    -> kept by the exemption
    J  TLSv1, accepted, 1 recipient                                          -> lost below a TLS floor
    """
    return [
        txn(
            policies={"spf": would_reject()},
            rcpts=0,
            outcome="aborted",
            authenticated=True,
            ip="198.51.100.7",
        ),
        txn(tls="TLSv1", policies={"spf": would_reject()}, rcpts=2, outcome="aborted"),
        txn(policies={"spf": would_reject()}, rcpts=3, authenticated=True),
        txn(policies={"spf": would_reject(), "dmarc": QUARANTINED}, rcpts=2, outcome="quarantined"),
        txn(
            tls="TLSv1",
            policies={"tls_min_version": ENFORCED, "spf": would_reject()},
            rcpts=0,
            outcome="rejected",
        ),
        txn(tls=None, policies={"require_starttls": would_reject()}, rcpts=1, outcome="aborted"),
        txn(policies={"spf": decision("monitor", "pass")}, rcpts=4),
        txn(tls="TLSv1", policies={"require_starttls": EXEMPT}, rcpts=1, outcome="aborted"),
        txn(tls="TLSv1", policies={"require_starttls": EXEMPT}, rcpts=1),
        txn(tls="TLSv1", rcpts=1),
    ]


def test_mail_never_delivered_is_not_lost(tmp_path: Path) -> None:
    doc = report(tmp_path, aborted_scenario())
    c = doc["combined"]
    # lost: C and D only
    assert (c["lost"], c["lost_recipients"]) == (2, 5)
    assert (c["affected"]["transactions"], c["affected"]["recipients"]) == (2, 5)
    assert c["affected"]["authenticated"] == 1  # C; not A, which was never delivered
    assert (c["lost_by_policy"], c["lost_recipients_by_policy"]) == ({"spf": 2}, {"spf": 5})
    assert (c["lost_only_by_policy"], c["lost_recipients_only_by_policy"]) == ({"spf": 2}, {"spf": 5})
    assert (c["already_refused"], c["already_refused_recipients"]) == (1, 0)
    (day,) = c["daily"]
    assert (day["lost"], day["lost_recipients"]) == (2, 5)
    (host,) = doc["hosts"]
    assert (host["would_lose"], host["would_lose_recipients"]) == (2, 5)
    # what each policy would refuse is what its decisions say, delivered or not
    spf, rs = policy(doc, "spf"), policy(doc, "require_starttls")
    assert (spf["would_refuse"], spf["would_refuse_recipients"]) == (5, 0 + 2 + 3 + 2 + 0)
    assert (spf["would_refuse_aborted"], spf["would_refuse_aborted_recipients"]) == (2, 2)
    assert spf["affected"]["transactions"] == 5
    assert (rs["would_refuse"], rs["would_refuse_recipients"]) == (1, 1)
    assert (rs["would_refuse_aborted"], rs["would_refuse_aborted_recipients"]) == (1, 1)
    assert (policy(doc, "dmarc")["would_refuse_aborted"], policy(doc, "dmarc")["quarantined"]) == (0, 1)
    # TLS floor: B, E, H, I and J are below TLS 1.2; only J is lost (B aborted, E refused today,
    # H and I exempt), and only I is kept by the exemption (H was never delivered)
    f12 = doc["tls"]["floor_simulation"][0]
    assert (f12["transactions"]["transactions"], f12["transactions"]["recipients"]) == (5, 2 + 0 + 1 + 1 + 1)
    lost = f12["with_require_starttls"]
    assert (lost["lost"]["transactions"], lost["lost"]["recipients"]) == (1, 1)
    assert lost["lost_clients"] == 1
    assert lost["kept_by_exemption"] == {"network": 1}

    text = render_text(doc)
    assert "  2 messages / 5 recipients lost (" in text
    assert "  lost: 2 messages / 5 recipients," in text
    spf_section = text[text.index("== Policy spf ==") : text.index("== Policy dmarc ==")]
    assert (
        "    of which 1 message / 0 recipients refused today by enforce mode (not lost by switching),"
        " 2 messages / 2 recipients not delivered anyway (aborted), 2 messages / 5 recipients lost if"
        " enforced\n"
    ) in spf_section
    rs_section = text[text.index("== Policy require_starttls ==") : text.index("== Policy tls_min_version")]
    assert (
        "    of which 1 message / 1 recipient not delivered anyway (aborted), 0 messages / 0 recipients"
        " lost if enforced\n"
    ) in rs_section
    head = text[: text.index("== Combined")]
    assert "not aborted" in head  # the note under the answer says what lost leaves out

    page = render_html(doc)
    assert "<b>2 messages / 5 recipients</b> would be lost" in page
    card = page[page.index('id="policy-spf"') : page.index('id="policy-dmarc"')]
    numbers = card[card.index("<details>") :]
    assert (
        "Of what it would refuse, 1 message / 0 recipients refused today by enforce mode (not lost by"
        " switching), 2 messages / 2 recipients not delivered anyway (aborted)."
    ) in numbers
    card = page[page.index('id="policy-require_starttls"') : page.index('id="policy-tls_min_version"')]
    numbers = card[card.index("<details>") :]
    assert "Of what it would refuse, 1 message / 1 recipient not delivered anyway (aborted)." in numbers


def test_an_unknown_outcome_is_not_delivered(tmp_path: Path) -> None:
    """Only ``accepted`` and ``quarantined`` say the mail was delivered: an event without an
    outcome, or with one this report does not know, is not lost either."""
    events = [
        {**txn(policies={"spf": would_reject()}, rcpts=2), "outcome": None},
        txn(policies={"spf": would_reject()}, rcpts=2, outcome="discarded"),
        txn(policies={"spf": would_reject()}, rcpts=3),
    ]
    doc = report(tmp_path, events)
    assert (doc["combined"]["lost"], doc["combined"]["lost_recipients"]) == (1, 3)
    spf = policy(doc, "spf")
    assert (spf["would_refuse"], spf["would_refuse_aborted"], spf["would_refuse_aborted_recipients"]) == (
        3,
        2,
        4,
    )


def test_generated_traffic_loses_only_mail_delivered_today() -> None:
    """Generated traffic (dmarc enforced, five policies in monitor mode) with one accepted message in
    five turned into an aborted one: the combined loss, each policy's part in it and what it would
    refuse that was aborted, counted here from the events themselves."""
    rng = random.Random(11)
    events = []
    for line in b"".join(generate(4000, seed=7, hosts=2, days=5, policies=6)).splitlines():
        ev = json.loads(line)
        if ev.get("event") == "transaction" and ev["outcome"] == "accepted" and rng.random() < 0.2:
            ev["outcome"] = "aborted"
            if rng.random() < 0.5:
                ev["rcpt_count"] = 0  # the MTA refused every recipient
        events.append(ev)
    doc = build_report(["-"], stdin=io.BytesIO(lines(events)))
    hand = count_by_hand(events)
    lost, by, only, aborted = hand["lost"], hand["by"], hand["only"], hand["aborted"]
    assert aborted and sum(v[0] for v in aborted.values()) > 10
    c = doc["combined"]
    assert [c["lost"], c["lost_recipients"]] == lost
    assert c["affected"]["transactions"] == lost[0]
    assert c["lost_by_policy"] == {k: v[0] for k, v in by.items()}
    assert c["lost_recipients_by_policy"] == {k: v[1] for k, v in by.items()}
    assert c["lost_only_by_policy"] == {k: v[0] for k, v in only.items()}
    assert c["lost_recipients_only_by_policy"] == {k: v[1] for k, v in only.items()}
    assert sum(h["would_lose"] for h in doc["hosts"]) == lost[0]
    assert sum(d["lost"] for d in c["daily"]) == lost[0]
    assert sum(d["lost_recipients"] for d in c["daily"]) == lost[1]
    for p in doc["policies"]:
        want = aborted.get(p["name"], [0, 0])
        assert [p["would_refuse_aborted"], p["would_refuse_aborted_recipients"]] == want, p["name"]
        # would refuse = lost + refused today + aborted, for each policy
        refused_today = p["would_refuse"] - c["lost_by_policy"].get(p["name"], 0) - want[0]
        assert refused_today >= 0, p["name"]


# ---- suggestions keep only mail that would otherwise be lost ----

N1, N2 = "192.0.2.1", "198.51.100.1"


def exemption_scenario() -> list[dict[str, Any]]:
    """From 192.0.2.0/24 (plaintext), what require_starttls (monitor) would refuse:

    3 authenticated, spf (enforce) refused them at MAIL FROM   -> refused anyway: not kept
    2 authenticated, accepted, 2 recipients each                -> kept 2 / 4
    1 authenticated, aborted (every recipient refused by the MTA) -> never delivered: not kept
    1 unauthenticated, accepted                                 -> let through 1
    2 unauthenticated, aborted                                  -> never delivered: not let through

    From 198.51.100.0/24, what spf (enforce) refused, all authenticated:

    2 refused by spf alone                                      -> kept 2
    1 refused by spf, which tls_min_version (enforce) refuses too -> refused anyway: not kept

    The 3 spf refused from 192.0.2.0/24 are kept by an spf exemption (spf alone refused them)."""
    rs = would_reject()
    return (
        [
            txn(
                tls=None,
                ip=N1,
                policies={"require_starttls": rs, "spf": ENFORCED},
                rcpts=0,
                outcome="rejected",
                authenticated=True,
            )
        ]
        * 3
        + [txn(tls=None, ip=N1, policies={"require_starttls": rs}, rcpts=2, authenticated=True)] * 2
        + [
            txn(
                tls=None,
                ip=N1,
                policies={"require_starttls": rs},
                rcpts=0,
                outcome="aborted",
                authenticated=True,
            )
        ]
        + [txn(tls=None, ip=N1, policies={"require_starttls": rs}, rcpts=1, authenticated=False)]
        + [
            txn(
                tls=None,
                ip=N1,
                policies={"require_starttls": rs},
                rcpts=1,
                outcome="aborted",
                authenticated=False,
            )
        ]
        * 2
        + [txn(ip=N2, policies={"spf": ENFORCED}, rcpts=0, outcome="rejected", authenticated=True)] * 2
        + [
            txn(
                tls="TLSv1",
                ip=N2,
                policies={"tls_min_version": NOT_APPLIED, "spf": ENFORCED},
                rcpts=0,
                outcome="rejected",
                authenticated=True,
            )
        ]
    )


def test_exemptions_keep_only_mail_that_would_otherwise_be_lost(tmp_path: Path) -> None:
    doc = report(tmp_path, exemption_scenario())
    sugg = {(s["policy"], s["network"]): s for s in doc["suggestions"]}
    assert list(sugg) == [
        ("require_starttls", "192.0.2.0/24"),
        ("spf", "192.0.2.0/24"),
        ("spf", "198.51.100.0/24"),
    ]
    rs = sugg[("require_starttls", "192.0.2.0/24")]
    assert (rs["authenticated_kept"], rs["authenticated_recipients_kept"]) == (2, 4)
    assert (rs["unauthenticated_let_through"], rs["unauthenticated_recipients_let_through"]) == (1, 1)
    assert (rs["unknown_let_through"], rs["unknown_recipients_let_through"]) == (0, 0)
    assert rs["affected"] == 9  # what require_starttls would refuse from it, delivered or not
    assert rs["authenticated_share_of_policy"] == 1.0
    spf1, spf2 = sugg[("spf", "192.0.2.0/24")], sugg[("spf", "198.51.100.0/24")]
    assert (spf1["authenticated_kept"], spf1["affected"]) == (3, 3)
    assert (spf2["authenticated_kept"], spf2["affected"]) == (2, 3)
    assert (spf1["authenticated_share_of_policy"], spf2["authenticated_share_of_policy"]) == (0.6, 0.4)

    # --policy require_starttls: spf's refusals are still refusals (the outcome says so)
    (only,) = report(tmp_path, exemption_scenario(), policies=frozenset({"require_starttls"}))["suggestions"]
    assert (only["authenticated_kept"], only["unauthenticated_let_through"], only["affected"]) == (2, 1, 9)

    snippet = doc["suggestions_toml"]
    tomllib.loads(snippet)
    assert (
        "[policies.require_starttls]\n# keeps 2 of 2 authenticated transactions (4 of 4 recipients) this"
        " policy alone refuses or would lose; lets 1 unauthenticated through\n"
    ) in snippet
    assert '    "192.0.2.0/24",  # 2 authenticated kept, 1 unauthenticated let through;' in snippet
    assert (
        "[policies.spf]\n# keeps 5 of 5 authenticated transactions (0 of 0 recipients) this policy alone"
        " refuses or would lose; lets 0 unauthenticated through\n"
    ) in snippet
    assert '    "198.51.100.0/24",  # 2 authenticated kept, 0 unauthenticated let through' in snippet

    text = render_text(doc)
    section = text[text.index("== Suggestions ==") : text.index("== Policy")]
    assert re.search(
        r"\n\s*require_starttls\s+192\.0\.2\.0/24\s+9\s+2\s+4\s+1\s+mail\.example\.net\n", section
    )
    assert re.search(r"\n\s*spf\s+198\.51\.100\.0/24\s+3\s+2\s+0\s+0\s+mail\.example\.net\n", section)


def test_a_network_is_suggested_on_the_mail_the_exemption_changes(tmp_path: Path) -> None:
    """At least half of what exempting the network lets through must be authenticated: its spam that
    was never delivered does not count against it, its authenticated mail that was never delivered
    not for it."""
    rs = {"require_starttls": would_reject()}
    events = (
        [txn(tls=None, ip="203.0.113.1", policies=rs, authenticated=True)]
        + [txn(tls=None, ip="203.0.113.2", policies=rs, authenticated=False, outcome="aborted")] * 3
        # never delivered: authenticated, but nothing to keep
        + [txn(tls=None, ip="2001:db8:7::1", policies=rs, authenticated=True, outcome="aborted")] * 4
    )
    doc = report(tmp_path, events)
    assert [
        (s["network"], s["authenticated_kept"], s["unauthenticated_let_through"]) for s in doc["suggestions"]
    ] == [("203.0.113.0/24", 1, 0)]
    # nothing delivered that a policy would refuse: nothing to suggest
    doc = report(tmp_path, events[1:])
    assert doc["suggestions"] == [] and doc["suggestions_toml"] == ""
    assert "No exemption" not in render_text(doc)


def test_sealers_keep_only_mail_that_would_otherwise_be_lost(tmp_path: Path) -> None:
    lists = "lists.example.org"
    rej = {"dmarc": would_reject(), "spf": decision("monitor", "pass")}

    def fwd(policies: dict[str, Any], chain: tuple[str, ...] = (lists,), **kw: Any) -> dict[str, Any]:
        return txn(policies=policies, header_from="bank.example", dmarc="fail", arc=arc_chain(*chain), **kw)

    events = [
        fwd(rej, rcpts=2),
        fwd(rej, rcpts=3, outcome="quarantined"),  # quarantined by another policy: delivered
        fwd(rej, ("origin.example", lists), rcpts=4, outcome="aborted"),  # never delivered
        fwd({"dmarc": would_reject(), "spf": ENFORCED}, rcpts=0, outcome="rejected"),  # refused anyway
        fwd({"dmarc": ENFORCED}, rcpts=5, outcome="rejected"),  # refused by dmarc alone: kept
        fwd(rej, ("fwd.example.net",), outcome="aborted"),  # nothing kept: no suggestion
    ]
    doc = report(tmp_path, events)
    assert doc["sealer_suggestions"] == [
        {
            "policy": "dmarc",
            "sealer": lists,
            "transactions": 3,
            "recipients": 2 + 3 + 5,
            "sender_domains": 1,
            "sender_domain_names": ["bank.example"],
            "earlier_sealers": [],
        }
    ]
    snippet = doc["suggestions_toml"]
    assert (
        "# keeps up to 3 DMARC failures (10 recipients) this policy alone refuses or would lose"
        " (forwarded, valid ARC)\n"
    ) in snippet
    assert (
        f'trusted_arc_sealers = ["{lists}"]  # up to 3 transactions would be kept (from bank.example)\n'
        in (snippet)
    )
    # the paths still name every sealer of what dmarc refuses or would refuse
    sealers = policy(doc, "dmarc")["affected"]["paths"]["forwarded_arc"]["sealers"]
    assert [s["sealer"] for s in sealers] == [lists, "fwd.example.net"]


# ---- words agree with the counts ----


def test_input_summary_words_agree_with_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def err_of(*args: str) -> str:
        main(["--format", "json", "-o", str(tmp_path / "r.json"), *args])
        return capsys.readouterr().err

    one = tmp_path / "one.log"
    one.write_bytes(lines([txn()]))
    err = err_of("--since", "2027-01-01", str(one))
    assert err.startswith(
        "mailpolicy report: 1 event read, filtered out by --since 2027-01-01 (2027-01-01T00:00:00.000Z);"
        " the event read is from 2026-11-20T00:00:00.000Z (hosts: mx1)\n"
    ), err
    junk = tmp_path / "junk.log"
    junk.write_bytes(b"garbage\n")
    err = err_of(str(junk))
    assert "mailpolicy report: no events: 1 line read: 1 malformed; first malformed:" in err, err
    newer = tmp_path / "newer.log"
    newer.write_bytes(lines([txn(schema=2)]) + lines([{**txn(), "event": "dns_query"}]))
    err = err_of(str(newer))
    summary = err.splitlines()[-1]
    assert summary == (
        "mailpolicy report: no events: 2 lines read: 1 event of an unsupported schema,"
        " 1 event of an unknown type"
    ), err
