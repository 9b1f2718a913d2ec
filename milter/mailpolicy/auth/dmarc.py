"""DMARC (RFC 9989) evaluation: policy discovery and Organizational Domain by the DNS Tree Walk
(no public suffix list), strict/relaxed identifier alignment, tags p, sp, np, psd, t, adkim, aspf.

Choices (documented in docs/auth-readme-fragment.md):
- Tree walk: query the author domain; then, with x labels left, drop one label if x < 5, else
  drop down to 4 labels; stop after the one-label name. At most 5 queries per walk.
- Records: a TXT record starting ``v=DMARC1`` (case-insensitive) is a DMARC record; several at one
  name are all discarded (as if none). A tag without ``=`` is a syntax error: permerror. An invalid
  p/sp/np value is ignored; with no usable p, the record means p=none when it has rua=, otherwise
  it carries no policy and the result is ``none``.
- Policy applied: the record at the author domain gives p. A record found higher up gives p when the
  author domain is the Organizational Domain, else sp (default p); np (if present) replaces either
  when the author domain does not exist (A query answers NXDOMAIN).
- ``pct`` (RFC 7489, no longer in RFC 9989) is still honoured when a record carries it: a message
  outside the sample has its disposition lowered one step (reject->quarantine->none). ``t=y`` lowers
  it one step the same way.
- RFC5322.From: no From field or no domain in it: permerror, header_from_domain null. Several
  From fields or several mailboxes with different domains: every distinct domain (up to 5) is
  evaluated and the most severe outcome wins (fail > temperror > permerror > none > pass), so an
  extra From cannot dodge a p=reject; header_from_domain is null when the domains differ.
- A fail becomes temperror when DNS trouble could hide an aligned pass (aligned SPF/DKIM temperror,
  or a passing identifier whose relaxed alignment could not be decided), or when p/sp/np could not be
  chosen; an aligned pass always wins. A failed existence check (np) counts as "exists". So DNS
  trouble never causes a reject; temperror tempfails only when configured."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import getaddresses

from mailpolicy import dns
from mailpolicy.auth import DkimResult, DmarcResult, SpfResult

_V_RE = re.compile(r"^\s*v\s*=\s*DMARC1\s*(;|$)", re.I)
_TAG_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)\s*=(.*)$", re.S)
_POLICIES = ("none", "quarantine", "reject")
_SEVERITY = {"pass": 0, "none": 1, "permerror": 2, "temperror": 3, "fail": 4}
_DOWNGRADE = {"reject": "quarantine", "quarantine": "none", "none": "none"}
MAX_FROM_DOMAINS = 5


class DmarcTempError(Exception):
    """A DNS failure during policy discovery or Organizational Domain determination."""


class DmarcSyntaxError(Exception):
    pass


@dataclass(frozen=True)
class Record:
    p: str | None  # None: the record carries no policy
    sp: str | None = None
    np: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int | None = None  # None: no pct tag
    t: bool = False
    psd: str = "u"  # y | n | u


def parse_record(text: str) -> Record:
    """Parse a DMARC record (caller checked it starts with v=DMARC1). Raises DmarcSyntaxError."""
    tags: dict[str, str] = {}
    for i, part in enumerate(text.split(";")):
        part = part.strip()
        if not part:
            continue
        m = _TAG_RE.match(part)
        if not m:
            raise DmarcSyntaxError(f"tag without '=': {part[:40]!r}")
        key, value = m.group(1).lower(), m.group(2).strip()
        if i == 0 and (key != "v" or value.upper() != "DMARC1"):
            raise DmarcSyntaxError("record does not start with v=DMARC1")
        tags.setdefault(key, value)

    def pol(key: str) -> str | None:
        v = tags.get(key, "").lower()
        return v if v in _POLICIES else None

    p = pol("p")
    if p is None and tags.get("rua"):
        p = "none"
    pct: int | None = None
    if "pct" in tags:
        try:
            pct = min(100, max(0, int(tags["pct"])))
        except ValueError:
            pct = None
    psd = tags.get("psd", "u").lower()
    return Record(
        p=p,
        sp=pol("sp"),
        np=pol("np"),
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
        pct=pct,
        t=tags.get("t", "n").lower() == "y",
        psd=psd if psd in ("y", "n", "u") else "u",
    )


def walk_targets(domain: str) -> list[str]:
    """The names the DNS Tree Walk queries (under ``_dmarc.``), author domain first."""
    labels = [x for x in domain.rstrip(".").lower().split(".") if x]
    out = [".".join(labels)] if labels else []
    x = len(labels)
    while x > 1:
        x = x - 1 if x < 5 else 4
        out.append(".".join(labels[-x:]))
    return out


class Evaluator:
    """One message's DMARC evaluation; caches record lookups per name."""

    def __init__(self, rng: Callable[[], float] = random.random):
        self._records: dict[str, Record | Exception | None] = {}
        self.rng = rng

    def lookup(self, domain: str) -> Record | None:
        """The DMARC record at ``_dmarc.<domain>`` or None. Raises DmarcTempError/DmarcSyntaxError."""
        if domain not in self._records:
            self._records[domain] = self._fetch(domain)
        got = self._records[domain]
        if isinstance(got, Exception):
            raise got
        return got

    def _fetch(self, domain: str) -> Record | Exception | None:
        ans = dns.get().query(f"_dmarc.{domain}", "TXT")
        if ans.failed:
            return DmarcTempError(f"TXT _dmarc.{domain}: {ans.outcome}")
        texts = [t.decode("utf-8", "replace") for t in ans.txt()]
        found = [t for t in texts if _V_RE.match(t)]
        if len(found) != 1:
            return None
        try:
            return parse_record(found[0])
        except DmarcSyntaxError as exc:
            return exc

    def discover(self, domain: str) -> tuple[str, Record] | None:
        """Policy discovery: the first DMARC record on the tree walk, and where it was found."""
        for target in walk_targets(domain):
            rec = self.lookup(target)
            if rec is not None:
                return target, rec
        return None

    def org_domain(self, domain: str) -> str:
        """The Organizational Domain by the RFC 9989 tree walk."""
        domain = domain.rstrip(".").lower()
        labels = domain.split(".")
        best: str | None = None
        for target in walk_targets(domain):
            try:
                rec = self.lookup(target)
            except DmarcSyntaxError:
                rec = None
            if rec is None:
                continue
            if rec.psd == "n":
                return target
            if rec.psd == "y":
                n = target.count(".") + 1
                return domain if n >= len(labels) else ".".join(labels[-(n + 1) :])
            best = target
        return best or domain

    def aligned(self, ident: str | None, author: str, mode: str) -> bool:
        if not ident:
            return False
        ident = ident.rstrip(".").lower()
        if ident == author:
            return True
        if mode == "s" or ident.rsplit(".", 1)[-1] != author.rsplit(".", 1)[-1]:
            return False
        return self.org_domain(ident) == self.org_domain(author)

    def exists(self, domain: str) -> bool:
        return dns.get().query(domain, "A").outcome != "nxdomain"


def from_domains(from_values: Sequence[str]) -> list[str]:
    """Distinct RFC5322.From domains (lower case, no trailing dot), in order."""
    out: list[str] = []
    for _name, addr in getaddresses(list(from_values)):
        _local, at, dom = addr.rpartition("@")
        dom = dom.strip().rstrip(".").lower()
        if at and dom and dom not in out:
            out.append(dom)
    return out


def evaluate(
    from_values: Sequence[str],
    spf: SpfResult | None,
    dkim: list[DkimResult],
    rng: Callable[[], float] = random.random,
) -> tuple[DmarcResult, str | None]:
    """Evaluate DMARC for a message with these From field values. Returns the result and the
    header_from_domain for the event. Sets ``aligned`` on each DKIM result. Never raises on DNS."""
    ev = Evaluator(rng)
    domains = from_domains(from_values)
    if not domains:
        for d in dkim:
            d.aligned = False
        why = "no RFC5322.From field" if not from_values else "no domain in RFC5322.From"
        return DmarcResult("permerror", reason=why), None
    results = [_evaluate_one(ev, dom, spf, dkim) for dom in domains[:MAX_FROM_DOMAINS]]
    worst = max(results, key=lambda r: (_SEVERITY[r[0].result], _POLICIES.index(r[0].disposition)))
    for d, al in zip(dkim, worst[1], strict=True):
        d.aligned = al
    header_from = domains[0] if len(domains) == 1 else None
    return worst[0], header_from


def _evaluate_one(
    ev: Evaluator, author: str, spf: SpfResult | None, dkim: list[DkimResult]
) -> tuple[DmarcResult, list[bool]]:
    res = DmarcResult("none", domain=author)
    try:
        found = ev.discover(author)
    except DmarcTempError as exc:
        res.result, res.reason = "temperror", str(exc)
        return res, [_safe_aligned(ev, d.domain, author, "r") for d in dkim]
    except DmarcSyntaxError as exc:
        res.result, res.reason = "permerror", str(exc)
        return res, [_safe_aligned(ev, d.domain, author, "r") for d in dkim]
    if found is None:
        res.reason = "no DMARC record"
        return res, [_safe_aligned(ev, d.domain, author, "r") for d in dkim]
    target, rec = found
    res.policy_domain = target
    if rec.p is None:
        res.reason = "record has no policy"
        return res, [_safe_aligned(ev, d.domain, author, rec.adkim) for d in dkim]
    # Alignment per identifier: True, False, or None when a DNS failure left it open.
    dkim_al = [_maybe_aligned(ev, d.domain, author, rec.adkim) for d in dkim]
    spf_al = _maybe_aligned(ev, spf.domain, author, rec.aspf) if spf is not None else False
    policy_error = ""
    try:
        if target == author:
            policy = rec.p
        else:
            sub = ev.org_domain(author) != author
            policy = (rec.sp or rec.p) if sub else rec.p
            if rec.np and not ev.exists(author):
                policy = rec.np
    except DmarcTempError as exc:
        policy, policy_error = None, str(exc)
    res.policy = policy
    res.spf_aligned = spf is not None and spf_al is True and spf.result == "pass"
    res.dkim_aligned = any(al is True and d.result == "pass" for d, al in zip(dkim, dkim_al, strict=True))
    aligned = [al is True for al in dkim_al]
    if res.spf_aligned or res.dkim_aligned:
        res.result = "pass"
        return res, aligned
    # A fail is only a fail when DNS trouble cannot have hidden an aligned pass.
    open_spf = spf is not None and (
        (spf_al is None and spf.result in ("pass", "temperror"))
        or (spf_al is True and spf.result == "temperror")
    )
    open_dkim = any(
        (al is None and d.result in ("pass", "temperror")) or (al is True and d.result == "temperror")
        for d, al in zip(dkim, dkim_al, strict=True)
    )
    if policy_error or open_spf or open_dkim:
        res.result = "temperror"
        res.reason = policy_error or "an aligned identifier could not be verified (DNS)"
        return res, aligned
    assert policy is not None
    res.result = "fail"
    temp_note = ""
    disposition = policy
    if rec.pct is not None and rec.pct < 100 and ev.rng() * 100 >= rec.pct:
        disposition, temp_note = _DOWNGRADE[disposition], f"not sampled (pct={rec.pct})"
    if rec.t:
        disposition, temp_note = _DOWNGRADE[disposition], "t=y (testing)"
    res.disposition = disposition
    res.reason = temp_note
    return res, aligned


def _undecided(result: str, aligned: bool | None) -> bool:
    """Could DNS trouble hide an aligned pass? (alignment unknown, or the aligned check temperror)"""
    return (aligned is None and result in ("pass", "temperror")) or (
        aligned is True and result == "temperror"
    )


def _maybe_aligned(ev: Evaluator, ident: str | None, author: str, mode: str) -> bool | None:
    try:
        return ev.aligned(ident, author, mode)
    except DmarcTempError:
        return None


def _safe_aligned(ev: Evaluator, ident: str | None, author: str, mode: str) -> bool:
    try:
        return ev.aligned(ident, author, mode)
    except (DmarcTempError, DmarcSyntaxError):
        return False
