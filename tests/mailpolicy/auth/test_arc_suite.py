"""The ValiMail ARC test suite (tests/corpora/arc-test-suite/validation-cases.json, 171 validation
cases) through ``mailpolicy.auth.arc.verify``, each case's ``txt_records`` served by the loopback
test DNS server.

Every case must give its ``expected_arc_result``. dkimpy's ``arc_verify`` (the reference for the
semantics) is run on each case too, its keys given from the same records, and must agree with us
everywhere but on the three "empty cv" cases: there the newest (or the first) seal says cv=fail,
which RFC 8617 5.2 steps 2 and 3 make a failed chain, where dkimpy reports a terminated chain
(``None``, i.e. none)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import dkim as dkimpy
import pytest

from mailpolicy.auth import arc, dkim
from support.dnsserver import DnsServer

BASE = pathlib.Path(__file__).parents[2] / "corpora" / "arc-test-suite"
CASES: list[dict[str, Any]] = json.loads((BASE / "validation-cases.json").read_text())["cases"]
EMPTY_CV = {"cv_fail_i1_as_cv_fail", "cv_fail_i2_as2_fail", "cv_fail_i2_as1_fail"}


def message(case: dict[str, Any]) -> bytes:
    text: str = case["message"]
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def dkimpy_result(case: dict[str, Any]) -> str:
    records: dict[str, str] = case["txt_records"]

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode() if isinstance(name, bytes) else name
        value = records.get(text) or records.get(text.rstrip(".") + ".")
        return value.encode() if value is not None else None

    cv, _results, _reason = dkimpy.arc_verify(message(case), dnsfunc=dnsfunc)
    return cv.decode() if cv else "none"


@pytest.mark.parametrize("case", CASES, ids=[f"{c['scenario']}/{c['id']}" for c in CASES])
def test_arc_suite_case(dns: DnsServer, case: dict[str, Any]) -> None:
    for name, value in case["txt_records"].items():
        dns.add(name, "TXT", value)
    dkim.clear_key_cache()
    res = arc.verify(message(case), dkim.Limits(timeout=0.3))
    assert res.result == case["expected_arc_result"], res.reason
    assert len(res.reason) <= arc.MAX_REASON_CHARS and res.reason.isprintable()
    if res.result == "pass":
        assert res.oldest_pass is not None and not res.reason
        assert len(res.sealers) == res.instances == len(res.aar)
    else:
        assert res.oldest_pass is None and not res.aar
        assert res.reason or res.result == "none"
    oracle = dkimpy_result(case)
    if case["id"] in EMPTY_CV:
        assert (oracle, res.result) == ("none", "fail")
    else:
        assert oracle == res.result


def test_arc_suite_counts() -> None:
    assert len(CASES) == 171
    expected = [c["expected_arc_result"] for c in CASES]
    assert (expected.count("pass"), expected.count("fail"), expected.count("none")) == (54, 112, 5)
    assert {c["id"] for c in CASES} >= EMPTY_CV


def test_arc_suite_ams1_invalid_gives_oldest_pass(dns: DnsServer) -> None:
    """cv_pass_i2_1_ams1_invalid: the From field was changed after the first hop, so AMS(1) no
    longer verifies while the chain passes: header.oldest-pass=2."""
    [case] = [c for c in CASES if c["id"] == "cv_pass_i2_1_ams1_invalid"]
    for name, value in case["txt_records"].items():
        dns.add(name, "TXT", value)
    res = arc.verify(message(case), dkim.Limits(timeout=0.3))
    assert (res.result, res.instances, res.oldest_pass) == ("pass", 2, 2)
    assert res.sealers == ["example.org", "example.org"]
    [ok] = [c for c in CASES if c["id"] == "cv_pass_i2_1"]
    assert arc.verify(message(ok), dkim.Limits(timeout=0.3)).oldest_pass == 0
