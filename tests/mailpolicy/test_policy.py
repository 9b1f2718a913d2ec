from __future__ import annotations

import ipaddress

import pytest

from mailpolicy import config, policy
from mailpolicy.checks import CHECKS
from mailpolicy.model import Action, Decision, Mode, Verdict
from mailpolicy.state import Connection, Transaction
from mailpolicy.tls import TlsInfo
from support.txn import new_txn


def txn(
    ip: str = "203.0.113.1", auth: str | None = None, tls: str | None = None, rcpts: tuple[str, ...] = ()
) -> Transaction:
    conn = Connection(client_ip=ipaddress.ip_address(ip), client_ip_text=ip)
    t = new_txn(conn)
    t.auth_user = auth
    t.tls = TlsInfo(tls, "AES", 128, None, None) if tls else None
    t.recipients.extend(rcpts)
    return t


def cfg_for(name: str, **opts: object):  # type: ignore[no-untyped-def]
    return config.parse({"policies": {name: opts}}).policies[name]


def test_monitor_records_would_reject_without_applying() -> None:
    cfg = cfg_for("require_starttls", mode="monitor")
    d = policy.evaluate(CHECKS["require_starttls"], cfg, txn())
    assert (d.result, d.action, d.mode, d.applied, d.exempt) == (
        "fail",
        Action.REJECT,
        Mode.MONITOR,
        False,
        None,
    )
    assert not policy.enforceable(d)
    assert policy.strongest([d]) is None


def test_enforce_is_enforceable() -> None:
    d = policy.evaluate(CHECKS["require_starttls"], cfg_for("require_starttls", mode="enforce"), txn())
    assert policy.enforceable(d) and policy.strongest([d]) is d
    assert str(d.reply) == "530 5.7.0 Must issue a STARTTLS command first"


def test_pass_is_continue() -> None:
    d = policy.evaluate(
        CHECKS["require_starttls"], cfg_for("require_starttls", mode="enforce"), txn(tls="TLSv1.3")
    )
    assert d.result == "pass" and d.action is Action.CONTINUE and not policy.enforceable(d)


@pytest.mark.parametrize(
    "kw,opts,exempt",
    [
        ({"ip": "192.0.2.10"}, {"exempt_networks": ["192.0.2.0/24"]}, "network"),
        ({"ip": "2001:db8::5"}, {"exempt_networks": ["2001:db8::/32"]}, "network"),
        ({"auth": "alice"}, {}, "authenticated"),
        ({"auth": "alice"}, {"exempt_authenticated": False}, None),
        ({"rcpts": ("postmaster@x.example",)}, {"exempt_recipients": ["postmaster@"]}, "recipient"),
        ({"rcpts": ("user@x.example",)}, {"exempt_recipients": ["postmaster@"]}, None),
        # One exempt recipient must not carry the message to the others (end of data).
        ({"rcpts": ("postmaster@x.example", "ceo@x.example")}, {"exempt_recipients": ["postmaster@"]}, None),
        (
            {"rcpts": ("postmaster@x.example", "abuse@y.example")},
            {"exempt_recipients": ["postmaster@", "abuse@"]},
            "recipient",
        ),
    ],
)
def test_exemptions(kw: dict[str, object], opts: dict[str, object], exempt: str | None) -> None:
    cfg = cfg_for("require_starttls", mode="enforce", **opts)
    d = policy.evaluate(CHECKS["require_starttls"], cfg, txn(**kw))  # type: ignore[arg-type]
    assert d.exempt == exempt
    assert d.action is (Action.CONTINUE if exempt else Action.REJECT)


def test_check_exception_becomes_temperror_without_action() -> None:
    from dataclasses import replace

    def boom(t: Transaction, c: object) -> Verdict:
        raise RuntimeError("library bug")

    spec = replace(CHECKS["require_starttls"], run=boom)
    d = policy.evaluate(spec, cfg_for("require_starttls", mode="enforce"), txn())
    assert d.result == "temperror" and d.action is Action.CONTINUE
    assert "RuntimeError: library bug" in d.details["error"]


def test_strongest_prefers_severity_then_order() -> None:
    def mk(name: str, action: Action) -> Decision:
        return Decision(name, Mode.ENFORCE, "fail", action)

    a, b, c = mk("a", Action.TEMPFAIL), mk("b", Action.REJECT), mk("c", Action.REJECT)
    assert policy.strongest([a, b, c]) is b
    assert policy.strongest([Decision("m", Mode.MONITOR, "fail", Action.REJECT), a]) is a


def test_settle_recipients() -> None:
    d = Decision("p", Mode.ENFORCE, "fail", Action.REJECT)
    policy.settle_recipients(d, rcpt_total=2, rcpt_exempt=2)
    assert d.action is Action.CONTINUE and d.exempt == "recipient"
    d = Decision("p", Mode.ENFORCE, "fail", Action.REJECT)
    policy.settle_recipients(d, rcpt_total=2, rcpt_exempt=1)
    assert d.action is Action.REJECT and d.exempt is None


def test_metric_children_are_cached_and_created_on_first_use() -> None:
    from prometheus_client import REGISTRY

    from mailpolicy import metrics

    def value() -> float | None:
        return REGISTRY.get_sample_value(
            "mailpolicy_policy_decisions_total",
            {"policy": "cache-test", "mode": "monitor", "result": "x", "action": "continue"},
        )

    assert value() is None  # no series before its first count
    first = metrics.child(metrics.POLICY_DECISIONS, "cache-test", "monitor", "x", "continue")
    assert first is metrics.POLICY_DECISIONS.labels("cache-test", "monitor", "x", "continue")
    assert metrics.child(metrics.POLICY_DECISIONS, "cache-test", "monitor", "x", "continue") is first
    first.inc()
    metrics.child(metrics.POLICY_DECISIONS, "cache-test", "monitor", "x", "continue").inc()
    assert value() == 2.0
