"""DMARC (RFC 9989) evaluation: Author Domain, policy discovery and Organizational Domain by the DNS
Tree Walk (no public suffix list), strict/relaxed identifier alignment, tags p, sp, np, psd, t,
adkim, aspf (and RFC 7489's pct, still honoured when a record carries it).

Choices, each tied to the RFC text:
- Author Domain (RFC 9989 5.3.1, 4.2): every From field is parsed strictly (auth/address.py). No From
  field, a value that does not parse, or no domain in it (an empty group, an address literal):
  ``permerror`` with ``author_problem`` saying which. Exactly one From field whose mailboxes share one
  domain: that domain is evaluated. Several From fields (forbidden by RFC 5322) or several domains:
  5.3.1 exempts such messages from DMARC, and 11.5 warns that attackers use them to dodge it, so
  each distinct domain (up to :data:`MAX_AUTHOR_DOMAINS`) is evaluated and the strictest failure
  wins (``fail`` with that domain's disposition); without a failure the result is ``temperror`` if
  one was open, else ``permerror`` (``author_problem`` = multiple_from / multiple_domains). More
  domains than the limit: ``permerror`` (too_many_domains). The ``dmarc`` policy's
  ``permerror_action`` decides what enforcement does with a permerror.
- Records (RFC 9989 4.7, 4.10): a TXT record is a DMARC record when it starts with ``v=DMARC1``
  (the value is case-sensitive); several at one name are all discarded. Unknown tags, tags without
  ``=`` and invalid values of other tags are ignored (defaults apply). 4.10.1: a record whose ``p``
  is invalid, or whose ``sp`` or ``np`` is present but invalid, acts as ``p=none`` when its ``rua``
  has at least one syntactically valid URI, and otherwise means no DMARC processing (``none``); a
  record without ``p`` acts as ``p=none``.
- Policy applied (4.10.1): the record at the Author Domain gives p. A record found higher up gives p
  when the Author Domain is the Organizational Domain, else sp (default p); np (if present) replaces
  either when the Author Domain does not exist (NXDOMAIN). When that existence check fails (DNS), the
  stricter of the two applies: DNS trouble never softens a policy.
- Alignment (4.4): an identifier equal to the Author Domain is aligned; in relaxed mode the Author
  Domain's Organizational Domain is worked out first, and an identifier that is neither that domain
  nor below it is unaligned without any lookup. Only names under the author's own Organizational
  Domain are ever walked for alignment, so DNS trouble on a name the sender controls (its MAIL FROM
  or d= domain) cannot turn a ``fail`` into a ``temperror``.
- A fail becomes temperror only when DNS trouble could hide an aligned pass (an aligned SPF/DKIM
  temperror, or a passing identifier under the author's Organizational Domain whose alignment could
  not be decided), or when the policy could not be chosen; an aligned pass always wins.
- ``pct`` (RFC 7489, removed by RFC 9989 appendix A) still lowers the disposition one step for a
  message outside the sample when a record carries it; ``t=y`` lowers it one step the same way.
  Numbers are ASCII digits only (``str.isdigit`` also accepts superscript, fullwidth or
  Arabic-Indic digits, which ``int`` refuses or reads as no record means), of any length (capped
  at 100 without ``int`` of a long string: ``int`` refuses more than 4300 digits).
- A record is text the sender may control (the From field can name the sender's own domain next
  to another): an exception while one author domain is evaluated is ``temperror`` for that domain
  only, so it can never hide another domain's ``fail`` (the strictest result wins)."""

from __future__ import annotations

import functools
import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailpolicy import dns, metrics
from mailpolicy.auth import DkimResult, DmarcResult, SpfResult, header
from mailpolicy.auth.base import MethodSpec
from mailpolicy.model import Stage

if TYPE_CHECKING:
    from mailpolicy.state import Transaction
from mailpolicy.auth.address import AddressError, domain_key, parse_mailboxes

log = logging.getLogger("mailpolicy.auth.dmarc")

_POLICIES = ("none", "quarantine", "reject")
_SEVERITY = {"pass": 0, "none": 1, "permerror": 2, "temperror": 3, "fail": 4}
_DOWNGRADE = {"reject": "quarantine", "quarantine": "none", "none": "none"}
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s,!;]+(?:![0-9]+[kmgtKMGT]?)?")
MAX_AUTHOR_DOMAINS = 5
MAX_FROM_FIELDS = 10  # more From fields than this are not parsed one by one: too_many_from


class DmarcTempError(Exception):
    """A DNS failure during policy discovery or Organizational Domain determination."""


@dataclass(frozen=True)
class Record:
    p: str | None  # None: no DMARC processing for this record (RFC 9989 4.10.1)
    sp: str | None = None
    np: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int | None = None  # None: no pct tag
    t: bool = False
    psd: str = "u"  # y | n | u
    note: str = ""  # why the record was read as it was (invalid tags)


def is_dmarc_record(text: str) -> bool:
    """RFC 9989 4.7: ``v`` first, its value exactly ``DMARC1``."""
    first = text.split(";", 1)[0]
    key, eq, value = first.partition("=")
    return bool(eq) and key.strip().lower() == "v" and value.strip() == "DMARC1"


def parse_record(text: str) -> Record:
    """Parse a DMARC record (``is_dmarc_record`` is true). Never raises: syntax errors in tags are
    discarded in favour of the defaults (RFC 9989 4.7)."""
    tags: dict[str, str] = {}
    for part in text.split(";")[1:]:
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if eq and key.isascii() and key.isalpha() and key not in tags:
            tags[key] = value.strip()

    def policy(key: str) -> tuple[str | None, bool]:
        """(value, valid): an absent tag is (None, True)."""
        if key not in tags:
            return None, True
        v = tags[key].lower()
        return (v, True) if v in _POLICIES else (None, False)

    p, _ = policy("p")
    sp, sp_ok = policy("sp")
    np_, np_ok = policy("np")
    note = ""
    if p is None or not (sp_ok and np_ok):
        bad = ", ".join(k for k, ok in (("p", p is not None), ("sp", sp_ok), ("np", np_ok)) if not ok)
        uris = [u.strip() for u in tags.get("rua", "").split(",")]
        if any(_URI_RE.fullmatch(u) for u in uris if u):
            return Record(p="none", note=f"no valid {bad}, valid rua: p=none (RFC 9989 4.10.1)")
        return Record(p=None, note=f"no valid {bad} and no valid rua: no DMARC processing (RFC 9989 4.10.1)")
    pct = _percent(tags.get("pct", ""))
    psd = tags.get("psd", "u").lower()
    return Record(
        p=p,
        sp=sp,
        np=np_,
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
        pct=pct,
        t=tags.get("t", "n").lower() == "y",
        psd=psd if psd in ("y", "n", "u") else "u",
        note=note,
    )


def _percent(text: str) -> int | None:
    """``pct``: ASCII digits (any number of them) capped at 100; anything else is invalid (None)."""
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0")
    return 100 if len(digits) > 3 else min(100, int(digits or "0"))


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> Record:
    """parse_record, once per record text (a pure function of it; the DNS answer itself stays
    bound by its TTL in the resolver)."""
    return parse_record(text)


def walk_targets(domain: str) -> list[str]:
    """The names the DNS Tree Walk queries (under ``_dmarc.``), author domain first (RFC 9989 4.10:
    with x labels left, drop one label if x < 5, else drop down to 4 labels)."""
    labels = [x for x in domain.rstrip(".").lower().split(".") if x]
    out = [".".join(labels)] if labels else []
    x = len(labels)
    while x > 1:
        x = x - 1 if x < 5 else 4
        out.append(".".join(labels[-x:]))
    return out


def _under(name: str, parent: str) -> bool:
    return name == parent or name.endswith("." + parent)


class Evaluator:
    """One message's DMARC evaluation; caches record lookups and Organizational Domains per name."""

    def __init__(self, rng: Callable[[], float] = random.random):
        self._records: dict[str, Record | DmarcTempError | None] = {}
        self._orgs: dict[str, str | DmarcTempError] = {}
        self.rng = rng

    def lookup(self, domain: str) -> Record | None:
        """The DMARC record at ``_dmarc.<domain>`` or None. Raises DmarcTempError."""
        if domain not in self._records:
            self._records[domain] = self._fetch(domain)
        got = self._records[domain]
        if isinstance(got, DmarcTempError):
            raise got
        return got

    def _fetch(self, domain: str) -> Record | DmarcTempError | None:
        ans = dns.get().query(f"_dmarc.{domain}", "TXT")
        if ans.failed:
            return DmarcTempError(f"TXT _dmarc.{domain}: {ans.outcome}")
        texts = [t.decode("utf-8", "replace") for t in ans.txt()]
        found = [t for t in texts if is_dmarc_record(t)]
        if len(found) != 1:
            return None
        return _parsed(found[0])

    def discover(self, domain: str) -> tuple[str, Record] | None:
        """Policy discovery: the first DMARC record on the tree walk, and where it was found."""
        for target in walk_targets(domain):
            rec = self.lookup(target)
            if rec is not None:
                return target, rec
        return None

    def org_domain(self, domain: str) -> str:
        """The Organizational Domain by the RFC 9989 4.10.2 tree walk. Raises DmarcTempError."""
        domain = domain.rstrip(".").lower()
        hit = self._orgs.get(domain)
        if hit is None:
            try:
                hit = self._org_domain(domain)
            except DmarcTempError as exc:
                hit = exc
            self._orgs[domain] = hit
        if isinstance(hit, DmarcTempError):
            raise hit
        return hit

    def _org_domain(self, domain: str) -> str:
        labels = domain.split(".")
        best: str | None = None
        for target in walk_targets(domain):
            rec = self.lookup(target)
            if rec is None:
                continue
            if rec.psd == "n":
                return target
            if rec.psd == "y" and target != domain:
                n = target.count(".") + 1
                return ".".join(labels[-(n + 1) :])
            best = target
        return best or domain

    def aligned(self, ident: str | None, author: str, mode: str) -> bool:
        """Identifier alignment (RFC 9989 4.4). Raises DmarcTempError only for DNS trouble on names
        under the author's Organizational Domain."""
        if not ident:
            return False
        ident = ident.rstrip(".").lower()
        if ident == author:
            return True
        if mode == "s":
            return False
        org = self.org_domain(author)
        if not _under(ident, org):
            return False  # not the author's organization, whatever its own DNS says
        return self.org_domain(ident) == org

    def exists(self, domain: str) -> bool | None:
        """Whether the domain exists (no NXDOMAIN for A); None when DNS could not tell."""
        ans = dns.get().query(domain, "A")
        if ans.failed:
            return None
        return ans.outcome != "nxdomain"


@dataclass(frozen=True)
class Authors:
    """The Author Domain(s) of a message, or why there is none."""

    domains: tuple[str, ...] = ()
    problem: str | None = None  # no_from too_many_from unparseable_from no_domain multiple_from ...
    reason: str = ""
    fields: int = 0


def authors(from_values: Sequence[str | bytes], from_fields: int | None = None) -> Authors:
    """The Author Domains of a message from its From field values (``from_fields``: how many From
    fields there were, when more than the values given)."""
    count = len(from_values) if from_fields is None else from_fields
    if count == 0:
        return Authors(problem="no_from", reason="no RFC5322.From field")
    if count > MAX_FROM_FIELDS:
        return Authors(problem="too_many_from", reason=f"{count} From fields", fields=count)
    domains: list[str] = []
    for value in from_values:
        try:
            boxes = parse_mailboxes(value)
        except AddressError as exc:
            return Authors(problem="unparseable_from", reason=f"From: {exc}"[:200], fields=count)
        if any(b.domain is None for b in boxes):
            return Authors(problem="no_domain", reason="address literal in From", fields=count)
        for b in boxes:
            assert b.domain is not None
            if b.domain not in domains:
                domains.append(b.domain)
    if not domains:
        return Authors(problem="no_domain", reason="no domain in RFC5322.From", fields=count)
    if count > 1:
        return Authors(tuple(domains), "multiple_from", f"{count} From fields", count)
    if len(domains) > 1:
        return Authors(tuple(domains), "multiple_domains", f"{len(domains)} author domains", count)
    return Authors(tuple(domains), fields=count)


def evaluate(
    from_values: Sequence[str | bytes],
    spf: SpfResult | None,
    dkim: list[DkimResult],
    rng: Callable[[], float] = random.random,
    from_fields: int | None = None,
) -> tuple[DmarcResult, str | None]:
    """Evaluate DMARC for a message with these From field values. Returns the result and the
    header_from_domain for the event. Sets ``aligned`` on each DKIM result. Never raises on DNS."""
    ev = Evaluator(rng)
    who = authors(from_values, from_fields)
    for d in dkim:
        d.aligned = False
    if not who.domains:
        return DmarcResult("permerror", reason=who.reason, author_problem=who.problem), None
    if who.problem is None:
        res, aligned = _evaluate_guarded(ev, who.domains[0], spf, dkim)
        for d, al in zip(dkim, aligned, strict=True):
            d.aligned = al
        return res, who.domains[0]
    # Several From fields or Author Domains (RFC 9989 5.3.1, 11.5): the strictest failure wins.
    if len(who.domains) > MAX_AUTHOR_DOMAINS:
        res = DmarcResult(
            "permerror",
            reason=f"{len(who.domains)} author domains (limit {MAX_AUTHOR_DOMAINS})",
            author_problem="too_many_domains",
        )
        return res, None
    results = [_evaluate_guarded(ev, dom, spf, dkim) for dom in who.domains]
    worst = max(results, key=lambda r: (_SEVERITY[r[0].result], _POLICIES.index(r[0].disposition)))
    res = worst[0]
    res.author_problem = who.problem
    if res.result in ("fail", "temperror"):
        res.reason = f"{who.reason}; {res.reason}".rstrip("; ")
        for d, al in zip(dkim, worst[1], strict=True):
            d.aligned = al
    else:
        res = DmarcResult(
            "permerror", domain=None, reason=who.reason, author_problem=who.problem, dkim_aligned=False
        )
    return res, None


def _evaluate_guarded(
    ev: Evaluator, author: str, spf: SpfResult | None, dkim: list[DkimResult]
) -> tuple[DmarcResult, list[bool]]:
    """:func:`_evaluate_one`, never raising: an unexpected exception (a record or a name the
    sender may control reaching a bug) is ``temperror`` for this author domain alone, logged and
    counted. Another author domain's result is untouched, and ``fail`` outranks ``temperror``."""
    try:
        return _evaluate_one(ev, author, spf, dkim)
    except Exception as exc:
        metrics.child(metrics.CHECK_ERRORS, "auth").inc()
        log.exception(
            "DMARC evaluation of one author domain failed; it is temperror", extra={"check": "dmarc"}
        )
        res = DmarcResult("temperror", domain=author, reason=f"internal error: {type(exc).__name__}")
        return res, [False] * len(dkim)


def _evaluate_one(
    ev: Evaluator, author: str, spf: SpfResult | None, dkim: list[DkimResult]
) -> tuple[DmarcResult, list[bool]]:
    res = DmarcResult("none", domain=author)
    try:
        author = domain_key(author)
    except AddressError as exc:
        res.result, res.reason = "permerror", str(exc)
        return res, [False] * len(dkim)
    try:
        found = ev.discover(author)
    except DmarcTempError as exc:
        res.result, res.reason = "temperror", str(exc)
        return res, [_safe_aligned(ev, d.domain, author, "r") for d in dkim]
    if found is None:
        res.reason = "no DMARC record"
        return res, [_safe_aligned(ev, d.domain, author, "r") for d in dkim]
    target, rec = found
    res.policy_domain = target
    if rec.p is None:
        res.reason = rec.note or "record has no policy"
        return res, [_safe_aligned(ev, d.domain, author, rec.adkim) for d in dkim]
    # Alignment per identifier: True, False, or None when a DNS failure left it open.
    dkim_al = [_maybe_aligned(ev, d.domain, author, rec.adkim) for d in dkim]
    spf_al = _maybe_aligned(ev, spf.domain, author, rec.aspf) if spf is not None else False
    policy_error = ""
    policy: str | None
    try:
        if target == author:
            policy = rec.p
        else:
            sub = ev.org_domain(author) != author
            policy = (rec.sp or rec.p) if sub else rec.p
            if rec.np:
                exists = ev.exists(author)
                if exists is None:  # unknown: the stricter of the two, never the softer
                    policy = max(policy, rec.np, key=_POLICIES.index)
                elif not exists:
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
    open_spf = spf is not None and _undecided(spf.result, spf_al)
    open_dkim = any(_undecided(d.result, al) for d, al in zip(dkim, dkim_al, strict=True))
    if policy_error or open_spf or open_dkim:
        res.result = "temperror"
        res.reason = policy_error or "an aligned identifier could not be verified (DNS)"
        return res, aligned
    assert policy is not None
    res.result = "fail"
    note = rec.note
    disposition = policy
    if rec.pct is not None and rec.pct < 100 and ev.rng() * 100 >= rec.pct:
        disposition, note = _DOWNGRADE[disposition], f"not sampled (pct={rec.pct})"
    if rec.t:
        disposition, note = _DOWNGRADE[disposition], "t=y (testing)"
    res.disposition = disposition
    res.reason = note
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
    except DmarcTempError:
        return False


# ---- the method --------------------------------------------------------------------------------


def _run(txn: Transaction) -> DmarcResult:
    a, m = txn.auth, txn.message
    assert a is not None and m is not None
    res, a.header_from_domain = evaluate(m.from_values, a.spf, a.dkim, from_fields=m.from_count)
    return res


def _clauses(res: DmarcResult, note: str | None) -> list[str]:
    props = [("header.from", res.domain or "")]
    if res.policy and res.result != "none":
        props.append(("policy.dmarc", res.policy))
    return [header.resinfo("dmarc", res.result, note, None, props)]


METHOD = MethodSpec(
    name="dmarc",
    stage=Stage.EOM,
    run=_run,
    results=("pass", "fail", "none", "temperror", "permerror"),
    words=lambda res: (res.result,),
    clauses=_clauses,
    record=lambda res: res.record(),
    unavailable=lambda why: DmarcResult("temperror", reason=why),
    needs=("spf", "dkim"),
)
