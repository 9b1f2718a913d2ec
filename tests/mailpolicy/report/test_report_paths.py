"""How the would-be-lost mail came (forwarded with a valid ARC chain, through a mailing list,
directly), the overrides seen, and the suggested trusted ARC sealers: known answers on hand-built
events, in the JSON, text and HTML reports."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from mailpolicy import config
from mailpolicy.report import main
from mailpolicy.report.render_html import render as render_html
from mailpolicy.report.render_text import render as render_text
from support.report_events import (
    arc_chain,
    decision,
    dmarc_override,
    lines,
    old_event,
    policy,
    report,
    txn,
    would_reject,
)

LISTS = "lists.example.org"
DEV = "dev.lists.example.org"


def dm(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"dmarc": d, "spf": decision("monitor", "pass")}


def scenario() -> list[dict[str, Any]]:
    """17 transactions the dmarc policy refuses or would refuse: 10 forwarded with a valid ARC
    chain (lists.example.org 5, fwd.example.net 2, and one each for temp.example, trusted.example
    and a sealer whose name is no domain), 4 list mail (dev.lists 3, other.lists 1), 3 direct; one
    of the 17 (lists.example.org) was refused in enforce mode, the others are in monitor mode. Plus
    accepted mail: a DMARC pass through a sealer, and 6 overrides."""
    rej = dm(would_reject())
    ev: list[dict[str, Any]] = []
    # forwarded by a list server that seals; the List-Id does not matter once the chain is valid
    for author in ("bank.example", "bank.example", "shop.example", "shop.example"):
        ev.append(txn(policies=rej, header_from=author, dmarc="fail", arc=arc_chain(LISTS), list_id=DEV))
    # two hops: origin.example sealed first, fwd.example.net last
    ev += [
        txn(
            policies=rej,
            header_from="bank.example",
            dmarc="fail",
            arc=arc_chain("origin.example", "fwd.example.net"),
        )
    ] * 2
    # list mail without ARC, and one with a broken chain
    ev += [txn(policies=rej, header_from="bank.example", dmarc="fail", arc=arc_chain(), list_id=DEV)] * 3
    ev.append(
        txn(
            policies=rej,
            header_from="bank.example",
            dmarc="fail",
            arc=arc_chain("evil.example", result="fail"),
            list_id="other.lists.example.org",
        )
    )
    # direct: no ARC field at all, no ARC sets, a broken chain without a List-Id
    ev.append(txn(policies=rej, header_from="bank.example", dmarc="fail"))
    ev.append(txn(policies=rej, header_from="bank.example", dmarc="fail", arc=arc_chain()))
    ev.append(
        txn(policies=rej, header_from="bank.example", dmarc="fail", arc=arc_chain("x.example", result="fail"))
    )
    # a DNS failure (tempfail) on forwarded mail: counted in the paths, never a sealer suggestion
    ev.append(
        txn(
            policies=dm(decision("monitor", "temperror", "tempfail")),
            header_from="bank.example",
            dmarc="temperror",
            arc=arc_chain("temp.example"),
        )
    )
    # a trusted sealer whose own results did not vouch for the author: lost, not suggested again
    ev.append(txn(policies=rej, header_from="bank.example", dmarc="fail", arc=arc_chain("trusted.example")))
    # refused in enforce mode: affected (not lost in the combined scenario), suggested
    ev.append(
        txn(
            policies=dm(decision("enforce", "fail", "reject", applied=True)),
            header_from="bank.example",
            dmarc="fail",
            arc=arc_chain(LISTS),
            outcome="rejected",
            final_action="reject",
        )
    )
    # a sealer name the configuration would refuse: named in the paths, never suggested
    ev.append(txn(policies=rej, header_from="bank.example", dmarc="fail", arc=arc_chain("bad sealer")))
    # accepted: DMARC pass through a sealer
    ev += [
        txn(policies=dm(decision("monitor", "pass")), header_from="ok.example", arc=arc_chain("good.example"))
    ] * 2
    # accepted thanks to an override
    ev += [
        txn(
            policies=dm(dmarc_override("trusted_forwarder", "trusted.example")),
            header_from="bank.example",
            dmarc="fail",
            arc=arc_chain("trusted.example"),
        )
    ] * 3
    ev += [
        txn(
            policies=dm(dmarc_override("mailing_list", DEV)),
            header_from="bank.example",
            dmarc="fail",
            list_id=DEV,
        )
    ] * 2
    exempt = decision(
        "monitor", "fail", "continue", exempt="network", override="local_policy", overridden_action="reject"
    )
    ev.append(
        txn(policies=dm(exempt), header_from="bank.example", dmarc="fail", arc=arc_chain("exempt.example"))
    )
    return ev


def test_three_paths_with_known_counts(tmp_path: Path) -> None:
    doc = report(tmp_path, scenario())
    a = policy(doc, "dmarc")["affected"]
    assert a["transactions"] == 17
    assert a["paths"] == {
        "forwarded_arc": {
            "transactions": 10,
            "recipients": 10,
            "distinct_sealers": 5,
            "sealers": [
                {"sealer": LISTS, "transactions": 5, "recipients": 5},
                {"sealer": "fwd.example.net", "transactions": 2, "recipients": 2},
                {"sealer": "bad sealer", "transactions": 1, "recipients": 1},
                {"sealer": "temp.example", "transactions": 1, "recipients": 1},
                {"sealer": "trusted.example", "transactions": 1, "recipients": 1},
            ],
        },
        "mailing_list": {
            "transactions": 4,
            "recipients": 4,
            "distinct_lists": 2,
            "lists": [
                {"list_id": DEV, "transactions": 3, "recipients": 3},
                {"list_id": "other.lists.example.org", "transactions": 1, "recipients": 1},
            ],
        },
        "direct": {"transactions": 3, "recipients": 3},
    }
    # the combined scenario counts only monitor mode: the enforced refusal is not "lost"
    c = doc["combined"]["affected"]
    assert c["transactions"] == doc["combined"]["lost"] == 16
    paths = c["paths"]
    assert [paths[k]["transactions"] for k in ("forwarded_arc", "mailing_list", "direct")] == [9, 4, 3]
    assert paths["forwarded_arc"]["sealers"][0] == {"sealer": LISTS, "transactions": 4, "recipients": 4}
    # policies that refuse nothing still carry the (empty) paths
    assert policy(doc, "spf")["affected"]["paths"]["direct"] == {"transactions": 0, "recipients": 0}


def test_paths_add_up_and_are_bounded_by_top(tmp_path: Path) -> None:
    doc = report(tmp_path, scenario(), top=1)
    for a in (policy(doc, "dmarc")["affected"], doc["combined"]["affected"]):
        p = a["paths"]
        assert (
            sum(p[k]["transactions"] for k in ("forwarded_arc", "mailing_list", "direct"))
            == a["transactions"]
        )
        assert len(p["forwarded_arc"]["sealers"]) == 1
        assert len(p["mailing_list"]["lists"]) == 1
    p = policy(doc, "dmarc")["affected"]["paths"]
    assert (p["forwarded_arc"]["distinct_sealers"], p["mailing_list"]["distinct_lists"]) == (5, 2)
    assert p["forwarded_arc"]["sealers"] == [{"sealer": LISTS, "transactions": 5, "recipients": 5}]
    assert len(doc["sealer_suggestions"]) == 1


def test_overrides_are_counted_per_policy(tmp_path: Path) -> None:
    doc = report(tmp_path, scenario())
    d = policy(doc, "dmarc")
    assert d["overrides"] == {"trusted_forwarder": 3, "mailing_list": 2, "local_policy": 1}
    assert d["overrides_by"] == [
        {"override": "trusted_forwarder", "by": "trusted.example", "transactions": 3, "recipients": 3},
        {"override": "mailing_list", "by": DEV, "transactions": 2, "recipients": 2},
    ]
    assert d["exempt"] == {"network": 1}
    # overridden decisions continue: neither refused nor would be
    assert d["would_refuse"] == 16 and d["refused"] == 1
    assert policy(doc, "spf")["overrides"] == {} and policy(doc, "spf")["overrides_by"] == []
    # --policy keeps only the chosen policies' overrides
    doc = report(tmp_path, scenario(), policies=frozenset({"spf"}))
    assert [p["name"] for p in doc["policies"]] == ["spf"]
    assert doc["sealer_suggestions"] == [] and doc["suggestions_toml"] == ""


def test_sealer_suggestions_and_toml(tmp_path: Path) -> None:
    doc = report(tmp_path, scenario())
    assert doc["sealer_suggestions"] == [
        {
            "policy": "dmarc",
            "sealer": LISTS,
            "transactions": 5,
            "recipients": 5,
            "sender_domains": 2,
            "sender_domain_names": ["bank.example", "shop.example"],
            "earlier_sealers": [],
        },
        {
            "policy": "dmarc",
            "sealer": "fwd.example.net",
            "transactions": 2,
            "recipients": 2,
            "sender_domains": 1,
            "sender_domain_names": ["bank.example"],
            "earlier_sealers": ["origin.example"],
        },
    ]
    # nothing authenticated is refused here: the snippet holds only the sealers
    assert doc["suggestions"] == []
    snippet = doc["suggestions_toml"]
    assert snippet.startswith(
        "# SUGGESTED trusted ARC sealers from `mailpolicy report` -- NOT applied, review before use.\n"
        "# A trusted sealer can vouch for a spoof: list only forwarders you trust with your users' mail.\n"
    )
    assert "SUGGESTED exemptions" not in snippet
    assert (
        '    "lists.example.org",  # up to 5 transactions would be kept (from bank.example, shop.example)'
        in (snippet)
    )
    assert "earlier sealers: origin.example" in snippet
    parsed = tomllib.loads(snippet)
    assert parsed == {"policies": {"dmarc": {"trusted_arc_sealers": [LISTS, "fwd.example.net"]}}}
    cfg = config.parse(parsed)
    assert cfg.policies["dmarc"].options.trusted_arc_sealers == (LISTS, "fwd.example.net")


def test_single_sealer_is_one_line(tmp_path: Path) -> None:
    rej = dm(would_reject())
    events = [txn(policies=rej, header_from="bank.example", dmarc="fail", arc=arc_chain(LISTS))] * 3
    snippet = report(tmp_path, events)["suggestions_toml"]
    assert (
        f'trusted_arc_sealers = ["{LISTS}"]  # up to 3 transactions would be kept (from bank.example)\n'
        in snippet
    )
    assert tomllib.loads(snippet)["policies"]["dmarc"] == {"trusted_arc_sealers": [LISTS]}


def test_sealers_merge_with_dmarc_exemptions(tmp_path: Path) -> None:
    """Exemptions and sealers for dmarc share one [policies.dmarc] table; the TOML stays valid and
    the configuration accepts it."""
    rej = dm(would_reject())
    events = (
        scenario()
        + [
            txn(
                policies=rej,
                ip="203.0.113.7",
                name="out.partner.example",
                header_from="partner.example",
                authenticated=True,
            )
        ]
        * 2
    )
    events += [
        txn(tls=None, ip="198.51.100.3", policies={"require_starttls": would_reject()}, authenticated=True)
    ]
    doc = report(tmp_path, events)
    # in the report's policy order (require_starttls, tls_min_version, spf, dmarc, arc), as everywhere
    assert [(s["policy"], s["network"]) for s in doc["suggestions"]] == [
        ("require_starttls", "198.51.100.0/24"),
        ("dmarc", "203.0.113.0/24"),
    ]
    snippet = doc["suggestions_toml"]
    assert snippet.count("[policies.dmarc]") == 1
    assert snippet.index("[policies.require_starttls]") < snippet.index("[policies.dmarc]")
    assert "SUGGESTED exemptions" in snippet and "SUGGESTED trusted ARC sealers" in snippet
    parsed = tomllib.loads(snippet)
    assert parsed["policies"]["dmarc"] == {
        "exempt_networks": ["203.0.113.0/24"],
        "trusted_arc_sealers": [LISTS, "fwd.example.net"],
    }
    assert parsed["policies"]["require_starttls"] == {"exempt_networks": ["198.51.100.0/24"]}
    # merged into a minimal configuration, as `mailpolicy check-config` parses it
    base = tomllib.loads(
        '[milter]\nsocket = "unix:/run/mailpolicy/milter.sock"\n[policies.dmarc]\nmode = "monitor"\n'
    )
    merged = {
        **base,
        "policies": {k: {**base["policies"].get(k, {}), **v} for k, v in parsed["policies"].items()},
    }
    cfg = config.parse(merged)
    dmarc = cfg.policies["dmarc"]
    assert dmarc.options.trusted_arc_sealers == (LISTS, "fwd.example.net")
    assert [str(n) for n in dmarc.exempt.networks] == ["203.0.113.0/24"]


def test_accepted_mail_is_never_a_suggestion(tmp_path: Path) -> None:
    events = [
        txn(policies=dm(decision("monitor", "pass")), header_from="ok.example", arc=arc_chain(LISTS)),
        txn(
            policies=dm(dmarc_override("trusted_forwarder", LISTS)),
            header_from="b.example",
            arc=arc_chain(LISTS),
        ),
        # a quarantine is not lost mail
        txn(
            policies=dm(decision("monitor", "fail", "quarantine")),
            header_from="b.example",
            arc=arc_chain(LISTS),
        ),
    ]
    doc = report(tmp_path, events)
    assert doc["sealer_suggestions"] == [] and doc["suggestions_toml"] == ""
    assert policy(doc, "dmarc")["affected"]["paths"]["forwarded_arc"]["transactions"] == 0
    assert policy(doc, "dmarc")["overrides"] == {"trusted_forwarder": 1}


def test_old_events_without_the_new_keys_count_as_direct(tmp_path: Path) -> None:
    old = [old_event(e) for e in scenario()]
    raw = json.dumps(old[0])
    assert '"arc"' not in raw and '"list_id"' not in raw and '"override' not in raw
    doc = report(tmp_path, old)
    assert doc["input"]["malformed_lines"] == 0
    d = policy(doc, "dmarc")
    a = d["affected"]
    assert a["transactions"] == 17
    assert a["paths"] == {
        "forwarded_arc": {"transactions": 0, "recipients": 0, "distinct_sealers": 0, "sealers": []},
        "mailing_list": {"transactions": 0, "recipients": 0, "distinct_lists": 0, "lists": []},
        "direct": {"transactions": 17, "recipients": 17},
    }
    assert doc["combined"]["affected"]["paths"]["direct"] == {"transactions": 16, "recipients": 16}
    assert d["overrides"] == {} and d["overrides_by"] == []
    assert doc["sealer_suggestions"] == []
    # old and new events in one report
    doc = report(tmp_path, old + scenario())
    p = policy(doc, "dmarc")["affected"]["paths"]
    assert (
        p["forwarded_arc"]["transactions"],
        p["mailing_list"]["transactions"],
        p["direct"]["transactions"],
    ) == (
        10,
        4,
        20,
    )


def test_a_malformed_arc_object_is_not_half_counted(tmp_path: Path) -> None:
    good = txn(policies=dm(would_reject()), header_from="bank.example", dmarc="fail", arc=arc_chain(LISTS))
    bad = {**good, "arc": {"result": "pass", "sealers": "lists.example.org"}}
    worse = {**good, "policies": {"dmarc": {**dmarc_override("mailing_list", DEV), "details": "oops"}}}
    doc = report(tmp_path, [good, bad, worse])
    assert doc["input"]["malformed_lines"] == 2
    assert doc["totals"]["transactions"] == 1
    assert policy(doc, "dmarc")["transactions"] == 1
    assert policy(doc, "dmarc")["affected"]["paths"]["forwarded_arc"]["transactions"] == 1
    assert doc["hosts"][0]["transactions"] == 1


def test_text_report_shows_paths_sealers_and_lists(tmp_path: Path) -> None:
    text = render_text(report(tmp_path, scenario()))
    combined = text[text.index("== Combined scenario") : text.index("== Suggestions ==")]
    dmarc = text[text.index("== Policy dmarc ==") : text.index("== TLS ==")]
    for section, counts in ((combined, (9, 4, 3)), (dmarc, (10, 4, 3))):
        rows = [line.split() for line in section.splitlines()]
        forwarded = rows[_row(rows, "forwarded")]
        assert forwarded[:7] == ["forwarded", "with", "a", "valid", "ARC", "chain", str(counts[0])]
        assert ["mailing", "list", "(List-Id)", str(counts[1])] == rows[_row(rows, "mailing")][:4]
        assert ["direct", str(counts[2]), str(counts[2])] == rows[_row(rows, "direct")][:3]
        assert "sealer (newest ARC set)" in section and "list id" in section
        assert DEV in section and "other.lists.example.org" in section
    assert ["lists.example.org", "5", "5"] in [line.split() for line in dmarc.splitlines()]
    assert ["lists.example.org", "4", "4"] in [line.split() for line in combined.splitlines()]
    assert "overrides (local policy changed the action" in dmarc
    assert "trusted_forwarder 3, mailing_list 2, local_policy 1" in dmarc
    suggestions = text[text.index("== Suggestions ==") :]
    assert "a trusted sealer can vouch for a spoof" in suggestions
    assert "trusted_arc_sealers = [" in suggestions


def _row(rows: list[list[str]], first: str) -> int:
    return next(i for i, r in enumerate(rows) if r and r[0] == first)


def test_text_report_paths_line_for_other_policies(tmp_path: Path) -> None:
    events = [
        txn(policies={"spf": would_reject()}, arc=arc_chain(LISTS)),
        txn(policies={"spf": would_reject()}),
    ]
    text = render_text(report(tmp_path, events))
    spf = text[text.index("== Policy spf ==") : text.index("== TLS ==")]
    assert "how it came: forwarded with a valid ARC chain 1, mailing list (List-Id) 0, direct 1" in spf


def test_html_report_shows_paths_and_escapes_names(tmp_path: Path) -> None:
    evil = "<b>x</b>&.lists.example"
    events = [
        *scenario(),
        txn(policies=dm(would_reject()), list_id=evil),
        txn(policies=dm(would_reject()), arc=arc_chain('"><i>seal')),
    ]
    doc = report(tmp_path, events)
    page = render_html(doc)
    assert "<script" not in page.lower()
    assert "<b>x</b>" not in page and "<i>seal" not in page
    assert "&lt;b&gt;x&lt;/b&gt;&amp;.lists.example" in page
    assert "&quot;&gt;&lt;i&gt;seal" in page
    for chart in ("chart-paths", "chart-paths-dmarc"):
        assert f'id="{chart}"' in page
    assert page.count("<h3>How the lost mail came</h3>") == 1
    assert page.count("<h4>How the affected mail came</h4>") == 1  # in the dmarc policy's card
    assert "<td>forwarded with a valid ARC chain</td><td>10</td>" in page
    assert "<td>mailing list (List-Id)</td><td>5</td>" in page
    assert f"<td>{LISTS}</td><td>5</td>" in page
    assert f"<td>{DEV}</td><td>3</td>" in page
    assert "Trusted ARC sealers" in page and "can vouch for a spoof" in page
    assert "trusted_forwarder 3, mailing_list 2, local_policy 1" in page


def test_cli_json_has_the_contract_keys(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    path.write_bytes(lines(scenario()))
    out = tmp_path / "r.json"
    assert main(["--format", "json", "-o", str(out), str(path)]) == 0
    doc = json.loads(out.read_text())
    for a in [p["affected"] for p in doc["policies"]] + [doc["combined"]["affected"]]:
        p = a["paths"]
        assert set(p["forwarded_arc"]) >= {"transactions", "sealers"}
        assert set(p["mailing_list"]) >= {"transactions", "lists"}
        assert set(p["direct"]) == {"transactions", "recipients"}
        assert sum(p[k]["transactions"] for k in p) == a["transactions"]
    assert {"sealer", "transactions"} <= set(doc["sealer_suggestions"][0])
    assert tomllib.loads(doc["suggestions_toml"])["policies"]["dmarc"]["trusted_arc_sealers"][0] == LISTS


def test_sealer_names_are_checked_as_the_configuration_checks_domains() -> None:
    from mailpolicy.checks.base import parse_domain
    from mailpolicy.report.suggest import config_domain

    names = ["lists.example.org", "LISTS.Example.org.", "xn--bcher-kva.example", "a", "-bad.example"]
    names += ["bad sealer", "under_score.example", "a..b", "", "x" * 64 + ".example", "é.example", "a.b-"]
    names += [("a" * 63 + ".") * 4 + "a", "ok-1.example\n"]
    for name in names:
        try:
            expected: str | None = parse_domain(name)
        except ValueError:
            expected = None
        assert config_domain(name) == expected, name
