"""dmarc: act on the DMARC result (RFC 9989) computed at end of message.

A ``fail`` follows the domain's disposition (reject -> reject, quarantine -> quarantine, none ->
continue), capped by ``max_action``. ``temperror`` -> ``temperror_action`` (continue or tempfail).
``permerror`` (no usable From: missing, several, unparseable, no single author domain; see
auth/dmarc.py) -> ``permerror_action``, ``reject`` by default: the sender fully controls the From
field, so a message without a usable one must not walk past an enforced DMARC policy (RFC 9989
11.5; RFC 5322 requires exactly one From). pass and none always continue. Quarantine is the milter
quarantine (Postfix hold queue) or, with ``quarantine = "header"``, an added header.

Overrides (the reasons of RFC 9990): a ``fail`` that would be refused or quarantined is accepted
instead, with the reason recorded, when
- ``trusted_forwarder``: the client is in ``trusted_forwarders``, or the message carries a valid ARC
  chain (``arc=pass``) whose newest sets are all sealed by ``trusted_arc_sealers`` and one of those
  trusted sets' ARC-Authentication-Results recorded a pass for the author domain (``dmarc=pass
  header.from=<author domain>``, or a ``dkim=pass`` / ``spf=pass`` whose domain is the author
  domain, a parent or a subdomain of it);
- ``mailing_list``: the message has a List-Id naming a list in ``mailing_lists`` (``"*"``: any), and
  the list's own domain authenticated it (a DKIM pass or an SPF pass for the list identifier's
  domain or a parent of it); ``mailing_list_action`` says what such a message gets (``continue``,
  or ``quarantine`` instead of a reject).
Exemptions are overrides too (``local_policy``, set by :mod:`mailpolicy.policy`). Nothing in the
message alone can trigger an override: the forwarder's network, a sealer's signature or the list
domain's authentication must vouch for it, and each of those is configured by the admin."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailpolicy.auth import header as auth_header
from mailpolicy.auth.arc import MAX_AAR_CHARS
from mailpolicy.checks.base import (
    CheckSpec,
    Option,
    parse_action,
    parse_domains,
    parse_header,
    parse_networks,
    parse_optional_reply,
    parse_quarantine,
)
from mailpolicy.checks.spf import finalize_replies
from mailpolicy.model import ACTION_SEVERITY, Action, IPNetwork, PolicyConfig, Reply, Stage, Verdict

if TYPE_CHECKING:
    from mailpolicy.auth import AuthResults, DmarcResult
    from mailpolicy.state import Transaction

DEFAULT_REJECT = "550 5.7.1 Message rejected by the DMARC policy of the sender domain"
DEFAULT_TEMPFAIL = "451 4.7.5 DMARC evaluation could not complete, try again later"
DEFAULT_PERMERROR = "550 5.7.1 Message rejected: its From header field gives no single author domain (DMARC)"
_BY_DISPOSITION = {"reject": Action.REJECT, "quarantine": Action.QUARANTINE, "none": Action.CONTINUE}


@dataclass(frozen=True)
class Options:
    max_action: Action
    quarantine: str  # "hold" | "header"
    quarantine_header: tuple[str, str]
    temperror_action: Action
    permerror_action: Action
    permerror_reply: Reply
    reject_reply: Reply
    tempfail_reply: Reply
    trusted_arc_sealers: tuple[str, ...] = ()
    trusted_forwarders: tuple[IPNetwork, ...] = ()
    mailing_lists: tuple[str, ...] = ()
    mailing_list_action: Action = Action.CONTINUE

    @property
    def how_quarantined(self) -> tuple[str, str] | None:
        return self.quarantine_header if self.quarantine == "header" else None


def run(txn: Transaction, cfg: PolicyConfig) -> Verdict:
    dm = txn.auth.dmarc if txn.auth is not None else None
    if dm is None:
        return Verdict("none")
    details: dict[str, Any] = {"domain": dm.domain, "policy": dm.policy, "disposition": dm.disposition}
    o: Options = cfg.options
    if dm.result == "fail":
        action = _BY_DISPOSITION.get(dm.disposition, Action.CONTINUE)
        if ACTION_SEVERITY[action] > ACTION_SEVERITY[o.max_action]:
            action = o.max_action
        if action is not Action.CONTINUE:
            found = override(txn, o, dm)
            if found is not None:
                reason, by = found
                details["override_by"] = by
                new = Action.CONTINUE
                if reason == "mailing_list" and o.mailing_list_action is Action.QUARANTINE:
                    new = Action.QUARANTINE
                return Verdict(
                    "fail",
                    new,
                    details=details,
                    quarantine_header=o.how_quarantined,
                    override=reason,
                    overridden=action,
                )
        reply = o.reject_reply if action is Action.REJECT else None
        return Verdict("fail", action, reply, details, quarantine_header=o.how_quarantined)
    if dm.result == "temperror" and o.temperror_action is Action.TEMPFAIL:
        return Verdict("temperror", Action.TEMPFAIL, o.tempfail_reply, details)
    if dm.result == "permerror":
        details["author_problem"] = dm.author_problem
        replies = {Action.REJECT: o.permerror_reply, Action.TEMPFAIL: o.tempfail_reply}
        return Verdict(
            "permerror",
            o.permerror_action,
            replies.get(o.permerror_action),
            details,
            quarantine_header=o.how_quarantined,
        )
    return Verdict(dm.result, details=details)


# ---- overrides ---------------------------------------------------------------------------------


def override(txn: Transaction, o: Options, dm: DmarcResult) -> tuple[str, str] | None:
    """The override reason for a DMARC failure and what vouched for it, or None."""
    ip = txn.client_ip
    if ip is not None and o.trusted_forwarders:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        for net in o.trusted_forwarders:
            if ip.version == net.version and ip in net:
                return "trusted_forwarder", str(net)
    a = txn.auth
    author = (dm.domain or "").lower()
    if a is None or not author:
        return None
    sealer = _trusted_sealer(a, o.trusted_arc_sealers, author)
    if sealer is not None:
        return "trusted_forwarder", sealer
    m = txn.message
    if (
        o.mailing_lists
        and m is not None
        and m.list_id is not None
        and _list_vouched(a, m.list_id, o.mailing_lists)
    ):
        return "mailing_list", m.list_id
    return None


def related(a: str, b: str) -> bool:
    """The same domain, or one under the other (a strict form of relaxed alignment: sibling
    subdomains of one organization do not count)."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def _trusted_sealer(a: AuthResults, trusted: tuple[str, ...], author: str) -> str | None:
    arc = a.results.get("arc")
    if not trusted or arc is None or getattr(arc, "result", None) != "pass":
        return None
    sealers: list[str] = arc.sealers
    aars: list[str] = arc.aar
    # From the newest set down, while every sealer is trusted: each later hop is trusted too.
    for i in range(len(sealers) - 1, -1, -1):
        if sealers[i] not in trusted:
            return None
        if i < len(aars) and aar_vouches(aars[i], author):
            return sealers[i]
    return None


_AAR_MAX = 8 * MAX_AAR_CHARS  # a longer text is read on this much (arc.py keeps MAX_AAR_CHARS)


def aar_vouches(text: str, author: str) -> bool:
    """Whether an ARC-Authentication-Results value (``authserv-id; method=result ...; ...``)
    records an authentication pass for ``author``: ``dmarc=pass`` with ``header.from`` the author
    domain, or ``dkim=pass`` (``header.d``, or the domain of ``header.i``) / ``spf=pass``
    (``smtp.mailfrom``) with a domain related to it (see :func:`related`).

    The value is read by :func:`mailpolicy.auth.header.resinfos`: results are separated only by a
    ``;`` outside quoted-strings and comments, and a value is the one written right after its
    ``name=``, so nothing inside a quoted local part (``smtp.mailfrom="x;dmarc=pass
    header.from=victim.example"@attacker.example``, which a sealer records honestly) or a comment
    counts. A value written as one quoted-string names no domain. Fails closed: a value that cannot
    be read as a whole (unbalanced quotes or comments, a property given twice, ...) vouches for
    nothing. A text of :data:`MAX_AAR_CHARS` or more may have been cut (arc.py keeps that much):
    its last result, which may be cut short (``header.d=example.com`` of
    ``header.d=example.com.evil.example``), is not read."""
    truncated = len(text) >= MAX_AAR_CHARS
    results = auth_header.resinfos(text[:_AAR_MAX], truncated=truncated)
    if not results:
        return False
    author = author.lower().rstrip(".")
    for r in results:
        if r.result != "pass":
            continue
        if r.method == "dmarc":
            if _domain(r, "header.from") == author:
                return True
        elif r.method == "dkim":
            if any(d and related(d, author) for d in (_domain(r, "header.d"), _domain(r, "header.i"))):
                return True
        elif r.method == "spf":
            d = _domain(r, "smtp.mailfrom")
            if d and related(d, author):
                return True
    return False


def _domain(r: auth_header.Resinfo, name: str) -> str | None:
    """The domain property ``name`` of ``r`` names (lower case, no trailing dot), or None."""
    value = r.props.get(name)
    domain = auth_header.domain_of(value) if value else None
    return domain.rstrip(".") if domain else None


def _list_vouched(a: AuthResults, list_id: str, lists: tuple[str, ...]) -> bool:
    """A configured list whose own domain authenticated the message: a DKIM pass, or an SPF pass
    for the MAIL FROM domain, of the list identifier's domain or a parent of it."""
    if "*" not in lists and not any(list_id == d or list_id.endswith("." + d) for d in lists):
        return False
    domains = [d.domain for d in a.dkim if d.result == "pass" and d.domain]
    if a.spf is not None and a.spf.result == "pass" and a.spf.scope == "mailfrom" and a.spf.domain:
        domains.append(a.spf.domain)
    return any(list_id == d.lower() or list_id.endswith("." + d.lower()) for d in domains)


# ---- options -----------------------------------------------------------------------------------


def _finalize(opts: dict[str, Any]) -> list[tuple[str, str]]:
    problems = finalize_replies(opts, DEFAULT_REJECT, DEFAULT_TEMPFAIL)
    reply = opts.get("permerror_reply")
    if reply is None:
        opts["permerror_reply"] = Reply.parse(DEFAULT_PERMERROR)
    elif isinstance(reply, Reply) and not reply.permanent:
        problems.append(("permerror_reply", f"must be a 5xx reply (got {reply.code})"))
    return problems


def _lists(value: Any) -> tuple[str, ...]:
    if isinstance(value, list) and "*" in value:
        if len(value) > 1:
            raise ValueError("'*' (any list) stands alone")
        return ("*",)
    return parse_domains(value)


def _needs(o: Options) -> tuple[str, ...]:
    return ("dmarc", "arc") if o.trusted_arc_sealers else ("dmarc",)


SPEC = CheckSpec(
    name="dmarc",
    stage=Stage.EOM,
    run=run,
    settings=Options,
    results=("pass", "fail", "none", "temperror", "permerror"),
    needs=_needs,
    annotates="dmarc",
    options={
        "max_action": Option("reject", parse_action(Action.CONTINUE, Action.QUARANTINE, Action.REJECT)),
        "quarantine": Option("header", parse_quarantine),
        "quarantine_header": Option("X-Mailpolicy-Quarantine: DMARC policy quarantine", parse_header),
        "temperror_action": Option("continue", parse_action(Action.CONTINUE, Action.TEMPFAIL)),
        "permerror_action": Option(
            "reject", parse_action(Action.CONTINUE, Action.QUARANTINE, Action.REJECT, Action.TEMPFAIL)
        ),
        "permerror_reply": Option("", parse_optional_reply),
        "reject_reply": Option("", parse_optional_reply),
        "tempfail_reply": Option("", parse_optional_reply),
        "trusted_arc_sealers": Option([], parse_domains),
        "trusted_forwarders": Option([], parse_networks),
        "mailing_lists": Option([], _lists),
        "mailing_list_action": Option("continue", parse_action(Action.CONTINUE, Action.QUARANTINE)),
    },
    finalize=_finalize,
)
