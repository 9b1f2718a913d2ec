"""DMARC overrides (RFC 9990 reasons): trusted forwarder networks, trusted ARC sealers, mailing
lists, and exemptions as local_policy; each one only when what vouches for it is really there."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# ---- what a trusted sealer recorded, read as written ------------------------------------------------

# The A-R mailpolicy itself writes for MAIL FROM:<"x;dmarc=pass header.from=example.com y"@attacker.example>
# (SPF passes for attacker.example), as a trusted upstream mailpolicy + sealer copies it into its AAR.
OWN_AR_FOR_QUOTED_MAILFROM = (
    'mx.upstream.example; spf=pass smtp.mailfrom="\\"x;dmarc=pass header.from=example.com y\\"'
    '@attacker.example"; arc=none smtp.remote-ip=198.51.100.7; dmarc=none header.from=attacker.example'
)


@pytest.mark.parametrize(
    "aar",
    [
        # a ';' inside a quoted local part separates nothing (RFC 8601 pvalue, RFC 5322 local-part)
        'x; spf=pass smtp.mailfrom="y;dmarc=pass header.from=example.com z"@attacker.example;'
        " dmarc=fail header.from=example.com",
        'x; spf=pass smtp.mailfrom="y;dmarc=pass header.from=example.com"@attacker.example',
        OWN_AR_FOR_QUOTED_MAILFROM,
        # escaped quotes do not end the quoted-string
        'x; spf=pass smtp.mailfrom="a\\";dmarc=pass header.from=example.com;\\""@attacker.example',
        # nor does a ';' in a quoted reason, and a property named inside it is not a property
        'x; dkim=fail reason="b;dmarc=pass header.from=example.com" header.d=example.com',
        'x; dmarc=pass header.from=other.example reason="y header.from=example.com"',
        'x; dmarc=pass header.from=other.example comment="header.from=example.com"',
        # comments nest at any depth
        "x; dkim=fail (a (b (c (d; dmarc=pass header.from=example.com) c) b) a) header.d=example.com",
        "x; dkim=fail (a \\) ; dmarc=pass header.from=example.com) header.d=example.com",
        # a value written as one quoted-string names no domain
        'x; dmarc=pass header.from="example.com"',
        'x; spf=pass smtp.mailfrom="bounce@example.com"',
        # malformed: vouches for nothing (fail closed)
        'x; dmarc=pass header.from=example.com; spf=pass smtp.mailfrom="a',
        "x; dmarc=pass header.from=example.com; spf=pass (unterminated",
        "x; dmarc=pass header.from=example.com header.from=other.example",
        "x; dmarc=pass header.from=other.example header.from=example.com",
        "x; dmarc=pass header.from=example.com; dkim=pass header.d=a\\b",
        "x; dmarc=pass header.from=example.com) (",
        "x; dmarc=pass header.from=example.com; spf = pass smtp.mailfrom=example.com",
        "x; dmarc=pass header.from=example.com\x0b",
        "x; dmarc=pass header.from=example.com@",
        "x; dmarc=pass header.from=a@b@example.com",
    ],
)
def test_aar_vouches_only_for_what_is_written_outside_quotes_and_comments(aar: str) -> None:
    """Hole: the AAR was split on every ';', inside quoted-strings and comments too, so a trusted
    sealer honestly recording an SPF pass for the attacker's quoted MAIL FROM vouched for the
    domain the attacker named inside the quotes."""
    assert aar_vouches(aar, "example.com") is False


@pytest.mark.parametrize(
    "aar",
    [
        'x; spf=pass smtp.mailfrom="a b;c"@example.com',
        'x; spf=pass smtp.mailfrom="a@victim.example"@news.example.com',
        'x; dkim=pass reason="ok; fine" header.d=example.com header.b=ab/cd+e=',
        "x 1; dmarc=pass (p=reject; dis=none) header.from=example.com",
        "x; none; dmarc=pass header.from=example.com.",
        "i.example; dkim=pass header.i=@EXAMPLE.COM; spf=pass smtp.mailfrom=example.com",
        "x; dmarc=pass action=none header.from=example.com;compauth=pass reason=100",
        "x; arc=pass (i=1 spf=fail; dkim=pass (a; b)) smtp.remote-ip=2001:db8::1;"
        " dmarc=pass header.from=example.com",
    ],
)
def test_aar_still_vouches_for_a_pass_written_plainly(aar: str) -> None:
    assert aar_vouches(aar, "example.com") is True


def test_a_cut_aar_does_not_vouch_with_its_last_result() -> None:
    """arc.py keeps MAX_AAR_CHARS of an AAR: header.d=example.com.evil.example cut after
    example.com must not read as example.com."""
    from mailpolicy.auth.arc import MAX_AAR_CHARS

    head = 'x; spf=fail smtp.mailfrom="' + "a" * 100 + '"@attacker.example; dkim=pass header.d='
    pad = MAX_AAR_CHARS - len(head) - len("example.com")
    text = head.replace("a" * 100, "a" * (100 + pad)) + "example.com"
    assert len(text) == MAX_AAR_CHARS
    assert aar_vouches(text, "example.com") is False
    assert aar_vouches(text[:-1] + "m", "example.com") is False
    # an earlier result is read; the quoted-string the cut left open is not
    vouched = ('x; dmarc=pass header.from=example.com; spf=fail smtp.mailfrom="' + "a" * MAX_AAR_CHARS)[
        :MAX_AAR_CHARS
    ]
    assert len(vouched) == MAX_AAR_CHARS and vouched.count('"') == 1
    assert aar_vouches(vouched, "example.com") is True
    assert aar_vouches("x; dmarc=pass header.from=example.com", "example.com") is True  # not cut


def test_the_override_is_not_granted_on_the_quoted_mailfrom_of_a_trusted_aar() -> None:
    cfg = dmarc_cfg(trusted_arc_sealers=["lists.example.org"])
    chain = Arc("pass", ["lists.example.org"], [OWN_AR_FOR_QUOTED_MAILFROM])
    d = run(failing_txn(arc=chain), cfg)
    assert (d.action, d.override) == (Action.REJECT, None)
    honest = Arc("pass", ["lists.example.org"], ['x; spf=pass smtp.mailfrom="a;b"@example.com'])
    assert run(failing_txn(arc=honest), cfg).override == "trusted_forwarder"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


_INSIDE = st.lists(
    st.one_of(
        st.text(max_size=12),
        st.sampled_from(
            [";", " ", "dmarc=pass", "dkim=pass", "spf=pass", "header.from=", "header.d=", "header.i=@",
             "smtp.mailfrom=", "victim.example", "@victim.example", '"', "\\", "(", ")",
             "; dmarc=pass header.from=victim.example"]
        ),
    ),
    max_size=10,
).map("".join)  # fmt: skip


@settings(max_examples=2000, deadline=None)
@given(
    _INSIDE,
    _INSIDE,
    st.sampled_from(["spf", "dkim", "dmarc"]),
    st.sampled_from(["", "; dmarc=fail header.from=victim.example", "; dkim=pass header.d=attacker.example"]),
)
def test_a_domain_named_only_inside_quotes_or_comments_is_never_vouched_for(
    inside: str, comment: str, method: str, tail: str
) -> None:
    """Property: whatever a quoted-string in smtp.mailfrom (or a reason, or a comment) holds,
    the AAR never vouches for a domain named only in there."""
    for aar in (
        f"sealer.example; spf=pass smtp.mailfrom={_quoted(inside)}@attacker.example{tail}",
        f"sealer.example; spf=pass smtp.mailfrom={_quoted(inside)}{tail}",
        f"sealer.example; {method}=pass reason={_quoted(inside)} header.d=attacker.example{tail}",
        f"sealer.example; {method}=pass {_comment(comment)} header.from=attacker.example{tail}",
        f"sealer.example {_comment(comment)}; {method}=pass smtp.mailfrom={_quoted(inside)}@a.example{tail}",
    ):
        assert aar_vouches(aar, "victim.example") is False, aar
