"""Unit tests for mailpolicy.auth.dmarc: record parsing, tree walk, Organizational Domain,
alignment, policy selection (p/sp/np), pct and t=y, RFC5322.From handling, DNS failures."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailpolicy.auth import DkimResult, SpfResult, dmarc
from mailpolicy.auth.dmarc import (
    Evaluator,
    authors,
    evaluate,
    is_dmarc_record,
    parse_record,
    walk_targets,
)
from support.dnsserver import DnsServer


def spf_pass(domain: str) -> SpfResult:
    return SpfResult("pass", "mailfrom", domain, f"b@{domain}")


def test_parse_record_tags() -> None:
    r = parse_record("v=DMARC1; p=Reject; sp=quarantine; np=none; adkim=s; aspf=s; pct=50; t=y; psd=n")
    assert (r.p, r.sp, r.np, r.adkim, r.aspf, r.pct, r.t, r.psd) == (
        "reject",
        "quarantine",
        "none",
        "s",
        "s",
        50,
        True,
        "n",
    )
    d = parse_record("v=DMARC1; p=none")
    assert (d.sp, d.np, d.adkim, d.aspf, d.pct, d.t, d.psd) == (None, None, "r", "r", None, False, "u")


def test_parse_record_invalid_policy_tags_follow_rfc9989_4_10_1() -> None:
    # No valid p, or an sp/np present but invalid: p=none when rua has a valid URI ...
    assert parse_record("v=DMARC1; p=bogus; rua=mailto:a@example.org").p == "none"
    assert parse_record("v=DMARC1; sp=reject; rua=mailto:a@example.org").p == "none"
    r = parse_record("v=DMARC1; p=reject; sp=bogus; rua=mailto:d@example.org")
    assert (r.p, r.sp, r.np) == ("none", None, None)  # the whole record acts as p=none
    r = parse_record("v=DMARC1; p=reject; np=rejected; rua=bad uri, mailto:d@example.org")
    assert r.p == "none"
    # ... and no DMARC processing at all without one.
    for text in (
        "v=DMARC1; sp=reject",
        "v=DMARC1; p=bogus",
        "v=DMARC1; p=reject; sp=quarantin",
        "v=DMARC1; p=reject; np=x; rua=not-a-uri",
    ):
        rec = parse_record(text)
        assert rec.p is None and "4.10.1" in rec.note, text
    assert parse_record("v=DMARC1; p=reject; pct=x").pct is None


@pytest.mark.parametrize(
    "text",
    [
        "v=DMARC1; p=reject; junk",
        "v=DMARC1; p=reject; =x",
        "v=DMARC1; p=reject; unknown=1",
        "v=DMARC1;p=reject;;",
    ],
)
def test_parse_record_discards_syntax_errors_in_the_remainder(text: str) -> None:
    # RFC 9989 4.7: unknown tags ignored, syntax errors in the remainder discarded.
    assert parse_record(text).p == "reject"


def test_dmarc_record_recognition_is_exact() -> None:
    assert is_dmarc_record("v=DMARC1; p=none")
    assert is_dmarc_record("V = DMARC1 ;p=none")
    assert is_dmarc_record("v=DMARC1")
    assert not is_dmarc_record("v=dmarc1; p=none")  # the value is case-sensitive (RFC 9989 4.7)
    assert not is_dmarc_record("p=none; v=DMARC1")  # v must come first
    assert not is_dmarc_record("v=DMARC10; p=none")


def test_walk_targets() -> None:
    assert walk_targets("a.b.example.com") == ["a.b.example.com", "b.example.com", "example.com", "com"]
    assert walk_targets("a.b.c.d.e.f.example.com") == [
        "a.b.c.d.e.f.example.com",
        "e.f.example.com",
        "f.example.com",
        "example.com",
        "com",
    ]
    assert walk_targets("com") == ["com"]
    assert walk_targets("Example.COM.") == ["example.com", "com"]


def test_org_domain_by_tree_walk(dns: DnsServer) -> None:
    dns.add("_dmarc.example.com", "TXT", "v=DMARC1; p=none")
    dns.add("_dmarc.sub.example.com", "TXT", "v=DMARC1; p=reject")
    dns.add("_dmarc.org.example", "TXT", "v=DMARC1; p=none; psd=n")
    dns.add("_dmarc.a.org.example", "TXT", "v=DMARC1; p=none")
    dns.add("_dmarc.psd", "TXT", "v=DMARC1; p=reject; psd=y")
    ev = Evaluator()
    assert ev.org_domain("x.sub.example.com") == "example.com"  # fewest labels with a record
    assert ev.org_domain("x.a.org.example") == "org.example"  # psd=n stops
    assert ev.org_domain("a.b.c.psd") == "c.psd"  # one label below the psd=y domain
    assert ev.org_domain("nothing.example") == "nothing.example"  # no record: the domain itself


def test_alignment_strict_and_relaxed(dns: DnsServer) -> None:
    dns.add("_dmarc.example.com", "TXT", "v=DMARC1; p=none")
    ev = Evaluator()
    assert ev.aligned("Example.com.", "example.com", "s")
    assert not ev.aligned("mail.example.com", "example.com", "s")
    assert ev.aligned("mail.example.com", "example.com", "r")
    assert ev.aligned("a.example.com", "b.example.com", "r")
    assert not ev.aligned("example.net", "example.com", "r")
    assert not ev.aligned(None, "example.com", "r")


def test_pass_via_aligned_dkim_and_spf(dns: DnsServer) -> None:
    dns.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject")
    dkim = [DkimResult("pass", "mail.example.com"), DkimResult("pass", "other.example")]
    res, hf = evaluate(["A <a@example.com>"], spf_pass("bounce.example.com"), dkim)
    assert (res.result, res.policy, res.policy_domain, hf) == ("pass", "reject", "example.com", "example.com")
    assert res.spf_aligned and res.dkim_aligned and res.disposition == "none"
    assert [d.aligned for d in dkim] == [True, False]


def test_strict_alignment_fails(dns: DnsServer) -> None:
    dns.add("_dmarc.example.com", "TXT", "v=DMARC1; p=quarantine; adkim=s; aspf=s")
    res, _ = evaluate(
        ["a@example.com"], spf_pass("mail.example.com"), [DkimResult("pass", "mail.example.com")]
    )
    assert (res.result, res.disposition, res.spf_aligned, res.dkim_aligned) == (
        "fail",
        "quarantine",
        False,
        False,
    )


def test_unaligned_or_failed_auth_fails_with_policy(dns: DnsServer) -> None:
    dns.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject")
    res, _ = evaluate(
        ["a@example.com"],
        SpfResult("fail", "mailfrom", "example.com", "x"),
        [DkimResult("fail", "example.com")],
    )
    assert (res.result, res.policy, res.disposition) == ("fail", "reject", "reject")


def test_subdomain_policy_sp_and_np(dns: DnsServer) -> None:
    dns.add("_dmarc.example.com", "TXT", "v=DMARC1; p=none; sp=quarantine; np=reject")
    dns.add("exists.example.com", "A", "192.0.2.1")
    res, _ = evaluate(["a@exists.example.com"], None, [])
    assert (res.result, res.policy, res.policy_domain) == ("fail", "quarantine", "example.com")
    res, _ = evaluate(["a@ghost.example.com"], None, [])
    assert (res.result, res.policy) == ("fail", "reject")  # NXDOMAIN: np
    res, _ = evaluate(["a@example.com"], None, [])
    assert res.policy == "none"


def test_psd_record_applies_p_to_org_domain(dns: DnsServer) -> None:
    dns.add("_dmarc.gov", "TXT", "v=DMARC1; p=reject; sp=none; np=reject; psd=y")
    dns.add("example.gov", "A", "192.0.2.1")
    dns.add("www.example.gov", "A", "192.0.2.1")
    assert evaluate(["a@example.gov"], None, [])[0].policy == "reject"
    assert evaluate(["a@www.example.gov"], None, [])[0].policy == "none"  # sp


def test_pct_and_testing_flag_lower_the_disposition(dns: DnsServer) -> None:
    dns.add("_dmarc.pct.example", "TXT", "v=DMARC1; p=reject; pct=20")
    dns.add("_dmarc.t.example", "TXT", "v=DMARC1; p=quarantine; t=y")
    assert evaluate(["a@pct.example"], None, [], rng=lambda: 0.1)[0].disposition == "reject"  # sampled
    out = evaluate(["a@pct.example"], None, [], rng=lambda: 0.5)[0]
    assert (out.result, out.policy, out.disposition) == ("fail", "reject", "quarantine")
    out = evaluate(["a@t.example"], None, [])[0]
    assert (out.policy, out.disposition) == ("quarantine", "none")


def test_no_record_none_and_no_policy_none(dns: DnsServer) -> None:
    dns.add("_dmarc.nop.example", "TXT", "v=DMARC1; sp=reject")
    assert evaluate(["a@none.example"], None, [])[0].result == "none"
    assert evaluate(["a@nop.example"], None, [])[0].result == "none"


def test_multiple_records_are_discarded(dns: DnsServer) -> None:
    dns.add("_dmarc.two.example", "TXT", "v=DMARC1; p=reject")
    dns.add("_dmarc.two.example", "TXT", "v=DMARC1; p=none")
    dns.add("_dmarc.two.example", "TXT", "unrelated")
    assert evaluate(["a@two.example"], None, [])[0].result == "none"


def test_record_syntax_errors_do_not_void_the_policy(dns: DnsServer) -> None:
    dns.add("_dmarc.bad.example", "TXT", "v=DMARC1; p=reject; reject")
    res, hf = evaluate(["a@bad.example"], None, [])
    assert (res.result, res.policy, hf) == ("fail", "reject", "bad.example")


def test_invalid_sp_np_without_rua_means_no_dmarc_processing(dns: DnsServer) -> None:
    # Hole: an invalid sp= used to leave p=reject enforced. RFC 9989 4.10.1 says: no processing.
    dns.add("_dmarc.sp.example", "TXT", "v=DMARC1; p=reject; sp=bogus")
    dns.add("_dmarc.rua.example", "TXT", "v=DMARC1; p=reject; np=bogus; rua=mailto:d@rua.example")
    res, _ = evaluate(["a@sp.example"], None, [])
    assert (res.result, res.policy) == ("none", None) and "4.10.1" in res.reason
    res, _ = evaluate(["a@x.sp.example"], None, [])
    assert res.result == "none"
    res, _ = evaluate(["a@rua.example"], None, [])
    assert (res.result, res.policy, res.disposition) == ("fail", "none", "none")


def test_missing_or_unusable_from_is_permerror() -> None:
    res, hf = evaluate([], None, [])
    assert (res.result, res.author_problem, hf) == ("permerror", "no_from", None)
    res, hf = evaluate(['"Just a name"'], None, [])
    assert (res.result, res.author_problem, hf) == ("permerror", "unparseable_from", None)
    assert evaluate(["undisclosed-recipients:;"], None, [])[0].author_problem == "no_domain"
    assert evaluate(["a@[192.0.2.1]"], None, [])[0].author_problem == "no_domain"


@pytest.mark.parametrize(
    "value",
    [
        "ceo@victim.example, <garbage",  # getaddresses dropped the bad item and kept victim.example
        "ceo@victim.example,, (unterminated",
        'ceo@victim.example, "unterminated',
        "Doe, John <ceo@victim.example>",
        "ceo@victim.example <x@y>",
        "ceo@@victim.example",
        "ceo@victim..example",
        "ceo@victim.example\x00",
        "<ceo@victim.example",
    ],
)
def test_unparseable_from_is_permerror_not_none(dns: DnsServer, value: str) -> None:
    dns.add("_dmarc.victim.example", "TXT", "v=DMARC1; p=reject")
    res, hf = evaluate([value], None, [])
    assert (res.result, res.author_problem, hf) == ("permerror", "unparseable_from", None), res.reason


def test_multiple_from_domains_strictest_wins(dns: DnsServer) -> None:
    dns.add("_dmarc.ok.example", "TXT", "v=DMARC1; p=none")
    dns.add("_dmarc.bank.example", "TXT", "v=DMARC1; p=reject")
    dkim = [DkimResult("pass", "ok.example")]
    res, hf = evaluate(["a@ok.example, b@bank.example"], None, dkim)
    assert (res.result, res.domain, res.disposition, hf) == ("fail", "bank.example", "reject", None)
    # Two From fields: the same rule (an extra From cannot dodge a p=reject).
    res, hf = evaluate(["a@ok.example", "b@bank.example"], None, dkim)
    assert (res.result, res.domain, hf) == ("fail", "bank.example", None)
    # Several mailboxes in one domain: that domain.
    assert evaluate(["a@ok.example, b@OK.example"], None, dkim)[1] == "ok.example"
    assert authors(['"Test, User" <t@example.com>']).domains == ("example.com",)
    # Several domains, none failing: permerror (RFC 9989 5.3.1), not a pass.
    res, hf = evaluate(["a@ok.example, b@ok2.example"], None, [DkimResult("pass", "ok.example")])
    assert (res.result, res.author_problem, hf) == ("permerror", "multiple_domains", None)
    res, _ = evaluate(["a@ok.example", "a@ok.example"], None, dkim)
    assert (res.result, res.author_problem) == ("permerror", "multiple_from")
    many = ", ".join(f"a@d{i}.example" for i in range(6))
    assert evaluate([many], None, [])[0].author_problem == "too_many_domains"
    assert evaluate(["a@ok.example"] * 3, None, [], from_fields=11)[0].author_problem == "too_many_from"


def test_dns_failure_in_policy_discovery_is_temperror(dns: DnsServer) -> None:
    dns.timeout("_dmarc.slow.example")
    res, _ = evaluate(["a@slow.example"], None, [DkimResult("pass", "other.example")])
    assert res.result == "temperror" and res.disposition == "none"


def test_fail_with_aligned_dkim_temperror_is_temperror(dns: DnsServer) -> None:
    dns.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject")
    res, _ = evaluate(["a@example.com"], None, [DkimResult("temperror", "example.com")])
    assert (res.result, res.disposition) == ("temperror", "none")
    res, _ = evaluate(["a@example.com"], SpfResult("temperror", "mailfrom", "example.com", "x"), [])
    assert res.result == "temperror"
    # An unaligned temperror does not save a failing message.
    res, _ = evaluate(["a@example.com"], None, [DkimResult("temperror", "other.example")])
    assert res.result == "fail"


def test_alignment_dns_failure_only_matters_when_it_could_hide_a_pass(dns: DnsServer) -> None:
    dns.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject")
    dns.timeout("_dmarc.mail.example.com")  # the relaxed-alignment walk for this d= fails
    relaxed_only = [DkimResult("pass", "mail.example.com")]
    res, _ = evaluate(["a@example.com"], None, relaxed_only)
    assert (res.result, res.disposition) == ("temperror", "none")
    exact_too = [DkimResult("pass", "mail.example.com"), DkimResult("pass", "example.com")]
    res, _ = evaluate(["a@example.com"], None, exact_too)
    assert res.result == "pass" and [d.aligned for d in exact_too] == [False, True]
    failed = [DkimResult("fail", "mail.example.com")]  # a failed signature could not have passed
    assert evaluate(["a@example.com"], None, failed)[0].result == "fail"


def test_policy_selection_dns_failure_is_temperror_unless_pass(dns: DnsServer) -> None:
    dns.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject; sp=none")
    dns.timeout("_dmarc.com")  # the Organizational Domain walk (is sub.example.com a subdomain?) fails
    res, _ = evaluate(["a@sub.example.com"], None, [])
    assert res.result == "temperror" and res.policy is None
    res, _ = evaluate(["a@sub.example.com"], None, [DkimResult("pass", "sub.example.com")])
    assert res.result == "pass"


def test_existence_check_failure_applies_the_stricter_policy(dns: DnsServer) -> None:
    dns.add("_dmarc.example.com", "TXT", "v=DMARC1; p=none; sp=quarantine; np=reject")
    dns.timeout("sub.example.com", "A")
    res, _ = evaluate(["a@sub.example.com"], None, [])
    assert (res.result, res.policy) == ("fail", "reject")  # DNS trouble never softens: np


def test_dns_trouble_on_an_unaligned_identifier_cannot_soften_a_fail(dns: DnsServer) -> None:
    # Hole: relaxed alignment used to walk the identifier's own tree first; a timeout at
    # _dmarc.attacker.example made a spoofed p=reject From temperror (delivered in enforce mode).
    dns.add("_dmarc.victim.example", "TXT", "v=DMARC1; p=reject")
    dns.timeout("_dmarc.attacker.example")
    dns.timeout("_dmarc.mail.attacker.example")
    spf = spf_pass("attacker.example")
    res, _ = evaluate(["ceo@victim.example"], spf, [DkimResult("pass", "mail.attacker.example")])
    assert (res.result, res.disposition, res.spf_aligned, res.dkim_aligned) == (
        "fail",
        "reject",
        False,
        False,
    )
    # The same with NXDOMAIN there (what the fix makes it equal to).
    dns.clear()
    dns.add("_dmarc.victim.example", "TXT", "v=DMARC1; p=reject")
    assert evaluate(["ceo@victim.example"], spf, [])[0].result == "fail"


def test_alignment_walks_only_names_under_the_author_org_domain(dns: DnsServer) -> None:
    dns.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject")
    dns.timeout("_dmarc.example.net")
    dns.timeout("_dmarc.net")
    ev = Evaluator()
    assert not ev.aligned("example.net", "example.com", "r")  # no lookup at all for example.net
    assert not ev.aligned("badexample.com", "example.com", "r")  # a suffix is not a parent


# ---- one attacker record cannot raise, nor hide another author domain's fail --------------------

_UNICODE_DIGITS = ["\u00b2", "\u0665\u0660", "\uff15\uff10", "1\u00b2", "\U0001d7d3", "\u0e51\u0e50\u0e50"]


@pytest.mark.parametrize("value", _UNICODE_DIGITS)
def test_pct_is_read_in_ascii_digits_only(value: str) -> None:
    # str.isdigit() is True for "²", Arabic-Indic and fullwidth digits, which int() refuses (or
    # reads as a number no DMARC record means): an invalid pct, like pct=x (no pct tag).
    assert value.isdigit()
    rec = parse_record(f"v=DMARC1; p=reject; pct={value}")
    assert (rec.p, rec.pct) == ("reject", None)
    assert rec == parse_record("v=DMARC1; p=reject; pct=x")


def test_pct_with_any_number_of_ascii_digits_is_capped_not_an_error() -> None:
    # int() refuses strings of more than 4300 digits (CVE-2020-10735): pct stays 0..100.
    assert parse_record("v=DMARC1; p=reject; pct=" + "1" * 5000).pct == 100
    assert parse_record("v=DMARC1; p=reject; pct=" + "0" * 5000 + "7").pct == 7
    assert parse_record("v=DMARC1; p=reject; pct=0050").pct == 50
    assert parse_record("v=DMARC1; p=reject; pct=500").pct == 100


@pytest.mark.parametrize("pct", ["\u00b2", "1" * 5000])
def test_a_record_of_the_attackers_own_cannot_hide_the_victims_fail(dns: DnsServer, pct: str) -> None:
    """A1: pct=² on the attacker's own _dmarc made int() raise inside the DMARC method; with the
    victim's domain in the same From, the victim's fail became temperror ("internal error") and an
    enforced dmarc policy delivered the spoof."""
    dns.add("_dmarc.victim.example", "TXT", "v=DMARC1; p=reject")
    dns.add("_dmarc.attacker.example", "TXT", f"v=DMARC1; p=none; pct={pct}")
    spf = spf_pass("attacker.example")
    for values in (
        ["CEO <ceo@victim.example>, x <x@attacker.example>"],
        ["x <x@attacker.example>, CEO <ceo@victim.example>"],
        ["x@attacker.example", "ceo@victim.example"],  # two From fields
    ):
        res, hf = evaluate(values, spf, [DkimResult("pass", "attacker.example")])
        assert (res.result, res.domain, res.disposition, hf) == ("fail", "victim.example", "reject", None)
    # The attacker's domain alone: its record is read, pct ignored or capped, no error.
    res, hf = evaluate(["x@attacker.example"], spf, [])
    assert (res.result, hf) == ("pass", "attacker.example")


def test_an_error_evaluating_one_author_domain_is_temperror_for_it_only(
    dns: DnsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever raises while one author domain is evaluated (a bug yet unknown, on a record or name
    the sender controls) is temperror for that domain; another domain's fail still wins."""
    dns.add("_dmarc.victim.example", "TXT", "v=DMARC1; p=reject")
    dns.add("_dmarc.attacker.example", "TXT", "v=DMARC1; p=none")
    real = dmarc.Evaluator.discover

    def discover(self: dmarc.Evaluator, domain: str) -> tuple[str, dmarc.Record] | None:
        if domain == "attacker.example":
            raise ValueError("a bug")
        return real(self, domain)

    monkeypatch.setattr(dmarc.Evaluator, "discover", discover)
    dkim = [DkimResult("pass", "attacker.example")]
    for values in (["ceo@victim.example, x@attacker.example"], ["x@attacker.example, ceo@victim.example"]):
        res, _ = evaluate(values, spf_pass("attacker.example"), dkim)
        assert (res.result, res.domain, res.disposition) == ("fail", "victim.example", "reject")
        assert res.author_problem == "multiple_domains"
    # Alone, or next to a domain that does not fail: temperror, never a pass.
    res, hf = evaluate(["x@attacker.example"], None, dkim)
    assert (res.result, res.domain, hf) == ("temperror", "attacker.example", "attacker.example")
    assert res.reason == "internal error: ValueError" and dkim[0].aligned is False
    dns.add("_dmarc.ok.example", "TXT", "v=DMARC1; p=reject")
    res, _ = evaluate(["x@attacker.example, a@ok.example"], None, [DkimResult("pass", "ok.example")])
    assert (res.result, res.domain) == ("temperror", "attacker.example")


_DIGIT_TEXT = st.text(
    alphabet=st.one_of(st.characters(categories=("Nd", "No")), st.sampled_from("0123456789")),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_DIGIT_TEXT, tag=st.sampled_from(["pct", "ri", "p", "sp", "np", "t", "psd", "adkim"]))
def test_property_digits_in_any_tag_never_raise_nor_change_another_domains_fail(
    dns: DnsServer, value: str, tag: str
) -> None:
    text = f"v=DMARC1; p=none; {tag}={value}"
    rec = parse_record(text)
    assert rec.pct is None or (0 <= rec.pct <= 100 and tag == "pct" and value.isascii())
    dns.clear()
    dns.add("_dmarc.victim.example", "TXT", "v=DMARC1; p=reject")
    dns.add("_dmarc.attacker.example", "TXT", text)
    res, _ = evaluate(["ceo@victim.example, x@attacker.example"], spf_pass("attacker.example"), [])
    assert (res.result, res.domain, res.disposition) == ("fail", "victim.example", "reject")
