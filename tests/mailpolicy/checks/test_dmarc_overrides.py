"""DMARC overrides (RFC 9990 reasons): trusted forwarder networks, trusted ARC sealers, mailing
lists, and exemptions as local_policy; each one only when what vouches for it is really there."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest

from mailpolicy import config, policy
from mailpolicy.auth import AuthResults, DkimResult, DmarcResult, SpfResult
from mailpolicy.checks import CHECKS
from mailpolicy.checks.dmarc import aar_vouches, related
from mailpolicy.message import Message, list_id_of
from mailpolicy.model import Action
from mailpolicy.session import Setup
from mailpolicy.state import Transaction
from support.txn import new_txn


@dataclass
class Arc:
    """What the dmarc check reads from an ARC result."""

    result: str
    sealers: list[str] = field(default_factory=list)
    aar: list[str] = field(default_factory=list)


def dmarc_cfg(**opts: Any) -> Any:
    return config.parse({"policies": {"dmarc": {"mode": "enforce", **opts}}}).policies["dmarc"]


def failing_txn(
    ip: str = "192.0.2.10",
    arc: Arc | None = None,
    list_id: bytes | None = None,
    dkim: list[DkimResult] | None = None,
    spf: SpfResult | None = None,
    disposition: str = "reject",
) -> Transaction:
    t = new_txn()
    t.conn.client_ip = ipaddress.ip_address(ip)
    t.auth = AuthResults(
        spf=spf,
        dkim=dkim or [],
        dmarc=DmarcResult("fail", "example.com", "example.com", "reject", disposition),
    )
    if arc is not None:
        t.auth.results["arc"] = arc
    t.message = Message("mx.test", [], True)
    if list_id is not None:
        t.message.header("List-Id", list_id)
    return t


def run(t: Transaction, cfg: Any) -> Any:
    return policy.evaluate(CHECKS["dmarc"], cfg, t)


SEALED_PASS = Arc("pass", ["lists.example.org"], ["lists.example.org; dmarc=pass header.from=example.com"])


def test_without_overrides_a_failure_is_refused() -> None:
    d = run(failing_txn(arc=SEALED_PASS, list_id=b"<dev.lists.example.org>"), dmarc_cfg())
    assert (d.action, d.override, d.overridden) == (Action.REJECT, None, None)
    assert d.record()["override"] is None


def test_trusted_forwarder_network() -> None:
    cfg = dmarc_cfg(trusted_forwarders=["192.0.2.0/24"])
    d = run(failing_txn(), cfg)
    assert (d.result, d.action, d.override, d.overridden) == (
        "fail",
        Action.CONTINUE,
        "trusted_forwarder",
        Action.REJECT,
    )
    assert d.details["override_by"] == "192.0.2.0/24"
    assert d.record()["overridden_action"] == "reject"
    assert run(failing_txn(ip="198.51.100.1"), cfg).action is Action.REJECT
    assert run(failing_txn(ip="::ffff:192.0.2.7"), cfg).override == "trusted_forwarder"


def test_trusted_sealer_needs_a_passing_chain_and_a_vouching_aar() -> None:
    cfg = dmarc_cfg(trusted_arc_sealers=["lists.example.org"])
    d = run(failing_txn(arc=SEALED_PASS), cfg)
    assert (d.action, d.override, d.details["override_by"]) == (
        Action.CONTINUE,
        "trusted_forwarder",
        "lists.example.org",
    )
    # the chain does not validate: no override
    assert (
        run(failing_txn(arc=Arc("fail", SEALED_PASS.sealers, SEALED_PASS.aar)), cfg).action is Action.REJECT
    )
    # a valid chain from a sealer we do not trust
    other = Arc("pass", ["forwarder.example.net"], SEALED_PASS.aar)
    assert run(failing_txn(arc=other), cfg).action is Action.REJECT
    # the trusted sealer saw a failure
    saw_fail = Arc("pass", ["lists.example.org"], ["lists.example.org; dmarc=fail header.from=example.com"])
    assert run(failing_txn(arc=saw_fail), cfg).action is Action.REJECT
    # the trusted sealer vouched for another author domain
    other_author = Arc(
        "pass", ["lists.example.org"], ["lists.example.org; dmarc=pass header.from=example.net"]
    )
    assert run(failing_txn(arc=other_author), cfg).action is Action.REJECT


def test_an_untrusted_newer_hop_ends_the_trust() -> None:
    cfg = dmarc_cfg(trusted_arc_sealers=["lists.example.org"])
    # i=1 trusted and vouching, i=2 sealed by someone else: that hop could have changed anything
    chain = Arc(
        "pass",
        ["lists.example.org", "relay.example.net"],
        ["lists.example.org; dmarc=pass header.from=example.com", "relay.example.net; arc=pass"],
    )
    assert run(failing_txn(arc=chain), cfg).action is Action.REJECT
    both = dmarc_cfg(trusted_arc_sealers=["lists.example.org", "relay.example.net"])
    assert run(failing_txn(arc=chain), both).override == "trusted_forwarder"


@pytest.mark.parametrize(
    ("aar", "vouches"),
    [
        ("x; dmarc=pass header.from=example.com", True),
        ("x; dmarc=pass (p=reject) header.from=EXAMPLE.com", True),
        ("x; dkim=pass header.d=example.com header.s=s1", True),
        ("x; dkim=pass header.i=@mail.example.com", True),
        ("x; spf=pass smtp.mailfrom=bounce@example.com", True),
        ("x; spf=pass smtp.mailfrom=bounce@news.example.com", True),
        ("x; dkim=pass header.d=evil-example.com", False),
        ("x; dkim=pass header.d=example.com.evil.net", False),
        ("x; dkim=fail header.d=example.com", False),
        ("x; spf=softfail smtp.mailfrom=example.com", False),
        ("x; dmarc=pass header.from=other.example", False),
        ("dmarc=pass header.from=example.com", False),  # that is the authserv-id, not a result
        ("x; (dmarc=pass header.from=example.com) dmarc=fail header.from=example.com", False),
        ("", False),
    ],
)
def test_aar_vouches(aar: str, vouches: bool) -> None:
    assert aar_vouches(aar, "example.com") is vouches


def test_related_is_strict_relaxed_alignment() -> None:
    assert related("example.com", "mail.example.com") and related("a.b.example.com", "example.com")
    assert not related("a.example.com", "b.example.com") and not related("badexample.com", "example.com")


def test_list_override_needs_the_list_domain_to_authenticate() -> None:
    cfg = dmarc_cfg(mailing_lists=["lists.example.org"])
    signed = [DkimResult("pass", domain="lists.example.org"), DkimResult("fail", domain="example.com")]
    d = run(failing_txn(list_id=b"Dev list <dev.lists.example.org>", dkim=signed), cfg)
    assert (d.action, d.override, d.details["override_by"]) == (
        Action.CONTINUE,
        "mailing_list",
        "dev.lists.example.org",
    )
    # List-Id alone is text any sender writes
    assert run(failing_txn(list_id=b"<dev.lists.example.org>"), cfg).action is Action.REJECT
    # signed by another domain
    assert (
        run(
            failing_txn(list_id=b"<dev.lists.example.org>", dkim=[DkimResult("pass", domain="evil.example")]),
            cfg,
        ).action
        is Action.REJECT
    )
    # the list's SPF pass counts as well
    bounce = SpfResult("pass", "mailfrom", "lists.example.org", "dev-bounces@lists.example.org")
    assert run(failing_txn(list_id=b"<dev.lists.example.org>", spf=bounce), cfg).override == "mailing_list"
    # a list we did not name
    assert (
        run(
            failing_txn(list_id=b"<x.other.example>", dkim=[DkimResult("pass", domain="other.example")]), cfg
        ).action
        is Action.REJECT
    )
    anyl = dmarc_cfg(mailing_lists=["*"])
    assert (
        run(
            failing_txn(list_id=b"<x.other.example>", dkim=[DkimResult("pass", domain="other.example")]), anyl
        ).override
        == "mailing_list"
    )


def test_list_action_quarantine_turns_a_reject_into_a_quarantine() -> None:
    cfg = dmarc_cfg(mailing_lists=["*"], mailing_list_action="quarantine")
    signed = [DkimResult("pass", domain="lists.example.org")]
    d = run(failing_txn(list_id=b"<dev.lists.example.org>", dkim=signed), cfg)
    assert (d.action, d.override, d.overridden) == (Action.QUARANTINE, "mailing_list", Action.REJECT)
    assert d.quarantine_header == ("X-Mailpolicy-Quarantine", "DMARC policy quarantine")


def test_a_none_disposition_needs_no_override() -> None:
    cfg = dmarc_cfg(trusted_forwarders=["192.0.2.0/24"])
    d = run(failing_txn(disposition="none"), cfg)
    assert (d.action, d.override) == (Action.CONTINUE, None)


def test_exemptions_are_local_policy_overrides() -> None:
    cfg = dmarc_cfg(exempt_networks=["192.0.2.0/24"])
    d = run(failing_txn(), cfg)
    assert (d.action, d.exempt, d.override, d.overridden) == (
        Action.CONTINUE,
        "network",
        "local_policy",
        Action.REJECT,
    )


def test_list_id_parsing() -> None:
    assert list_id_of(b" Dev list <Dev.Lists.Example.org>\r\n") == "dev.lists.example.org"
    assert list_id_of(b"<nodot>") is None and list_id_of(b"no brackets") is None
    assert list_id_of(b"\xff\xfe <a.b>") == "a.b"


@pytest.mark.parametrize(
    ("opts", "problem"),
    [
        ({"trusted_arc_sealers": ["not a domain"]}, "policies.dmarc.trusted_arc_sealers[0]"),
        ({"trusted_forwarders": ["192.0.2.1/8"]}, "policies.dmarc.trusted_forwarders[0]"),
        ({"mailing_lists": ["*", "lists.example.org"]}, "policies.dmarc.mailing_lists"),
        ({"mailing_list_action": "reject"}, "policies.dmarc.mailing_list_action"),
    ],
)
def test_bad_override_options_name_their_key(opts: dict[str, Any], problem: str) -> None:
    with pytest.raises(config.ConfigError) as exc:
        dmarc_cfg(**opts)
    assert any(e.startswith(problem) for e in exc.value.errors), exc.value.errors


OFF = {"require_starttls": {"mode": "off"}, "tls_min_version": {"mode": "off"}}


def test_the_methods_that_run_follow_the_active_checks() -> None:
    base = {
        "auth": {"enabled": False},
        "policies": {**OFF, "spf": {"mode": "off"}, "dmarc": {"mode": "monitor"}},
    }
    s = Setup.from_config(config.parse(base))
    assert [m.name for m in s.mail_methods] == ["spf"]  # DMARC needs SPF and DKIM
    assert [m.name for m in s.eom_methods] == ["dkim", "dmarc"]
    spf_only = {
        "auth": {"enabled": False},
        "policies": {**OFF, "spf": {"mode": "enforce"}, "dmarc": {"mode": "off"}},
    }
    s = Setup.from_config(config.parse(spf_only))
    assert [m.name for m in s.mail_methods] == ["spf"] and not s.eom_methods
    nothing = {
        "auth": {"enabled": False},
        "policies": {**OFF, "spf": {"mode": "off"}, "dmarc": {"mode": "off"}},
    }
    assert not Setup.from_config(config.parse(nothing)).auth_active


def test_trusted_sealers_make_arc_run_without_auth_enabled() -> None:
    pol = {
        **OFF,
        "spf": {"mode": "off"},
        "dmarc": {"mode": "monitor", "trusted_arc_sealers": ["lists.example.org"]},
    }
    s = Setup.from_config(config.parse({"auth": {"enabled": False}, "policies": pol}))
    assert [m.name for m in s.eom_methods] == ["dkim", "arc", "dmarc"]
    arc_only = {**OFF, "spf": {"mode": "off"}, "dmarc": {"mode": "off"}, "arc": {"mode": "monitor"}}
    s = Setup.from_config(config.parse({"auth": {"enabled": False}, "policies": arc_only}))
    assert [m.name for m in (*s.mail_methods, *s.eom_methods)] == ["arc"]
    everything = Setup.from_config(config.parse({}))
    assert [m.name for m in (*everything.mail_methods, *everything.eom_methods)] == [
        "spf",
        "dkim",
        "arc",
        "dmarc",
    ]
