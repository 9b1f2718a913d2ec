"""The spf and dmarc checks: result -> action mapping, caps, temperror handling, exemptions."""

from __future__ import annotations

import ipaddress
from typing import Any

from mailpolicy import config, policy
from mailpolicy.auth import AuthResults, DmarcResult, SpfResult
from mailpolicy.checks import CHECKS
from mailpolicy.model import Action, Mode
from mailpolicy.state import Transaction
from support.txn import new_txn


def txn(spf: str | None = None, dmarc: DmarcResult | None = None) -> Transaction:
    t = new_txn()
    t.auth = AuthResults(
        spf=SpfResult(spf, "mailfrom", "example.org", "a@example.org") if spf else None, dmarc=dmarc
    )
    return t


def policies(**raw: Any) -> dict[str, Any]:
    return dict(config.parse({"policies": raw}).policies)


def test_spf_default_mapping() -> None:
    cfg = policies()["spf"]
    run = CHECKS["spf"].run
    v = run(txn("fail"), cfg)
    assert (v.result, v.action, str(v.reply)) == ("fail", Action.REJECT, "550 5.7.23 SPF validation failed")
    assert v.details == {"scope": "mailfrom", "domain": "example.org"}
    for result in ("pass", "softfail", "neutral", "none", "permerror", "temperror"):
        assert run(txn(result), cfg).action is Action.CONTINUE, result
    assert run(new_txn(), cfg).result == "none"  # no SPF computed


def test_spf_configured_mapping() -> None:
    cfg = policies(spf={"temperror": "tempfail", "softfail": "reject", "fail": "continue"})["spf"]
    run = CHECKS["spf"].run
    v = run(txn("temperror"), cfg)
    assert (v.action, str(v.reply)) == (Action.TEMPFAIL, "451 4.7.24 SPF validation error, try again later")
    assert run(txn("softfail"), cfg).action is Action.REJECT
    assert run(txn("fail"), cfg).action is Action.CONTINUE


def fail(disposition: str) -> DmarcResult:
    return DmarcResult("fail", "example.org", "example.org", disposition, disposition)


def test_dmarc_follows_disposition() -> None:
    cfg = policies()["dmarc"]
    run = CHECKS["dmarc"].run
    v = run(txn(dmarc=fail("reject")), cfg)
    assert (v.result, v.action) == ("fail", Action.REJECT)
    assert str(v.reply) == "550 5.7.1 Message rejected by the DMARC policy of the sender domain"
    assert run(txn(dmarc=fail("quarantine")), cfg).action is Action.QUARANTINE
    assert run(txn(dmarc=fail("none")), cfg).action is Action.CONTINUE
    for result in ("pass", "none", "temperror"):
        assert run(txn(dmarc=DmarcResult(result, "example.org")), cfg).action is Action.CONTINUE


def test_dmarc_permerror_action() -> None:
    """A message without a usable From must not walk past an enforced DMARC policy: permerror
    rejects by default (its own reply), and is configurable."""
    run = CHECKS["dmarc"].run
    bad = DmarcResult("permerror", reason="no RFC5322.From field", author_problem="no_from")
    v = run(txn(dmarc=bad), policies()["dmarc"])
    assert (v.result, v.action, v.details["author_problem"]) == ("permerror", Action.REJECT, "no_from")
    assert str(v.reply).startswith("550 5.7.1 Message rejected: its From header field gives no single author")
    for action, expected in (("continue", Action.CONTINUE), ("quarantine", Action.QUARANTINE)):
        v = run(txn(dmarc=bad), policies(dmarc={"permerror_action": action})["dmarc"])
        assert (v.action, v.reply) == (expected, None)
    v = run(txn(dmarc=bad), policies(dmarc={"permerror_action": "tempfail"})["dmarc"])
    assert str(v.reply).startswith("451 4.7.5")
    v = run(txn(dmarc=bad), policies(dmarc={"permerror_reply": "554 5.7.1 No From"})["dmarc"])
    assert str(v.reply) == "554 5.7.1 No From"


def test_dmarc_max_action_caps() -> None:
    run = CHECKS["dmarc"].run
    cfg = policies(dmarc={"max_action": "quarantine"})["dmarc"]
    v = run(txn(dmarc=fail("reject")), cfg)
    assert (v.action, v.reply) == (Action.QUARANTINE, None)
    cfg = policies(dmarc={"max_action": "continue"})["dmarc"]
    assert run(txn(dmarc=fail("reject")), cfg).action is Action.CONTINUE


def test_dmarc_temperror_action() -> None:
    run = CHECKS["dmarc"].run
    cfg = policies(dmarc={"temperror_action": "tempfail"})["dmarc"]
    v = run(txn(dmarc=DmarcResult("temperror", "example.org")), cfg)
    assert (v.action, str(v.reply)) == (
        Action.TEMPFAIL,
        "451 4.7.5 DMARC evaluation could not complete, try again later",
    )


def test_exemptions_apply_to_auth_policies() -> None:
    cfg = policies(dmarc={"mode": "enforce", "exempt_networks": ["192.0.2.0/24"]})["dmarc"]
    t = txn(dmarc=fail("reject"))
    t.conn.client_ip = ipaddress.ip_address("192.0.2.9")
    d = policy.evaluate(CHECKS["dmarc"], cfg, t)
    assert (d.mode, d.result, d.action, d.exempt) == (Mode.ENFORCE, "fail", Action.CONTINUE, "network")
    t.auth_user = "alice"
    t.conn.client_ip = ipaddress.ip_address("198.51.100.1")
    d = policy.evaluate(CHECKS["dmarc"], cfg, t)
    assert (d.action, d.exempt) == (Action.CONTINUE, "authenticated")
