"""Known-answer tests of the report aggregation on hand-built event streams."""

from __future__ import annotations

import gzip
import io
import ipaddress
import json
import tomllib
from pathlib import Path

import pytest

from mailpolicy.report import build_report
from mailpolicy.report.aggregate import Aggregator
from support.report_events import conn, decision, lines, policy, report, txn, would_reject

PASS_STARTTLS = {"require_starttls": decision("monitor", "pass")}


def test_counts_shares_and_enforced(tmp_path: Path) -> None:
    events = [txn(policies=PASS_STARTTLS) for _ in range(6)]
    events += [txn(tls=None, policies={"require_starttls": would_reject()}) for _ in range(3)]
    events += [txn(tls=None, policies={"require_starttls": decision("monitor", "fail", "tempfail")})]
    events += [txn(policies={"spf": decision("enforce", "fail", "reject", applied=True)}, outcome="rejected")]
    events += [txn(policies={"spf": decision("enforce", "softfail", "continue")})]
    events += [txn(policies={"spf": decision("enforce", "fail", "continue", exempt="network")})]
    doc = report(tmp_path, events)
    rs = policy(doc, "require_starttls")
    assert rs["transactions"] == 10
    assert (rs["would_reject"], rs["would_tempfail"], rs["would_refuse"]) == (3, 1, 4)
    assert rs["would_refuse_share"] == 0.4
    assert rs["refused"] == 0
    assert rs["results"] == {"pass": 6, "fail": 4}
    spf = policy(doc, "spf")
    assert spf["transactions"] == 3
    assert (spf["would_refuse"], spf["rejected"], spf["refused"]) == (0, 1, 1)
    assert spf["exempt"] == {"network": 1}
    assert spf["modes"] == {"enforce": 3}
    assert doc["totals"]["transactions"] == 13
    assert doc["totals"]["outcomes"] == {"accepted": 12, "rejected": 1}
    # the order of policies is the documented one
    assert [p["name"] for p in doc["policies"]] == ["require_starttls", "spf"]


def test_authenticated_split_and_sender_domains(tmp_path: Path) -> None:
    rej = {"dmarc": would_reject()}
    events = [
        # authenticated by the field
        txn(policies=rej, header_from="a.example", authenticated=True),
        # by DMARC pass alone (no authenticated field)
        txn(policies=rej, header_from="a.example", dmarc="pass"),
        # by an aligned DKIM pass alone
        txn(policies=rej, header_from="a.example", dkim=[("fail", True), ("pass", True)]),
        # DKIM pass but not aligned: not authenticated
        txn(policies=rej, header_from="b.example", dkim=[("pass", False)], dmarc="fail"),
        txn(policies=rej, header_from="b.example", authenticated=False),
        # no authentication fields at all: unknown; sender domain from MAIL FROM
        txn(policies=rej, mail_from="Bob@C.Example"),
        txn(policies=rej, mail_from=""),
        # not affected
        txn(policies={"dmarc": decision("monitor", "pass")}, header_from="z.example", authenticated=True),
    ]
    doc = report(tmp_path, events)
    a = policy(doc, "dmarc")["affected"]
    assert (a["transactions"], a["authenticated"], a["unauthenticated"], a["unknown"]) == (7, 3, 2, 2)
    domains = {d["domain"]: d for d in a["top_sender_domains"]}
    assert set(domains) == {"a.example", "b.example", "c.example", "<> (null sender)"}
    assert domains["a.example"]["authenticated"] == 3
    assert domains["b.example"]["unauthenticated"] == 2
    assert domains["c.example"]["unknown"] == 1
    assert a["top_sender_domains"][0]["domain"] == "a.example"
    assert a["sender_domains"] == 4


def test_clients_networks_and_top_n(tmp_path: Path) -> None:
    rej = {"spf": would_reject()}
    events = []
    # 192.0.2.0/24: three clients, 1+2+3 transactions
    for i, n in ((1, 1), (2, 2), (3, 3)):
        events += [txn(policies=rej, ip=f"192.0.2.{i}", name=f"m{i}.example.net") for _ in range(n)]
    # one IPv6 /48 with two addresses, and an IPv4-mapped address counted in 198.51.100.0/24
    events += [txn(policies=rej, ip="2001:db8:1:2::1", name="v6a.example.net")]
    events += [txn(policies=rej, ip="2001:db8:1:ffff::9", name=None)]
    events += [txn(policies=rej, ip="::ffff:198.51.100.7", name="[198.51.100.7]")]
    events += [txn(policies={"spf": decision("monitor", "pass")}, ip="203.0.113.1")]
    doc = report(tmp_path, events, top=2)
    a = policy(doc, "spf")["affected"]
    assert a["clients"] == 6
    assert a["networks"] == 3
    assert [c["ip"] for c in a["top_clients"]] == ["192.0.2.3", "192.0.2.2"]
    assert a["top_clients"][0]["name"] == "m3.example.net"
    assert a["top_clients"][0]["network"] == "192.0.2.0/24"
    assert len(a["top_sender_domains"]) == 1  # all example.net (mail_from)


def test_combined_scenario_counts_each_transaction_once(tmp_path: Path) -> None:
    both = {"require_starttls": would_reject(), "spf": would_reject(), "dmarc": decision("enforce", "pass")}
    only_spf = {"require_starttls": decision("monitor", "pass"), "spf": would_reject()}
    enforced = {
        "spf": decision("enforce", "fail", "reject", applied=True),
        "dmarc": decision("monitor", "pass"),
    }
    quarantine = {"spf": decision("monitor", "fail", "quarantine")}
    events = (
        [txn(tls=None, policies=both, authenticated=True, header_from="x.example")] * 2
        + [txn(policies=only_spf, authenticated=False, header_from="y.example")] * 3
        + [txn(policies=enforced, outcome="rejected")]
        + [txn(policies=quarantine)]
        + [txn(policies={"require_starttls": decision("monitor", "pass")})] * 4
    )
    doc = report(tmp_path, events)
    c = doc["combined"]
    assert c["transactions"] == 11
    assert c["lost"] == 5
    assert c["lost_share"] == round(5 / 11, 6)
    assert c["lost_by_policy"] == {"spf": 5, "require_starttls": 2}
    assert list(c["lost_by_policy"]) == ["require_starttls", "spf"]  # the report's policy order
    assert c["lost_only_by_policy"] == {"spf": 3}
    assert c["already_refused"] == 1
    assert c["affected"]["authenticated"] == 2
    assert c["affected"]["unauthenticated"] == 3
    assert c["policies"] == ["require_starttls", "spf", "dmarc"]
    assert c["daily"] == [
        {
            "date": "2026-11-20",
            "transactions": 11,
            "lost": 5,
            "refused": 1,
            "recipients": 11,
            "lost_recipients": 5,
            "refused_recipients": 1,
        }
    ]
    assert policy(doc, "spf")["would_quarantine"] == 1
    # --policy narrows the scenario to the chosen policies
    doc = report(tmp_path, events, policies=frozenset({"require_starttls"}))
    assert doc["combined"]["lost"] == 2
    assert [p["name"] for p in doc["policies"]] == ["require_starttls"]


def test_mail_an_enforced_policy_refused_is_not_lost_by_switching(tmp_path: Path) -> None:
    """tls_min_version (enforce) refused a message at MAIL FROM that spf (monitor) would refuse too:
    refused today, so neither lost in the combined scenario nor lost "only by" spf; a message an
    enforced policy refused for some recipients at RCPT is lost with the recipients it had left."""
    refused = {
        "tls_min_version": decision("enforce", "fail", "reject", applied=True),
        "spf": would_reject(),
    }
    events = [
        txn(tls="TLSv1", policies=refused, rcpts=0, outcome="rejected"),
        txn(tls="TLSv1", policies=refused, rcpts=4, rcpt_rejected=3),  # 1 recipient delivered
        txn(policies={"spf": would_reject()}, rcpts=2),
        txn(policies={"spf": decision("monitor", "pass")}, rcpts=3),
    ]
    for wanted in (frozenset(), frozenset({"spf"})):  # --policy spf: the outcome still says refused
        doc = report(tmp_path, events, policies=wanted)
        c = doc["combined"]
        assert (c["lost"], c["lost_recipients"]) == (2, 3), wanted
        assert (c["lost_by_policy"], c["lost_recipients_by_policy"]) == ({"spf": 2}, {"spf": 3})
        assert (c["lost_only_by_policy"], c["lost_recipients_only_by_policy"]) == ({"spf": 2}, {"spf": 3})
        assert (c["already_refused"], c["already_refused_recipients"]) == (1, 3)
        assert c["affected"]["transactions"] == 2
        assert [h["would_lose"] for h in doc["hosts"]] == [2]
        spf = policy(doc, "spf")
        assert (spf["would_refuse"], spf["would_refuse_recipients"]) == (3, 0 + 1 + 2)
        assert spf["affected"]["transactions"] == 3
    f12 = report(tmp_path, events)["tls"]["floor_simulation"][0]
    assert f12["transactions"]["transactions"] == 2
    assert f12["with_require_starttls"]["lost"]["transactions"] == 1
    assert f12["with_require_starttls"]["lost"]["recipients"] == 1


def test_tls_section_and_floor_simulation(tmp_path: Path) -> None:
    exempt = {"require_starttls": decision("monitor", "pass", exempt="network")}
    plain = {"require_starttls": decision("monitor", "pass")}
    events = [
        conn(tls="TLSv1.3", ip="192.0.2.1"),
        conn(tls="TLSv1.3", ip="192.0.2.1", cipher="TLS_CHACHA20_POLY1305_SHA256"),
        conn(tls="TLSv1.2", ip="192.0.2.2", cipher="ECDHE-RSA-AES256-GCM-SHA384"),
        conn(tls="TLSv1", ip="192.0.2.3", name="old.example.net", cipher="AES128-SHA"),
        conn(tls="TLSv1.1", ip="192.0.2.4", name="older.example.net", cipher="AES128-SHA"),
        conn(tls=None, ip="192.0.2.5"),
        conn(tls="unknown", ip="192.0.2.6"),
        conn(tls=None, ip="192.0.2.7"),
        # transactions
        txn(tls="TLSv1", ip="192.0.2.3", name="old.example.net", policies=exempt, authenticated=True),
        txn(tls="TLSv1.1", ip="192.0.2.4", name="older.example.net", policies=plain, authenticated=True),
        txn(tls="TLSv1.1", ip="192.0.2.4", name="older.example.net", policies=plain, authenticated=False),
        txn(tls="TLSv1.2", ip="192.0.2.2", policies=plain, authenticated=True),
        txn(tls="unknown", ip="192.0.2.6", policies=plain),
        txn(tls="TLSv1.3", ip="192.0.2.1", policies=plain),
    ]
    tls = report(tmp_path, events)["tls"]
    s = tls["sessions"]
    assert s["total"] == 8
    assert (s["plaintext"], s["plaintext_share"]) == (2, 0.25)
    assert [v["version"] for v in s["by_version"]] == [
        "TLSv1.3",
        "TLSv1.2",
        "TLSv1.1",
        "TLSv1",
        "unknown",
        "plaintext",
    ]
    assert {(c["version"], c["cipher"]): c["count"] for c in s["by_cipher"]}[("TLSv1", "AES128-SHA")] == 1
    assert tls["transactions"]["total"] == 6
    b = tls["below_tls12"]
    assert (b["clients"], b["sessions"], b["transactions"]) == (2, 2, 3)
    assert b["top_clients"][0] == {
        "ip": "192.0.2.4",
        "name": "older.example.net",
        "versions": ["TLSv1.1"],
        "sessions": 1,
        "transactions": 2,
    }
    f12, f13 = tls["floor_simulation"]
    assert f12["floor"] == "TLSv1.2"
    assert f12["sessions"] == 2
    assert f12["transactions"]["transactions"] == 3
    assert f12["clients"] == 2
    # the exempt client keeps its mail when it falls back to plaintext; the other loses both
    assert f12["with_require_starttls"]["lost"]["transactions"] == 2
    assert f12["with_require_starttls"]["lost"]["authenticated"] == 1
    assert f12["with_require_starttls"]["kept_by_exemption"] == {"network": 1}
    assert f12["with_require_starttls"]["lost_clients"] == 1
    assert f13["sessions"] == 3
    assert f13["transactions"]["transactions"] == 4
    assert f13["with_require_starttls"]["lost"]["transactions"] == 3
    assert tls["daily_sessions"] == [
        {
            "date": "2026-11-20",
            "versions": {"TLSv1.3": 2, "TLSv1.2": 1, "TLSv1.1": 1, "TLSv1": 1, "unknown": 1, "plaintext": 2},
        }
    ]


def test_suggestions(tmp_path: Path) -> None:
    rej = {"require_starttls": would_reject(), "spf": decision("monitor", "pass")}
    events = (
        # 192.0.2.0/24: 3 authenticated, 1 not: suggested
        [txn(tls=None, ip="192.0.2.1", name="out1.partner.example", policies=rej, authenticated=True)] * 3
        + [txn(tls=None, ip="192.0.2.9", name="out9.partner.example", policies=rej, authenticated=False)]
        # 198.51.100.0/24: 1 authenticated, 5 not: mostly spam, not suggested
        + [txn(tls=None, ip="198.51.100.1", policies=rej, authenticated=True)]
        + [txn(tls=None, ip="198.51.100.2", policies=rej, authenticated=False)] * 5
        # 2001:db8:5::/48: 2 authenticated
        + [txn(tls=None, ip="2001:db8:5::1", policies=rej, authenticated=True)] * 2
    )
    doc = report(tmp_path, events)
    sugg = doc["suggestions"]
    assert [(s["policy"], s["network"]) for s in sugg] == [
        ("require_starttls", "192.0.2.0/24"),
        ("require_starttls", "2001:db8:5::/48"),
    ]
    first = sugg[0]
    assert (first["authenticated_kept"], first["unauthenticated_let_through"], first["affected"]) == (3, 1, 4)
    assert first["authenticated_share_of_policy"] == 0.5
    assert first["client_names"] == ["out1.partner.example", "out9.partner.example"]
    snippet = doc["suggestions_toml"]
    assert "SUGGESTED" in snippet and "NOT applied" in snippet
    parsed = tomllib.loads(snippet)
    nets = parsed["policies"]["require_starttls"]["exempt_networks"]
    assert nets == ["192.0.2.0/24", "2001:db8:5::/48"]
    for n in nets:
        ipaddress.ip_network(n)  # valid for config validation
    assert "keeps 5 of 6 authenticated" in snippet
    assert "lets 1 unauthenticated through" in snippet
    # nothing authenticated refused: no suggestion
    doc = report(tmp_path, [txn(tls=None, policies=rej, authenticated=False)])
    assert doc["suggestions"] == [] and doc["suggestions_toml"] == ""


def test_malformed_diagnostics_and_unknown_schema(tmp_path: Path) -> None:
    good = lines([txn(policies={"spf": would_reject()}), conn()])
    full = json.dumps(txn(policies={"spf": would_reject()})).encode()
    data = (
        good
        + full[: len(full) // 2]
        + b"\n"  # truncated line
        + b"not json at all\n"
        + b"[1, 2, 3]\n"
        + b"\n   \n"
        + b'{"ts":"2026-11-20T00:00:00.000Z","host":"mx1","level":"info","logger":"mailpolicy",'
        + b'"msg":"ready"}\n'
        + b'{"level":"error","msg":"x","policies":"not an object"}\n'  # diagnostics, odd field
        + lines([txn(schema=2), conn(schema=2), txn(schema=3)])
        + lines([{**txn(schema=2), "starttls": "yes", "ts": 1700000000}])  # newer types: still schema 2
        + json.dumps({**txn(), "policies": {"spf": "oops"}}).encode()
        + b"\n"  # wrong shape
        + json.dumps({k: v for k, v in txn().items() if k != "schema"}).encode()
        + b"\n"
        + json.dumps({**txn(), "ts": "yesterday"}).encode()
        + b"\n"
        + lines([{**conn(), "event": "dns_query"}])
        + full[:40]  # truncated last line, no newline
    )
    doc = report(tmp_path, data)
    inp = doc["input"]
    assert inp["events"] == 2
    assert inp["malformed_lines"] == 7
    assert inp["non_event_lines"] == 2
    assert inp["blank_lines"] == 2
    assert inp["unsupported_schema"] == {"2": 3, "3": 1}
    assert inp["unknown_event_types"] == {"dns_query": 1}
    assert inp["lines"] == 18
    assert len(inp["malformed_examples"]) == 5
    assert inp["malformed_examples"][0]["line"] == 3
    assert policy(doc, "spf")["would_reject"] == 1


def test_timestamps_with_offsets_are_normalised(tmp_path: Path) -> None:
    ev = txn(policies={"spf": would_reject()})
    ev["ts"] = "2026-11-21T01:30:00+02:00"  # 2026-11-20T23:30Z
    doc = report(tmp_path, [ev])
    assert doc["period"]["first"] == "2026-11-20T23:30:00.000Z"
    assert policy(doc, "spf")["daily"][0]["date"] == "2026-11-20"


def test_gzip_plain_and_multiple_hosts(tmp_path: Path) -> None:
    mx1 = tmp_path / "mx1.log.gz"
    with gzip.open(mx1, "wb") as fh:
        fh.write(lines([txn(host="mx1", policies={"spf": would_reject()}), conn(host="mx1")]))
    mx2 = tmp_path / "mx2.log"
    mx2.write_bytes(
        lines(
            [txn(host="mx2", day=1, policies={"spf": decision("monitor", "pass")})] * 2
            + [conn(host="mx2", day=1)]
        )
    )
    doc = build_report([str(mx1), str(mx2)])
    assert [(h["host"], h["connections"], h["transactions"], h["would_lose"]) for h in doc["hosts"]] == [
        ("mx1", 1, 1, 1),
        ("mx2", 1, 2, 0),
    ]
    assert doc["hosts"][1]["first"].startswith("2026-11-21")
    assert [s["name"] for s in doc["input"]["sources"]] == [str(mx1), str(mx2)]
    assert doc["input"]["events"] == 5
    assert policy(doc, "spf")["transactions"] == 3
    assert [d["date"] for d in policy(doc, "spf")["daily"]] == ["2026-11-20", "2026-11-21"]


def test_truncated_gzip_and_missing_file_are_reported(tmp_path: Path) -> None:
    data = gzip.compress(lines([txn(seconds=i, policies={"spf": would_reject()}) for i in range(5000)]))
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(data[: len(data) - 30])
    doc = build_report([str(cut), str(tmp_path / "missing.log")])
    src_cut, src_missing = doc["input"]["sources"]
    assert src_cut["error"] and "EOFError" in src_cut["error"]
    assert 0 < src_cut["events"] < 5000
    assert src_missing["error"] and "FileNotFoundError" in src_missing["error"]


def test_stdin_plain_and_gzip() -> None:
    data = lines([txn(policies={"spf": would_reject()}), conn()])
    for raw in (data, gzip.compress(data)):
        doc = build_report(["-"], stdin=io.BytesIO(raw))
        assert doc["input"]["sources"][0]["name"] == "<stdin>"
        assert doc["input"]["events"] == 2


def test_filters_since_until_host(tmp_path: Path) -> None:
    events = [
        txn(day=d, seconds=3600 * h, host=f"mx{h % 2}", policies={"spf": would_reject()})
        for d in range(4)
        for h in range(4)
    ]
    from mailpolicy.report.aggregate import parse_time

    doc = report(tmp_path, events, since=parse_time("2026-11-21"), until=parse_time("2026-11-22", True))
    assert doc["totals"]["transactions"] == 8
    assert doc["input"]["filtered_out"] == 8
    doc = report(
        tmp_path,
        events,
        since=parse_time("2026-11-21T02:00:00Z"),
        until=parse_time("2026-11-21T04:00:00+01:00"),
    )
    assert doc["totals"]["transactions"] == 2  # 02:00 and 03:00 UTC on the 21st
    doc = report(tmp_path, events, hosts=frozenset({"mx1"}))
    assert doc["totals"]["transactions"] == 8
    assert [h["host"] for h in doc["hosts"]] == ["mx1"]
    with pytest.raises(ValueError):
        parse_time("last tuesday")
    with pytest.raises(ValueError):
        parse_time("2026-11-21T02:00:00")  # no offset


def test_memory_is_bounded_by_keys_not_events(tmp_path: Path) -> None:
    from support.report_events import generate

    def state(n: int) -> tuple[int, ...]:
        agg = Aggregator()
        agg.add_source("-", io.BytesIO(b"".join(generate(n, seed=5, days=2))))
        return (
            len(agg.decisions),
            len(agg.txns),
            len(agg.conns),
            len(agg._combos),
            sum(len(a.counts) for a in agg.affected.values()) + len(agg.below),
        )

    small, large = state(20_000), state(60_000)
    # 3x the events: per-key tables grow only with new distinct keys (rare combinations, new
    # clients), far less than the events
    assert all(lg <= sm * 1.5 for sm, lg in zip(small[:3], large[:3], strict=True)), (small, large)
    assert large[3] <= 2000 and large[4] <= 5000


def test_syslog_and_journal_prefixes_are_stripped(tmp_path: Path) -> None:
    line = json.dumps(txn(policies={"spf": would_reject()}))
    data = (
        f"Nov 20 00:00:00 mx1 mailpolicy[321]: {line}\n"
        f"2026-11-20T00:00:00+0000 mx1 mailpolicy[321]: {line}\n"
        "Nov 20 00:00:01 mx1 mailpolicy[321]: {truncated\n"
        "Nov 20 00:00:02 mx1 systemd[1]: Started mailpolicy.service\n"
    ).encode()
    doc = report(tmp_path, data)
    assert doc["input"]["events"] == 2
    # systemd's line is another program's: not an event, not damage
    assert (doc["input"]["malformed_lines"], doc["input"]["non_event_lines"]) == (1, 1)
    assert policy(doc, "spf")["would_reject"] == 2


def test_policy_cache_with_per_message_details(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Policy objects that all differ (per-message details) give the same answer as repeated ones,
    also when the bounded cache has to be emptied."""
    import mailpolicy.report.aggregate as aggregate

    monkeypatch.setattr(aggregate, "MAX_COMBOS", 3)
    plain, detailed = [], []
    for i in range(40):
        pol = {
            "spf": would_reject() if i % 4 == 0 else decision("monitor", "pass"),
            "require_starttls": decision("monitor", "pass"),
        }
        plain.append(txn(seconds=i, policies=pol, authenticated=i % 8 == 0))
        pol = {k: {**v, "details": {"n": i}} for k, v in pol.items()}
        detailed.append(txn(seconds=i, policies=pol, authenticated=i % 8 == 0))
    a, b = report(tmp_path, plain), report(tmp_path, detailed)
    for doc in (a, b):
        spf = policy(doc, "spf")
        assert (spf["transactions"], spf["would_reject"], spf["affected"]["authenticated"]) == (40, 10, 5)
    assert a["policies"] == b["policies"] and a["combined"] == b["combined"]
