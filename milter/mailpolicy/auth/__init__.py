"""Message authentication: SPF (pyspf), DKIM (dkimpy), DMARC (RFC 9989, own code) and the one
RFC 8601 Authentication-Results header we add. The adapter collects the data and calls these
modules; the ``spf`` and ``dmarc`` checks read the results from ``txn.auth``. Each method module
declares itself with a ``METHOD`` (:mod:`mailpolicy.auth.base`), listed in
:mod:`mailpolicy.auth.methods`.

Module names ``spf``/``dkim`` here never shadow the libraries: every import is absolute."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailpolicy.auth.base import MethodSpec

_methods_module: ModuleType | None = None


def registry() -> dict[str, MethodSpec]:
    """``mailpolicy.auth.methods.METHODS``, read from the module at each call. That module imports
    every method module, which import this one, so it is imported on first use; the module is then
    kept, as a function-level ``from ... import`` costs a trip through the import system (with an
    AttributeError raised and caught inside it) on every call."""
    global _methods_module
    if _methods_module is None:
        from mailpolicy.auth import methods

        _methods_module = methods
    methods_now: dict[str, MethodSpec] = _methods_module.METHODS
    return methods_now


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


class AuthResults:
    """Everything one transaction's authentication found: one result per method that ran, by
    method name (``results``), and the per-transaction state of the methods that read the message
    (``feeds``). ``spf``, ``dkim`` and ``dmarc`` name the built-in methods' results."""

    def __init__(
        self,
        spf: SpfResult | None = None,
        dkim: list[DkimResult] | None = None,
        dmarc: DmarcResult | None = None,
        header_from_domain: str | None = None,
        dns_errors: list[str] | None = None,
    ) -> None:
        self.results: dict[str, Any] = {}
        self.feeds: dict[str, Any] = {}
        self.unavailable: set[str] = set()  # methods that could not run (their result says why)
        self.header_from_domain = header_from_domain
        self.dns_errors: list[str] = dns_errors if dns_errors is not None else []
        for name, value in (("spf", spf), ("dkim", dkim), ("dmarc", dmarc)):
            if value is not None:
                self.results[name] = value

    @property
    def spf(self) -> SpfResult | None:
        res: SpfResult | None = self.results.get("spf")
        return res

    @spf.setter
    def spf(self, value: SpfResult | None) -> None:
        self._set("spf", value)

    @property
    def dkim(self) -> list[DkimResult]:
        res: list[DkimResult] = self.results.get("dkim", [])
        return res

    @dkim.setter
    def dkim(self, value: list[DkimResult]) -> None:
        self._set("dkim", value)

    @property
    def dmarc(self) -> DmarcResult | None:
        res: DmarcResult | None = self.results.get("dmarc")
        return res

    @dmarc.setter
    def dmarc(self, value: DmarcResult | None) -> None:
        self._set("dmarc", value)

    def _set(self, name: str, value: Any) -> None:
        if value is None:
            self.results.pop(name, None)
        else:
            self.results[name] = value

    @property
    def authenticated(self) -> bool:
        if self.dmarc is not None and self.dmarc.result == "pass":
            return True
        return any(d.result == "pass" and d.aligned for d in self.dkim)

    def record(self) -> dict[str, Any]:
        """The authentication fields of the transaction event: one per registered method (its
        ``empty`` value when it did not run)."""
        rec: dict[str, Any] = {"header_from_domain": self.header_from_domain}
        for name, spec in registry().items():
            rec[name] = spec.record(self.results[name]) if name in self.results else spec.empty
        rec["authenticated"] = self.authenticated
        rec["dns_errors"] = list(self.dns_errors)
        return rec
