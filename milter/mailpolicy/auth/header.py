"""The one Authentication-Results header (RFC 8601) we add, built with ``authres``, and the
detection of incoming A-R headers that claim our authserv-id (removed before ours is added)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import authres
import authres.dkim_b
import authres.dmarc

from mailpolicy.auth import AuthResults

NAME = "Authentication-Results"
_COMMENT_RE = re.compile(r"^\s*\((?:[^()\\]|\\.)*\)\s*")


def _value_safe(text: str) -> str:
    """A property value usable unquoted (RFC 8601 pvalue: an addr-spec's dot-atom characters):
    printable ASCII without blanks, ``;``, ``(``, ``)``, ``"``, ``\\`` (anything else is dropped)."""
    return re.sub(r"[^!#-\'*-:<-\[\]-~]", "", text)[:254]


def _reason_safe(text: str) -> str:
    """A reason for ``reason="..."``: printable ASCII without quotes, backslashes or ``;``."""
    return re.sub(r"[^ !#-:<-\[\]-~]", "", text)[:100]


def fold(value: str, width: int = 200) -> str:
    """Fold a long header value after each ``;`` that separates results (LF + TAB: the MTA writes
    the line ends). Property values and reasons never contain ``;``."""
    return value if len(value) <= width else value.replace("; ", ";\n\t")


def build(authserv_id: str, res: AuthResults) -> str:
    """The header *value* (without the field name)."""
    results: list[authres.core.AuthenticationResult] = []
    if res.spf is not None:
        spf = res.spf
        if spf.scope == "mailfrom":
            results.append(
                authres.SPFAuthenticationResult(result=spf.result, smtp_mailfrom=_value_safe(spf.identity))
            )
        else:
            results.append(
                authres.SPFAuthenticationResult(result=spf.result, smtp_helo=_value_safe(spf.identity))
            )
    for d in res.dkim:
        r = authres.dkim_b.DKIMAuthenticationResult(
            result=d.result,
            result_comment=f"{d.bits}-bit key" if d.bits and d.result in ("pass", "fail", "policy") else None,
            reason=_reason_safe(d.reason) if d.reason and d.result != "pass" else None,
            header_d=_value_safe(d.domain) if d.domain else None,
            header_b=_value_safe(d.b) if d.b else None,
        )
        if d.selector:
            r.header_s = _value_safe(d.selector)
        if d.algorithm:
            r.header_a = _value_safe(d.algorithm)
        results.append(r)
    if res.dmarc is not None:
        dm = res.dmarc
        r2 = authres.dmarc.DMARCAuthenticationResult(
            result=dm.result,
            header_from=_value_safe(dm.domain) if dm.domain else None,
            policy=dm.policy if dm.policy and dm.result != "none" else None,
        )
        results.append(r2)
    hdr = authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results)
    return str(hdr.header_value())


def authserv_id_of(value: str) -> str | None:
    """The authserv-id an A-R header value claims (comments and folding skipped), lower case."""
    text = value.replace("\r", " ").replace("\n", " ")
    while True:
        m = _COMMENT_RE.match(text)
        if not m:
            break
        text = text[m.end() :]
    m2 = re.match(r'\s*("(?:[^"\\]|\\.)*"|[^\s;()]+)', text)
    if not m2:
        return None
    token = m2.group(1).strip('"')
    return token.lower().rstrip(".") or None


def forged_indexes(headers: Sequence[tuple[str, str]], authserv_id: str) -> list[int]:
    """1-based indexes (among A-R fields, for ``chgheader``) of the fields claiming ``authserv_id``."""
    ours = authserv_id.lower().rstrip(".")
    out: list[int] = []
    n = 0
    for name, value in headers:
        if name.strip().lower() != NAME.lower():
            continue
        n += 1
        if authserv_id_of(value) == ours:
            out.append(n)
    return out
