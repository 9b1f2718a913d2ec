"""The authheaders (ValiMail) DMARC/DKIM cases (tests/corpora/dmarc-authheaders/cases.json) through
our DKIM verification, DMARC evaluation and header building, over the loopback test DNS server.

Compared: every ``dkim=RESULT header.d=D`` and ``dmarc=RESULT header.from=D`` pair of the expected
header (authheaders' comments such as "(Used From Domain Record)" are not compared). Cases with
``prev=`` give the DKIM results authheaders took as already computed: they are fed to our DMARC
evaluation as they are (the corpus README: those cases test DMARC given upstream results). The two
ARC cases (TestChainValidation) are out of scope: mailpolicy does not evaluate ARC.

DNS stub semantics: a TXT value "" at a ``_dmarc`` name is an empty answer (no record); "" or a
string at another name means the name exists (given an A record); null means it does not exist."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import pytest

from mailpolicy.auth import AuthResults, DkimResult, SpfResult, dkim, dmarc, header
from support.dnsserver import DnsServer

BASE = pathlib.Path(__file__).parents[2] / "corpora" / "dmarc-authheaders"
DATA = json.loads((BASE / "cases.json").read_text())
AUTH = DATA["classes"][0]
CASES: list[dict[str, Any]] = AUTH["cases"]
PREV_SPF = "Authentication-Results: example.com; spf=pass smtp.mailfrom=gmail.com"
_PAIR_RE = re.compile(r"(?:^|;\s*)(dkim|dmarc)=(\w+)(?: \([^)]*\))?(?: header\.(?:d|from)=([\w.-]+))?")


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
