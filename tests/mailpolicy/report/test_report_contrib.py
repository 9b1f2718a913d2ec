"""contrib/: Prometheus rules checked and unit-tested with promtool (every alert has a test case
that makes it fire), and the rules' and the Grafana dashboard's expressions checked against the
metrics the milter really exports.

promtool is required (apt-get install prometheus); the tests fail without it rather than skipping."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

import mailpolicy.metrics  # noqa: F401  (registers the metrics)

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "contrib" / "prometheus" / "mailpolicy-rules.yml"
RULE_TESTS = ROOT / "contrib" / "prometheus" / "mailpolicy-rules.test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "mailpolicy-dashboard.json"
# Prometheus's own series about the scrape of each target.
SCRAPE_METRICS = {"up"}
# PromQL words that are not metric names: aggregation operators (followed by by/without, not by
# a parenthesis), set operators and modifiers.
PROMQL_WORDS = {
    *("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"),
    *("bottomk", "topk", "quantile", "by", "without", "on", "ignoring", "group_left", "group_right"),
    *("offset", "bool", "and", "or", "unless", "inf", "nan"),
}


def promtool() -> str:
    exe = shutil.which("promtool")
    assert exe, "promtool is not installed (apt-get install -y prometheus)"
    return exe


def exported_metrics() -> set[str]:
    names: set[str] = set()
    for metric in REGISTRY.collect():
        names.update(s.name for s in metric.samples)
        if metric.type == "histogram":
            names.update(f"{metric.name}_{suffix}" for suffix in ("bucket", "count", "sum"))
        if metric.type == "counter":
            names.add(f"{metric.name}_total")
    return {n for n in names if n.startswith("mailpolicy_")}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: every identifier outside strings, label
    matchers, ranges and label lists that is neither a function (followed by a parenthesis) nor a
    PromQL keyword. Numbers and durations (``1d``, ``1e-3``) are not identifiers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[m.end() :].lstrip().startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def test_metric_names_parser() -> None:
    assert metric_names(
        'sum by (policy, le) (rate(mailpolicy_x_total{a="b",c=~"d|e"}[5m])) / on (policy) group_left '
        'sum without (x) (mailpolicy:y:rate1h offset 1d) > 1e-3 and absent(up{job="m"}) or time() - z'
    ) == {"mailpolicy_x_total", "mailpolicy:y:rate1h", "up", "z"}
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(a_bucket[$__rate_interval])))") == {
        "a_bucket"
    }


def rule_exprs(text: str) -> list[str]:
    """The ``expr`` of every rule in a rules file: a one-line value, or a folded block (``>-``) made
    of the lines indented deeper than the key."""
    lines = text.splitlines()
    exprs = []
    for i, line in enumerate(lines):
        m = re.fullmatch(r"( *)(?:- )?expr: *(.*)", line)
        if not m:
            continue
        indent, value = len(m.group(1)), m.group(2).strip()
        if value in (">", ">-", "|", "|-"):
            body = []
            for nxt in lines[i + 1 :]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                body.append(nxt.strip())
            value = " ".join(body).strip()
        exprs.append(value)
    return exprs


def alert_names(text: str) -> list[str]:
    return re.findall(r"^ *- alert: *['\"]?([A-Za-z0-9_:]+)['\"]? *$", text, re.M)


def alert_tests(text: str) -> tuple[set[str], set[str]]:
    """From a ``promtool test rules`` file: the alert names that have a test case, and those with a
    case whose ``exp_alerts`` is a non-empty list (the alert is expected to fire)."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip())

    tested: set[str] = set()
    firing: set[str] = set()
    for i, line in enumerate(lines):
        m = re.fullmatch(r"( *)- alertname: *['\"]?([A-Za-z0-9_:]+)['\"]? *", line)
        if not m:
            continue
        name, keys = m.group(2), len(m.group(1)) + 2
        tested.add(name)
        exp = None
        for j in range(i + 1, len(lines)):
            if indent(lines[j]) < keys:
                break
            k = re.fullmatch(r" *exp_alerts: *(.*)", lines[j])
            if k and indent(lines[j]) == keys:
                exp = k.group(1).strip()
                if exp == "" and j + 1 < len(lines):
                    nxt = lines[j + 1]
                    exp = "list" if indent(nxt) >= keys and nxt.lstrip().startswith("- ") else "?"
                break
        assert exp in ("[]", "list", None), f"{name}: cannot read exp_alerts ({exp!r})"
        if exp == "list":
            firing.add(name)
    return tested, firing


def test_alert_test_parser() -> None:
    text = """
tests:
  - alert_rule_test:
      - alertname: A
        exp_alerts: []
      - alertname: "B"
        eval_time: 1m
        exp_alerts:
        - exp_labels: {}
      # a comment
      - alertname: C
        exp_alerts:
          - exp_labels:
              severity: info
      - alertname: D
"""
    assert alert_tests(text) == ({"A", "B", "C", "D"}, {"B", "C"})


def test_every_alert_has_a_test_that_makes_it_fire() -> None:
    rules = RULES.read_text()
    alerts = alert_names(rules)
    assert len(alerts) == len(set(alerts)), "duplicate alert names"
    tested, firing = alert_tests(RULE_TESTS.read_text())
    assert tested <= set(alerts), f"test cases for unknown alerts: {tested - set(alerts)}"
    assert set(alerts) - firing == set(), "alerts without a test case in which they fire"
    # what this file's reading found is what promtool loads
    res = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False
    )
    found = re.search(r"SUCCESS: (\d+) rules found", res.stdout)
    assert found, res.stdout + res.stderr
    records = re.findall(r"^ *- record: *(\S+)", rules, re.M)
    assert int(found.group(1)) == len(alerts) + len(records) == len(rule_exprs(rules))
    for name in ("MailpolicyDown", "MailpolicyAbsent", "MailpolicyConfigReloadFailed"):
        assert name in alerts


def test_promtool_check_and_unit_tests() -> None:
    exe = promtool()
    res = subprocess.run(
        [exe, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout
    res = subprocess.run(
        [exe, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_rules_name_only_real_metrics() -> None:
    known = exported_metrics()
    text = RULES.read_text()
    recorded = set(re.findall(r"- record: (\S+)", text))
    exprs = rule_exprs(text)
    assert len(exprs) >= 20
    used: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= known | recorded | SCRAPE_METRICS, (
            f"unknown metric {names - known - recorded} in {expr!r}"
        )
        used |= names
    # a recorded series is only ever read after it is recorded (no typo in a recording rule's name)
    assert {n for n in used if ":" in n} <= recorded
    # every metric the brief names for the would-reject counters is used
    for name in (
        "mailpolicy_policy_decisions_total",
        "mailpolicy_connections_total",
        "mailpolicy_check_errors_total",
        "mailpolicy_callback_errors_total",
        "mailpolicy_config_reloads_total",
        "up",
    ):
        assert name in used


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def test_grafana_dashboard_panels_name_real_metrics(tmp_path: Path) -> None:
    dash = json.loads(DASHBOARD.read_text())
    known = exported_metrics() | SCRAPE_METRICS
    exprs: list[str] = []
    for p in panels(dash["panels"]):
        if p["type"] == "row":
            continue
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        for t in p["targets"]:
            expr = t["expr"]
            names = metric_names(expr)
            assert names, f"panel {p['title']!r}: no metric in {expr!r}"
            assert names <= known, f"panel {p['title']!r}: unknown metric {names - known}"
            assert "$instance" in expr, f"panel {p['title']!r}: {expr!r} ignores the Host selector"
            assert t["datasource"] == p["datasource"], p["title"]
            exprs.append(expr)
    assert len(exprs) >= 10
    used = {n for e in exprs for n in metric_names(e)}
    # the dashboard covers every metric family the milter exports for these questions
    for name in (
        "mailpolicy_policy_decisions_total",
        "mailpolicy_transactions_total",
        "mailpolicy_messages_total",
        "mailpolicy_connections_total",
        "mailpolicy_check_errors_total",
        "mailpolicy_callback_errors_total",
        "mailpolicy_policy_exemptions_total",
        "mailpolicy_callback_duration_seconds_bucket",
        "mailpolicy_dns_queries_total",
        "mailpolicy_dns_query_duration_seconds_bucket",
        "mailpolicy_auth_results_total",
        "mailpolicy_config_reloads_total",
        "mailpolicy_config_last_reload_success_timestamp_seconds",
        "mailpolicy_config_info",
        "mailpolicy_build_info",
        "mailpolicy_unreadable_inputs_total",
        "up",
    ):
        assert name in used, name
    # and every expression is valid PromQL: promtool parses them as recording rules (JSON is YAML)
    substituted = [e.replace("$__rate_interval", "5m").replace("$instance", ".*") for e in exprs]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(substituted)],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps(rules))
    res = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_grafana_dashboard_layout() -> None:
    """Importable as it is: unique panel ids, the data source and Host variables kept, and panels
    that fit the 24-column grid without overlapping."""
    dash = json.loads(DASHBOARD.read_text())
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource", "instance"]
    ids = [p["id"] for p in panels(dash["panels"])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    taken: dict[tuple[int, int], str] = {}
    for p in panels(dash["panels"]):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"{p['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = p["title"]
