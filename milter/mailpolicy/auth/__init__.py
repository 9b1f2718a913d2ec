"""Message authentication: SPF (pyspf), DKIM (dkimpy), DMARC (RFC 9989, own code) and the one
RFC 8601 Authentication-Results header we add. The adapter collects the data and calls these
modules; the ``spf`` and ``dmarc`` checks read the results from ``txn.auth``.

Module names ``spf``/``dkim`` here never shadow the libraries: every import is absolute."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SpfResult:
    result: str  # RFC 8601 word: pass fail softfail neutral none temperror permerror
    scope: str  # "mailfrom" | "helo"
    domain: str | None
    identity: str  # the checked identity: the MAIL FROM address or the HELO name
    reason: str = ""

    def record(self) -> dict[str, Any]:
        return {"result": self.result, "scope": self.scope, "domain": self.domain}


@dataclass
class DkimResult:
    result: str  # pass fail neutral policy temperror permerror
    domain: str | None = None
    selector: str | None = None
    algorithm: str | None = None
    bits: int | None = None
    b: str | None = None  # first 8 characters of b= (RFC 6008 header.b)
    reason: str = ""
    aligned: bool = False

    def record(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "domain": self.domain,
            "selector": self.selector,
            "algorithm": self.algorithm,
            "bits": self.bits,
            "aligned": self.aligned,
            "reason": self.reason,
        }


@dataclass
class DmarcResult:
    result: str  # pass fail none temperror permerror
    domain: str | None = None  # the RFC5322.From domain evaluated
    policy_domain: str | None = None  # where the policy record was found
    policy: str | None = None  # p/sp/np actually applied: none quarantine reject
    disposition: str = "none"  # after pct / t=y: none quarantine reject
    spf_aligned: bool = False
    dkim_aligned: bool = False
    reason: str = ""
    # Why there is no single Author Domain (RFC 9989 5.3.1): no_from, too_many_from,
    # unparseable_from, no_domain, multiple_from, multiple_domains, too_many_domains; else None.
    author_problem: str | None = None

    def record(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "domain": self.domain,
            "policy_domain": self.policy_domain,
            "policy": self.policy,
            "disposition": self.disposition,
            "spf_aligned": self.spf_aligned,
            "dkim_aligned": self.dkim_aligned,
            "author_problem": self.author_problem,
            "reason": self.reason,
        }


@dataclass
class AuthResults:
    """Everything one transaction's authentication found."""

    spf: SpfResult | None = None
    dkim: list[DkimResult] = field(default_factory=list)
    dmarc: DmarcResult | None = None
    header_from_domain: str | None = None
    dns_errors: list[str] = field(default_factory=list)

    @property
    def authenticated(self) -> bool:
        if self.dmarc is not None and self.dmarc.result == "pass":
            return True
        return any(d.result == "pass" and d.aligned for d in self.dkim)

    def record(self) -> dict[str, Any]:
        """The authentication fields of the transaction event (shared-notes/event-schema.md)."""
        return {
            "header_from_domain": self.header_from_domain,
            "spf": self.spf.record() if self.spf else None,
            "dkim": [d.record() for d in self.dkim],
            "dmarc": self.dmarc.record() if self.dmarc else None,
            "authenticated": self.authenticated,
            "dns_errors": list(self.dns_errors),
        }
