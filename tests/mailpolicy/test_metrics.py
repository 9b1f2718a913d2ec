"""Unit tests for mailpolicy.metrics.init_series: after it, every series an alert rule needs exists
at 0 (so the first-ever error, refusal or failed reload is an increase), and every label value is one
of the documented, bounded sets -- which are the ones the code really uses.

The exported series are read from a fresh interpreter's scrape (``generate_latest``), as Prometheus
would see a milter that has just started: in this process other tests have already counted."""

from __future__ import annotations

import inspect
import ipaddress
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import mailpolicy.adapter
import mailpolicy.auth.dkim
import mailpolicy.auth.dmarc
import mailpolicy.checks.starttls
import mailpolicy.checks.tls_version
import mailpolicy.policy
import mailpolicy.session
from mailpolicy import dns, metrics
from mailpolicy.auth import spf as auth_spf
from mailpolicy.auth.methods import METHODS
from mailpolicy.checks import CHECKS
from mailpolicy.model import OVERRIDE_REASONS, Action, Mode

AUTH_WORDS = {name: m.results for name, m in METHODS.items()}
POLICY_RESULTS = {name: spec.results for name, spec in CHECKS.items()}

ROOT = Path(__file__).resolve().parents[2]
POLICIES = {"require_starttls": "monitor", "spf": "enforce", "dmarc": "monitor", "tls_min_version": "off"}
ACTIVE = {name: mode for name, mode in POLICIES.items() if mode != "off"}

Labels = frozenset[tuple[str, str]]
Scrape = dict[str, dict[Labels, float]]

_SCRIPT = """
import sys
from prometheus_client import REGISTRY, generate_latest
from mailpolicy import metrics
from mailpolicy.auth.methods import METHODS
from mailpolicy.checks import CHECKS
methods = {{n: m.results for n, m in METHODS.items()}} if {auth!r} else {{}}
metrics.init_series({policies!r}, checks={{n: s.results for n, s in CHECKS.items()}}, methods=methods)
sys.stdout.write(generate_latest(REGISTRY).decode())
"""


def scrape(policies: list[tuple[str, str]], auth: bool = True) -> Scrape:
    """The metrics a freshly started milter exports after ``init_series(policies, ...)``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "milter")}
    res = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(policies=policies, auth=auth)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    out: Scrape = {}
    for family in text_string_to_metric_families(res.stdout):
        for s in family.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


@pytest.fixture(scope="module")
def started() -> Scrape:
    return scrape(list(POLICIES.items()))


def series(scraped: Scrape, name: str) -> Iterator[dict[str, str]]:
    for labels in scraped.get(name, {}):
        yield dict(labels)


def value(scraped: Scrape, name: str, **labels: str) -> float | None:
    return scraped.get(name, {}).get(frozenset(labels.items()))


def required(checks: list[str]) -> list[tuple[str, dict[str, str]]]:
    """Every series an alert rule (or the recording rules under it) reads, as (name, labels)."""
    req: list[tuple[str, dict[str, str]]] = []
    req += [("mailpolicy_callback_errors_total", {"callback": c}) for c in metrics.CALLBACKS]
    req += [("mailpolicy_check_errors_total", {"check": c}) for c in (*checks, "auth", "header")]
    req += [("mailpolicy_config_reloads_total", {"result": r}) for r in ("ok", "error")]
    req += [("mailpolicy_transactions_total", {"outcome": o}) for o in metrics.OUTCOMES]
    req += [("mailpolicy_messages_total", {"final_action": a}) for a in metrics.ACTIONS]
    req += [("mailpolicy_connections_total", {"starttls": "false", "tls_version": "none"})]
    req += [
        ("mailpolicy_dns_queries_total", {"type": t, "outcome": o})
        for t in metrics.DNS_TYPES
        for o in metrics.DNS_OUTCOMES
    ]
    req += [
        ("mailpolicy_auth_results_total", {"method": m, "result": r})
        for m, words in AUTH_WORDS.items()
        for r in words
    ]
    req += [
        ("mailpolicy_unreadable_inputs_total", {"input": i}) for i in (*metrics.UNREADABLE_NAMES, "other")
    ]
    # would refuse (monitor) and refused (enforce): what MailpolicyWouldRefuse* and
    # MailpolicyEnforcedRefusalsHigh compute from
    for policy, mode in ACTIVE.items():
        for action in ("reject", "tempfail", "continue"):
            labels = {"policy": policy, "mode": mode, "result": "fail", "action": action}
            req.append(("mailpolicy_policy_decisions_total", labels))
        req.append(
            (
                "mailpolicy_policy_decisions_total",
                {"policy": policy, "mode": mode, "result": "pass", "action": "continue"},
            )
        )
    return req


def test_every_alert_relevant_series_exists_at_zero(started: Scrape) -> None:
    missing = [
        (name, labels) for name, labels in required(list(CHECKS)) if value(started, name, **labels) != 0.0
    ]
    assert missing == []


def test_every_counter_starts_at_zero(started: Scrape) -> None:
    counters = {n: v for n, v in started.items() if n.startswith("mailpolicy_") and n.endswith("_total")}
    assert len(counters) >= 10
    nonzero = {(n, labels) for n, samples in counters.items() for labels, v in samples.items() if v != 0}
    assert nonzero == set()


def test_policy_decisions_follow_the_configured_modes(started: Scrape) -> None:
    decisions = list(series(started, "mailpolicy_policy_decisions_total"))
    assert {(d["policy"], d["mode"]) for d in decisions} == set(ACTIVE.items())  # tls_min_version is off
    for d in decisions:
        assert d["result"] in POLICY_RESULTS[d["policy"]], d
        assert d["action"] in metrics.ACTIONS, d
        assert d["result"] != "pass" or d["action"] == "continue", d  # pass never refuses
    exemptions = {(e["policy"], e["reason"]) for e in series(started, "mailpolicy_policy_exemptions_total")}
    assert exemptions == {(p, r) for p in ACTIVE for r in metrics.EXEMPTION_REASONS}
    # dmarc's temperror_action = "tempfail" in monitor mode: that would-refuse series is there too
    temperror = {"policy": "dmarc", "mode": "monitor", "result": "temperror", "action": "tempfail"}
    assert value(started, "mailpolicy_policy_decisions_total", **temperror) == 0.0


def test_labels_stay_within_the_documented_sets(started: Scrape) -> None:
    allowed: dict[str, dict[str, set[str]]] = {
        "mailpolicy_callback_errors_total": {"callback": set(metrics.CALLBACKS)},
        "mailpolicy_check_errors_total": {"check": {*CHECKS, *metrics.EXTRA_CHECKS}},
        "mailpolicy_transactions_total": {"outcome": set(metrics.OUTCOMES)},
        "mailpolicy_messages_total": {"final_action": set(metrics.ACTIONS)},
        "mailpolicy_config_reloads_total": {"result": set(metrics.RELOAD_RESULTS)},
        "mailpolicy_unreadable_inputs_total": {"input": {*metrics.UNREADABLE_NAMES, "other"}},
        "mailpolicy_connections_total": {"starttls": {"false"}, "tls_version": {"none"}},
        "mailpolicy_auth_results_total": {
            "method": set(AUTH_WORDS),
            "result": {w for words in AUTH_WORDS.values() for w in words},
        },
        "mailpolicy_dns_queries_total": {
            "type": set(metrics.DNS_TYPES),
            "outcome": set(metrics.DNS_OUTCOMES),
        },
        "mailpolicy_policy_decisions_total": {
            "policy": set(ACTIVE),
            "mode": set(metrics.MODES),
            "result": {w for words in POLICY_RESULTS.values() for w in words},
            "action": set(metrics.ACTIONS),
        },
        "mailpolicy_policy_exemptions_total": {
            "policy": set(ACTIVE),
            "reason": set(metrics.EXEMPTION_REASONS),
        },
        "mailpolicy_policy_overrides_total": {
            "policy": set(ACTIVE),
            "mode": set(metrics.MODES),
            "reason": set(metrics.OVERRIDE_REASONS),
            "overridden_action": set(metrics.ACTIONS) - {"continue"},
        },
    }
    for name, samples in started.items():
        if not name.startswith("mailpolicy_") or not name.endswith("_total") or not any(samples):
            continue  # not ours, or unlabelled
        assert name in allowed, f"{name}: labelled series created but not checked here"
        for labels in samples:
            for key, val in labels:
                assert val in allowed[name][key], (name, key, val)
    # the sets are the ones the metrics' help texts (shown on /metrics) name
    helps = {
        metrics.TRANSACTIONS: metrics.OUTCOMES,
        metrics.RELOADS: metrics.RELOAD_RESULTS,
        metrics.UNREADABLE_INPUTS: (*metrics.UNREADABLE_NAMES, "other"),
        metrics.DNS_QUERIES: metrics.DNS_OUTCOMES,
        metrics.AUTH_RESULTS: tuple(AUTH_WORDS),
    }
    for metric, words in helps.items():
        documentation = metric.documentation
        assert all(re.search(rf"\b{w}\b", documentation) for w in words), (metric, words)


def test_no_label_is_a_domain_address_or_ip(started: Scrape) -> None:
    for name, samples in started.items():
        if name.endswith("_info"):
            continue  # version strings
        for labels in samples:
            for key, val in labels:
                assert "@" not in val and "." not in val and "/" not in val, (name, key, val)
                with pytest.raises(ValueError):
                    ipaddress.ip_address(val)


def test_the_sets_are_what_the_code_counts() -> None:
    """Each constant is checked against the code that increments the counter, so a new callback,
    outcome or result word cannot be added there without its series being pre-created."""
    adapter = inspect.getsource(mailpolicy.adapter)
    used = set(re.findall(r'@(?:guarded|streamed)\("(\w+)"', adapter)) | set(
        re.findall(r'CALLBACK_ERRORS, "(\w+)"', adapter)
    )
    assert used == set(metrics.CALLBACKS)
    session = inspect.getsource(mailpolicy.session)
    assert set(re.findall(r'CHECK_ERRORS, "(\w+)"', session)) == set(metrics.EXTRA_CHECKS)
    outcomes = set(re.findall(r'_finish\([^)]*?, "(\w+)"', session)) | set(
        mailpolicy.session._OUTCOME_OF.values()
    )
    assert outcomes == set(metrics.OUTCOMES)
    assert {a.value for a in Action} == set(metrics.ACTIONS)
    assert {m.value for m in Mode} - {"off"} == set(metrics.MODES)
    exempt = set(re.findall(r'\.exempt = "(\w+)"', inspect.getsource(mailpolicy.policy)))
    assert exempt == set(metrics.EXEMPTION_REASONS)
    assert metrics.OVERRIDE_REASONS == OVERRIDE_REASONS
    assert tuple(dns.OUTCOMES) == metrics.DNS_OUTCOMES
    assert dns._TYPES | {"other"} == set(metrics.DNS_TYPES)
    assert tuple(auth_spf.RESULTS) == AUTH_WORDS["spf"]
    dkim = inspect.getsource(mailpolicy.auth.dkim)
    dkim_words = set(re.findall(r'res\.result, res\.reason = "(\w+)"', dkim))
    dkim_words |= set(re.findall(r'_result\([^()]*(?:\([^()]*\))?[^()]*, "(\w+)"', dkim))
    assert dkim_words == set(AUTH_WORDS["dkim"])
    dmarc = inspect.getsource(mailpolicy.auth.dmarc)
    dmarc_words = set(re.findall(r'DmarcResult\("(\w+)"', dmarc)) | set(
        re.findall(r'res\.result = "(\w+)"', dmarc)
    )
    assert dmarc_words == set(AUTH_WORDS["dmarc"])
    # a check's decisions: the words its module returns, and temperror when it raises (policy.run_check)
    assert set(POLICY_RESULTS) == set(CHECKS)
    for module in (mailpolicy.checks.starttls, mailpolicy.checks.tls_version):
        name = module.SPEC.name
        words = set(re.findall(r'Verdict\("(\w+)"', inspect.getsource(module))) | {"temperror"}
        assert words == set(POLICY_RESULTS[name]), name
    assert 'Verdict("temperror"' in inspect.getsource(mailpolicy.policy.run_check)
    for name in ("spf", "dmarc"):  # their verdicts carry the authentication result word
        assert POLICY_RESULTS[name] == AUTH_WORDS[name]


def test_reload_adds_the_new_modes_and_keeps_counts() -> None:
    key = {"policy": "spf", "mode": "monitor", "result": "fail", "action": "reject"}
    metrics.init_series([("spf", "monitor")], checks=POLICY_RESULTS, methods=AUTH_WORDS)
    assert REGISTRY.get_sample_value("mailpolicy_policy_decisions_total", key) is not None
    metrics.child(metrics.POLICY_DECISIONS, *key.values()).inc()
    errors = {"callback": "eom"}
    metrics.child(metrics.CALLBACK_ERRORS, "eom").inc()
    before = REGISTRY.get_sample_value("mailpolicy_callback_errors_total", errors)
    counted = REGISTRY.get_sample_value("mailpolicy_policy_decisions_total", key)
    # the reload switches spf to enforce: its enforce series appear, the monitor counts stay
    metrics.init_series([("spf", "enforce")], checks=POLICY_RESULTS, methods=AUTH_WORDS)
    assert (
        REGISTRY.get_sample_value("mailpolicy_policy_decisions_total", {**key, "mode": "enforce"}) is not None
    )
    assert REGISTRY.get_sample_value("mailpolicy_policy_decisions_total", key) == counted
    assert REGISTRY.get_sample_value("mailpolicy_callback_errors_total", errors) == before


def test_bad_mode_is_refused_and_off_decides_nothing() -> None:
    with pytest.raises(ValueError, match="mode"):
        metrics.init_series([("spf", "enforcing")], checks=POLICY_RESULTS, methods=AUTH_WORDS)
    assert metrics.policy_label_sets("spf", "monitor", POLICY_RESULTS["spf"])
    with pytest.raises(ValueError):
        metrics.policy_label_sets("spf", "off", POLICY_RESULTS["spf"])


def test_without_auth_no_auth_or_dns_series_and_the_total_stays_small() -> None:
    bare = scrape([], auth=False)
    assert "mailpolicy_auth_results_total" not in bare
    assert "mailpolicy_dns_queries_total" not in bare
    full = scrape([(name, "enforce") for name in CHECKS])
    labelled = sum(len(s) for n, s in full.items() if n.endswith("_total"))
    assert labelled < 400, labelled  # bounded: no per-domain, per-address or per-IP series


# ---- the lean series against prometheus_client's own metric objects ----------------------------


@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["counter", "gauge_inc", "gauge_dec", "gauge_set", "histogram"]),
            st.sampled_from(["a", "b", "c"]),
            st.one_of(
                st.sampled_from([0.0, 0.0001, 0.00025, 0.001, 1.0, 5.0, 5.0000001, 60.0]),
                st.floats(min_value=0, max_value=100, allow_nan=False),
            ),
        ),
        max_size=40,
    )
)
def test_exposition_is_prometheus_clients_own(ops: list[tuple[str, str, float]]) -> None:
    """The same updates through mailpolicy's series and through prometheus_client's Counter, Gauge
    and Histogram give the same /metrics text, byte for byte (help, type, names, le labels, sums)."""
    import prometheus_client
    from prometheus_client import CollectorRegistry, generate_latest

    theirs = CollectorRegistry()
    t_counter = prometheus_client.Counter("t_events", "Events", ["kind"], registry=theirs)
    t_gauge = prometheus_client.Gauge("t_open", "Open", ["kind"], registry=theirs)
    t_hist = prometheus_client.Histogram(
        "t_seconds", "Seconds", ["kind"], buckets=metrics._LATENCY_BUCKETS, registry=theirs
    )
    t_solo = prometheus_client.Counter("t_solo", "Unlabelled", registry=theirs)

    families: list[Any] = []
    ours = CollectorRegistry()
    o_counter = metrics.Counter("t_events", "Events", ["kind"], families=families)
    o_gauge = metrics.Gauge("t_open", "Open", ["kind"], families=families)
    o_hist = metrics.Histogram(
        "t_seconds", "Seconds", ["kind"], buckets=metrics._LATENCY_BUCKETS, families=families
    )
    o_solo = metrics.Counter("t_solo", "Unlabelled", families=families)
    ours.register(metrics.Exporter(families))

    for op, label, amount in ops:
        if op == "counter":
            t_counter.labels(label).inc(amount)
            o_counter.labels(label).inc(amount)
            t_solo.inc()
            o_solo.inc()
        elif op == "gauge_inc":
            t_gauge.labels(label).inc(amount)
            o_gauge.labels(label).inc(amount)
        elif op == "gauge_dec":
            t_gauge.labels(label).dec(amount)
            o_gauge.labels(label).dec(amount)
        elif op == "gauge_set":
            t_gauge.labels(label).set(amount)
            o_gauge.labels(label).set(amount)
        else:
            t_hist.labels(label).observe(amount)
            o_hist.labels(label).observe(amount)
    assert generate_latest(ours) == generate_latest(theirs)


def test_series_refuse_what_prometheus_client_refuses() -> None:
    families: list[Any] = []
    labelled = metrics.Counter("t_refuse", "Refuse", ["kind"], families=families)
    solo = metrics.Counter("t_refuse_solo", "Refuse", families=families)
    with pytest.raises(ValueError):
        labelled.inc()  # a labelled metric has no series of its own
    with pytest.raises(ValueError):
        labelled.labels("a", "b")  # wrong number of label values
    with pytest.raises(ValueError):
        solo.inc(-1)  # counters only go up
    assert labelled.labels("a") is labelled.labels("a")  # one series object per label set
