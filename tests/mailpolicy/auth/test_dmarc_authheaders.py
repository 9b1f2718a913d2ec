"""The authheaders (ValiMail) cases (tests/corpora/dmarc-authheaders/cases.json) through our DKIM
verification, DMARC evaluation, ARC validation and header building, over the loopback test DNS
server.

TestAuthenticateMessage (13 cases): compared are every ``dkim=RESULT header.d=D`` and
``dmarc=RESULT header.from=D`` pair of the expected header (authheaders' comments such as "(Used
From Domain Record)" are not compared). Cases with ``prev=`` give the DKIM results authheaders took
as already computed: they are fed to our DMARC evaluation as they are (the corpus README: those
cases test DMARC given upstream results).

TestChainValidation (2 ARC cases, inline messages, DNS ``dnsfuncb``): the message goes through
``mailpolicy.auth.arc.verify`` (as given, LF line ends, and as CRLF, as it reaches a milter: same
result), the SPF pass of ``prev`` is taken as given, and the ``spf=`` and ``arc=`` results of our
header are compared with the expected header. authheaders words its failure "(Most recent
ARC-Message-Signature did not validate)"; ours is a ``reason=`` naming that signature (i=1, the
newest) and why (the body was changed: body hash mismatch).

DNS stub semantics: a TXT value "" at a ``_dmarc`` name is an empty answer (no record); "" or a
string at another name means the name exists (given an A record); null means it does not exist.
The ARC cases' names are TXT records as given."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import pytest

from mailpolicy.auth import AuthResults, DkimResult, SpfResult, arc, dkim, dmarc, header
from support.authres_strict import parse_strict
from support.dnsserver import DnsServer

BASE = pathlib.Path(__file__).parents[2] / "corpora" / "dmarc-authheaders"
DATA = json.loads((BASE / "cases.json").read_text())
AUTH = DATA["classes"][0]
CASES: list[dict[str, Any]] = AUTH["cases"]
CHAIN = DATA["classes"][1]
ARC_CASES: list[dict[str, Any]] = CHAIN["cases"]
PREV_SPF = "Authentication-Results: example.com; spf=pass smtp.mailfrom=gmail.com"
_PAIR_RE = re.compile(r"(?:^|;\s*)(dkim|dmarc)=(\w+)(?: \([^)]*\))?(?: header\.(?:d|from)=([\w.-]+))?")
_RESULT_RE = re.compile(r"(?:^|;\s*)([a-z]+)=(\w+)")


def load_dns(srv: DnsServer) -> None:
    for name, value in AUTH["dns"]["dnsfunc"].items():
        if value is None:
            continue
        if name.startswith("_dmarc.") or "._domainkey." in name:
            if value:
                srv.add(name, "TXT", value.strip())
        else:
            srv.add(name, "A", "192.0.2.1")


def pairs(text: str) -> list[tuple[str, str, str | None]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in _PAIR_RE.finditer(text)]


def run_case(case: dict[str, Any]) -> str:
    message = (BASE / case["message"]).read_bytes()
    prev = PREV_SPF if case.get("prev") == "prev" else case.get("prev", "")
    res = AuthResults()
    if case.get("dkim", True):
        res.dkim = dkim.verify(message, 5, 1024, 0.3)
    else:
        res.dkim = [DkimResult(r, domain=d) for m, r, d in pairs(prev) if m == "dkim"]
    if "spf=pass smtp.mailfrom=gmail.com" in prev:
        res.spf = SpfResult("pass", "mailfrom", "gmail.com", "x@gmail.com")
    if case.get("dmarc", True):
        head = message.split(b"\n\n", 1)[0].decode()
        froms = [m.group(1) for m in re.finditer(r"^From:(.*(?:\n[ \t].*)*)", head, re.M | re.I)]
        res.dmarc, res.header_from_domain = dmarc.evaluate(froms, res.spf, res.dkim)
    return header.build(case["authserv_id"], res)


# Where RFC 9989 says otherwise than authheaders (which predates it): our result, and why.
DEVIATIONS = {
    "test_authenticate_dmarc_bad": (
        [("dmarc", "fail", "bad.example.com")],
        'RFC 9989 4.7: in "v=DMARC1; p=none; reject" the tag without "=" is a syntax error in the '
        "remainder of the record, which MUST be discarded: p=none applies and the unauthenticated "
        "message fails (authheaders: permerror)",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=[c["test"] for c in CASES])
def test_authheaders_case(dns: DnsServer, case: dict[str, Any]) -> None:
    load_dns(dns)
    got = run_case(case)
    if case["test"] in DEVIATIONS:
        assert pairs(got) == DEVIATIONS[case["test"]][0], got
        return
    expected = pairs(case["expected_header"])
    # authheaders writes header.from=none when there is no From domain (we leave header.from out),
    # and no header.from at all with dmarc=none (we keep it): compare the domain only when both have one.
    expected = [(m, r, None if d == "none" else d) for m, r, d in expected]
    ours = [(m, r, d if any(e[2] for e in expected if e[0] == m) else None) for m, r, d in pairs(got)]
    assert ours == expected, got


def test_authheaders_case_count() -> None:
    assert len(CASES) == 13
    assert len(DEVIATIONS) == 1  # 12 of 13 agree


def results(text: str) -> list[tuple[str, str]]:
    """Every ``method=result`` of an Authentication-Results value, in order."""
    return [
        (m.group(1), m.group(2)) for m in _RESULT_RE.finditer(text.removeprefix("Authentication-Results:"))
    ]


def run_arc_case(case: dict[str, Any], message: bytes) -> tuple[str, arc.ArcResult]:
    assert case["prev"] == "prev" and case["arc"] and not (case["dkim"] or case["spf"] or case["dmarc"])
    res = AuthResults(spf=SpfResult("pass", "mailfrom", "gmail.com", "x@gmail.com"))  # PREV_SPF
    dkim.clear_key_cache()
    res.results["arc"] = verdict = arc.verify(message, dkim.Limits(timeout=0.3))
    return header.build(case["authserv_id"], res), verdict


@pytest.mark.parametrize("case", ARC_CASES, ids=[c["test"] for c in ARC_CASES])
def test_authheaders_arc_case(dns: DnsServer, case: dict[str, Any]) -> None:
    for name, value in CHAIN["dns"][case["dns"]].items():
        dns.add(name, "TXT", value)
    text: str = case["message_inline"]
    got, verdict = run_arc_case(case, text.encode())
    assert results(got) == results(case["expected_header"]), got
    assert [r.method for r in parse_strict(got).results] == ["spf", "arc"]
    crlf, verdict_crlf = run_arc_case(case, text.replace("\n", "\r\n").encode())
    assert (crlf, verdict_crlf) == (got, verdict)
    assert verdict.instances == 1 and verdict.sealers == ["example.org"]
    if verdict.result == "fail":  # authheaders: "Most recent ARC-Message-Signature did not validate"
        assert verdict.reason == "ARC-Message-Signature i=1: body hash mismatch"


def test_authheaders_arc_case_count() -> None:
    assert [c["test"] for c in ARC_CASES] == ["test_arc_pass", "test_chain_validation_fail"]
    assert [results(c["expected_header"])[-1] for c in ARC_CASES] == [("arc", "pass"), ("arc", "fail")]
