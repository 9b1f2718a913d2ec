"""Streaming aggregation of events into the report document.

Memory is bounded by the number of distinct keys (clients, networks, sender domains, days, hosts,
policies), never by the number of events: each event is folded into counters and dropped.
:meth:`Aggregator.result` turns the counters into the JSON-ready report document (README.md, "JSON
output", has its schema), from which every renderer works.

Recipients are counted next to transactions (see :func:`recipients`): a transaction's
``rcpt_count`` minus the recipients an enforce-mode policy already refused one by one at RCPT
(``rcpt_rejected``) is what refusing the whole message would lose.

What the numbers mean, per transaction (README.md, "What the report says"):

- **refused today** (``combined.already_refused``, a policy's ``refused``): an enforce-mode policy
  refused the transaction as a whole, which its outcome says (``rejected`` or ``tempfailed``: at MAIL
  FROM, at the end of the message, or every recipient at RCPT, which the milter writes as such an
  outcome too); all its recipients are refused. An enforce-mode policy that refused only some
  recipients at RCPT refused those (``rcpt_rejected``); the message went to the others.
- **delivered today**: the outcome is ``accepted`` or ``quarantined`` (see :func:`delivered_today`).
  Neither refused today nor delivered: ``aborted`` (the client sent RSET or QUIT or went away, or
  the MTA itself refused every recipient, so ``rcpt_count`` may be 0), or no outcome this report
  knows. Nothing of such a transaction was delivered, so enforcing cannot lose it.
- **would refuse** (a policy's ``would_refuse``, ``would_refuse_recipients``, its ``affected``): a
  monitor-mode decision whose action is reject or tempfail, what the decision says whatever the
  other policies did and whatever became of the transaction (as ``mailpolicy status`` counts it),
  with the recipients the message still had after RCPT. ``would_refuse_aborted``: the part of it
  that was not delivered today and not refused today either.
- **lost** (``combined.lost``, ``lost_by_policy``, a host's ``would_lose``, the daily ``lost``, the
  TLS floor simulation's ``with_require_starttls.lost``): what switching would newly refuse. A
  transaction delivered today that a monitor-mode policy would refuse, with the recipients it still
  had after RCPT: those refused at RCPT are refused today, not lost. So a policy's
  ``lost_by_policy`` is its ``would_refuse`` less the transactions refused today and less
  ``would_refuse_aborted``.
- **only by it** (``lost_only_by_policy``): the lost transactions that one monitor-mode policy alone
  would refuse: what staying in monitor mode keeps of that policy's loss.
- **kept** by an exemption from a policy (``PolicyStats.kept``, the suggestions): the mail that
  policy alone keeps from delivery. A transaction delivered today that the policy would refuse
  (monitor mode: its loss, recipients as for lost), or one the policy refused (enforce mode, applied)
  when no other enforce-mode decision of the transaction refuses, and the transaction was refused
  today or delivered (refused for some recipients at RCPT only). Never mail another enforce-mode
  policy refuses anyway, nor mail that was not delivered for another reason (aborted)."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, TypeVar

import msgspec

from mailpolicy import EVENT_SCHEMA, __version__
from mailpolicy.report.lookalike import Collector
from mailpolicy.report.lookalike import to_json as lookalikes_json
from mailpolicy.report.reader import (
    ARC_DECODER,
    DECODER,
    DKIM_DECODER,
    DMARC_DECODER,
    NOT_SYSLOG_LINE,
    OTHER,
    OVERRIDES_DECODER,
    POLICIES_DECODER,
    DecodeError,
    Event,
    PolicyRec,
    classify_undecodable,
    current_idents,
    event_json,
    open_source,
    syslog_split,
)

REPORT_SCHEMA = 1
"""Version of the report JSON document (``report_schema``)."""

AUTH, UNAUTH, UNKNOWN = 1, 2, 3  # indexes into the per-key counter lists (see _bump)
RCPTS = 4  # offset of the recipient counts in those lists: [txns, auth, unauth, unknown, rcpts, ...]
REFUSING = ("reject", "tempfail")
REFUSED_OUTCOMES = frozenset(("rejected", "tempfailed"))  # the transaction was refused as a whole
DELIVERED_OUTCOMES = frozenset(("accepted", "quarantined"))  # the message was delivered
# What became of a transaction (see outcome_class): the index of Combo.tables.
DELIVERED, REFUSED, ABORTED = 0, 1, 2
TLS_RANK = {"SSLv2": 0, "SSLv3": 1, "TLSv1": 2, "TLSv1.1": 3, "TLSv1.2": 4, "TLSv1.3": 5}
FLOORS = ("TLSv1.2", "TLSv1.3")
PLAINTEXT = "plaintext"
LEGACY = frozenset(v for v, r in TLS_RANK.items() if r < TLS_RANK["TLSv1.2"])
BELOW_TOP = frozenset(v for v, r in TLS_RANK.items() if r < TLS_RANK[FLOORS[-1]])
MAX_EXAMPLES = 5
NO_TS = "~"  # above every timestamp: the first of none
MAX_NAMES = 5
UNKNOWN_CLIENT = "(unknown)"
# How a transaction's mail came (see mail_path): the key of AFFECTED.paths.
FORWARDED_ARC, MAILING_LIST, DIRECT = "forwarded_arc", "mailing_list", "direct"
PATHS = (FORWARDED_ARC, MAILING_LIST, DIRECT)
DIRECT_PATH = (DIRECT, "")
POLICY_ORDER = ("require_starttls", "tls_min_version", "spf", "dmarc", "arc")
"""The order of policies everywhere in the report (the milter's evaluation order); others follow by
name."""
_ORDER = {name: i for i, name in enumerate(POLICY_ORDER)}


def policy_order(name: str) -> tuple[int, str]:
    """Sort key: :data:`POLICY_ORDER`, then other policies by name."""
    return (_ORDER.get(name, len(_ORDER)), name)


def by_policy(counts: dict[str, Any]) -> dict[str, Any]:
    """``counts`` with its keys (policy names) in :func:`policy_order`."""
    return {k: counts[k] for k in sorted(counts, key=policy_order)}


def refused_today(outcome: str | None) -> bool:
    """Whether an enforce-mode policy refused the transaction as a whole: nothing of it can be lost
    by switching another policy to enforce. The hot path inlines this."""
    return outcome in REFUSED_OUTCOMES


def delivered_today(outcome: str | None) -> bool:
    """Whether the message was delivered today (outcome accepted or quarantined): only such mail
    can be lost by switching a policy to enforce. The hot path inlines this."""
    return outcome in DELIVERED_OUTCOMES


def outcome_class(outcome: str | None) -> int:
    """DELIVERED (:func:`delivered_today`), REFUSED (:func:`refused_today`), else ABORTED: the
    client or the MTA gave up (outcome aborted), or an outcome this report does not know."""
    if outcome in DELIVERED_OUTCOMES:
        return DELIVERED
    return REFUSED if outcome in REFUSED_OUTCOMES else ABORTED


def recipients(rcpt_count: int, rcpt_rejected: int, outcome: str | None, monitor: bool) -> int:
    """The recipients a refusal of one transaction concerns. A monitor-mode decision that would
    refuse the transaction would refuse the recipients it still had after RCPT: ``rcpt_count`` minus
    those an enforce-mode policy already refused at RCPT; they are lost when the transaction was
    delivered today (:func:`delivered_today`). An enforce-mode refusal refused all of a
    transaction refused as a whole (outcome rejected or tempfailed), else only the recipients
    refused at RCPT (the others were delivered). The hot path inlines this."""
    if monitor:
        return rcpt_count - rcpt_rejected
    return rcpt_count if refused_today(outcome) else rcpt_rejected


def parse_time(text: str, end_of_day: bool = False) -> str:
    """A date (``2026-11-20``) or RFC 3339 time as the canonical event timestamp string
    (``2026-11-20T00:00:00.000Z``) so that filters compare strings. A date given as an upper
    bound means the end of that day."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            if end_of_day:
                return day.strftime("%Y-%m-%dT23:59:59.999Z")
            return day.strftime("%Y-%m-%dT00:00:00.000Z")
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD) or RFC 3339 time: {text!r}") from None
    if dt.tzinfo is None:
        raise ValueError(f"time without a UTC offset (add 'Z' or '+HH:MM'): {text!r}")
    return canonical(dt)


def canonical(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z").fullmatch
# "2026-11-20T" -> "2026-11-20": timestamps starting so passed _CANONICAL. The day is one string
# object per day, whose hash is computed once, for the keys of the per-day counters.
_CANONICAL_DAYS: dict[str, str] = {}


def check_ts(ts: str) -> str | None:
    """The slow path of the timestamp test in ``Aggregator._consume`` (which takes a timestamp as
    it is when it has 24 characters, a ``.`` before the milliseconds and a day already seen in a
    canonical timestamp): the full check, remembering the day, or the timestamp parsed into the
    milter's form, or None."""
    if _CANONICAL(ts):
        if len(_CANONICAL_DAYS) < 100_000:
            _CANONICAL_DAYS.setdefault(ts[:11], ts[:10])
        return ts
    return normalise_ts(ts)


def normalise_ts(ts: str) -> str | None:
    """Event timestamps are canonical already; anything else is parsed (slow path)."""
    if _CANONICAL(ts):
        return ts
    try:
        dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return canonical(dt)


_NET_CACHE: dict[str, str] = {}


def client_network(ip: str) -> str:
    """/24 for IPv4, /48 for IPv6 (IPv4-mapped IPv6 counts as IPv4); the text itself if it is not
    an address."""
    net = _NET_CACHE.get(ip)
    if net is not None:
        return net
    try:
        addr = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        net = ip
    else:
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        prefix = 24 if addr.version == 4 else 48
        net = str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
    if len(_NET_CACHE) < 100_000:
        _NET_CACHE[ip] = net
    return net


def client_name(name: str | None, ip: str) -> str:
    """``name`` unless it is no name: empty, the MTA's ``unknown``, or the address itself as an
    MTA writes it without a PTR record (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``)."""
    if not name:
        return ""
    bare = name.strip().lower().strip("[]")
    if bare.startswith("ipv6:"):
        bare = bare[5:]
    if bare in ("", "unknown", ip.lower()):
        return ""
    return name


def sender_domain(ev: Event) -> str:
    if ev.header_from_domain:
        return ev.header_from_domain.lower()
    mf = ev.mail_from
    if mf is None:
        return "(unknown)"
    mf = mf.strip().strip("<>")
    if not mf:
        return "<> (null sender)"
    _, at, domain = mf.rpartition("@")
    return domain.lower() if at and domain else "(no domain)"


def auth_state(ev: Event) -> int:
    """AUTH when the message is authenticated (mail you would really lose), UNAUTH when the
    authentication fields say it is not, UNKNOWN when the event has no authentication fields."""
    if ev.authenticated:
        return AUTH
    dmarc = DMARC_DECODER.decode(ev.dmarc) if ev.dmarc else None
    if dmarc is not None and dmarc.result == "pass":
        return AUTH
    dkim = DKIM_DECODER.decode(ev.dkim) if ev.dkim else None
    if dkim:
        for sig in dkim:
            if sig.aligned and sig.result == "pass":
                return AUTH
    if ev.authenticated is None and dmarc is None and dkim is None:
        return UNKNOWN
    return UNAUTH


def mail_path(ev: Event) -> tuple[tuple[str, str], tuple[str, ...]]:
    """How the mail came, and the ARC chain's sealers (oldest first; ``()`` unless forwarded):
    ``(FORWARDED_ARC, newest sealer)`` for a valid ARC chain (``arc.result == "pass"``), else
    ``(MAILING_LIST, list id)`` for a message with a List-Id, else ``(DIRECT, "")``. Events
    written before ARC validation have neither field: direct."""
    arc = ARC_DECODER.decode(ev.arc) if ev.arc else None
    if arc is not None and arc.result == "pass":
        sealers = tuple(s.lower() for s in arc.sealers)
        return (FORWARDED_ARC, sealers[-1] if sealers else UNKNOWN_CLIENT), sealers
    if ev.list_id:
        return (MAILING_LIST, ev.list_id.lower()), ()
    return DIRECT_PATH, ()


def _ranked(counts: dict[str, list[int]], n: int) -> list[tuple[str, list[int]]]:
    """The ``n`` largest [transactions, recipients] pairs by transactions, then recipients, ties by
    name."""
    return sorted(counts.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[:n]


def _row() -> list[int]:
    """Counts by authentication state: [transactions, authenticated, unauthenticated, unknown], then
    the same four for recipients."""
    return [0] * 8


def _bump(table: dict[str, list[int]], key: str, state: int, n: int, r: int) -> None:
    row = table.get(key)
    if row is None:
        row = table[key] = _row()
    row[0] += n
    row[state] += n
    row[RCPTS] += r
    row[RCPTS + state] += r


def _split(row: list[int]) -> dict[str, int]:
    return {
        "transactions": row[0],
        "authenticated": row[1],
        "unauthenticated": row[2],
        "unknown": row[3],
        "recipients": row[4],
        "authenticated_recipients": row[5],
        "unauthenticated_recipients": row[6],
        "unknown_recipients": row[7],
    }


def _pair(counts: dict[Any, list[int]], key: Any, r: int) -> None:
    """``counts[key]``, a [transactions, recipients] pair, plus one transaction of ``r`` recipients.
    Updated in place: one hash of the key (a dict store would hash the tuple again), which keeps
    the recipients as cheap to count as the transactions alone were."""
    row = counts.get(key)
    if row is None:
        counts[key] = [1, r]
    else:
        row[0] += 1
        row[1] += r


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _top(table: dict[str, list[int]], n: int) -> list[tuple[str, list[int]]]:
    """The ``n`` rows with the most transactions, then authenticated ones, then recipients."""
    return sorted(table.items(), key=lambda kv: (-kv[1][0], -kv[1][1], -kv[1][RCPTS], kv[0]))[:n]


@dataclass
class Tables:
    total: list[int]  # see _row
    domains: dict[str, list[int]]
    clients: dict[str, list[int]]
    networks: dict[str, list[int]]
    network_names: dict[str, list[str]]


class Affected:
    """Transactions a policy refuses or would refuse, with their recipients, counted by (client IP,
    sender domain, authentication state) and by path (see :func:`mail_path`); the per-sender,
    per-client and per-network tables are derived at the end (:meth:`tables`), which keeps the
    per-transaction work to two dict updates."""

    def __init__(self, names: dict[str, str]):
        # (client IP, sender domain, auth state) -> [transactions, recipients]
        self.counts: dict[tuple[str, str, int], list[int]] = {}
        # (path, sealer or list id) -> [transactions, recipients]
        self.paths: dict[tuple[str, str], list[int]] = {}
        self.names = names  # client IP -> client name, shared by the whole aggregator
        self._tables: Tables | None = None

    def path_summary(self, top: int) -> dict[str, Any]:
        """AFFECTED.paths: the three paths' counts (they add up to the affected transactions and
        recipients), with the ``top`` sealers and list ids by count."""
        totals = {k: [0, 0] for k in PATHS}
        named: dict[str, dict[str, list[int]]] = {FORWARDED_ARC: {}, MAILING_LIST: {}}
        for (kind, name), (n, r) in self.paths.items():
            totals[kind][0] += n
            totals[kind][1] += r
            if kind in named:
                row = named[kind].setdefault(name, [0, 0])
                row[0] += n
                row[1] += r
        sealers, lists = named[FORWARDED_ARC], named[MAILING_LIST]
        return {
            FORWARDED_ARC: {
                "transactions": totals[FORWARDED_ARC][0],
                "recipients": totals[FORWARDED_ARC][1],
                "distinct_sealers": len(sealers),
                "sealers": [
                    {"sealer": k, "transactions": v[0], "recipients": v[1]} for k, v in _ranked(sealers, top)
                ],
            },
            MAILING_LIST: {
                "transactions": totals[MAILING_LIST][0],
                "recipients": totals[MAILING_LIST][1],
                "distinct_lists": len(lists),
                "lists": [
                    {"list_id": k, "transactions": v[0], "recipients": v[1]} for k, v in _ranked(lists, top)
                ],
            },
            DIRECT: {"transactions": totals[DIRECT][0], "recipients": totals[DIRECT][1]},
        }

    def tables(self) -> Tables:
        if self._tables is None:
            t = Tables(_row(), {}, {}, {}, {})
            total = t.total
            for (ip, domain, state), (n, r) in self.counts.items():
                total[0] += n
                total[state] += n
                total[RCPTS] += r
                total[RCPTS + state] += r
                _bump(t.domains, domain, state, n, r)
                _bump(t.clients, ip, state, n, r)
                if ip != UNKNOWN_CLIENT:
                    net = client_network(ip)
                    _bump(t.networks, net, state, n, r)
                    names = t.network_names.setdefault(net, [])
                    name = client_name(self.names.get(ip), ip) or ip
                    if len(names) < MAX_NAMES and name not in names:
                        names.append(name)
            self._tables = t
        return self._tables

    def summary(self, top: int) -> dict[str, Any]:
        t = self.tables()
        return {
            **_split(t.total),
            "clients": len(t.clients),
            "networks": len(t.networks),
            "sender_domains": len(t.domains),
            "top_sender_domains": [{"domain": k, **_split(v)} for k, v in _top(t.domains, top)],
            "top_clients": [
                {"ip": k, "name": self.names.get(k, ""), "network": client_network(k), **_split(v)}
                for k, v in _top(t.clients, top)
            ],
            "paths": self.path_summary(top),
        }


@dataclass
class PolicyStats:
    name: str
    transactions: int = 0
    recipients: int = 0
    modes: Counter[str] = field(default_factory=Counter)
    results: Counter[str] = field(default_factory=Counter)
    exempt: Counter[str] = field(default_factory=Counter)
    would: Counter[str] = field(default_factory=Counter)  # monitor mode: action -> count
    applied: Counter[str] = field(default_factory=Counter)  # enforce mode, applied: action -> count
    would_recipients: int = 0  # recipients of the transactions monitor mode would refuse
    # of those, the transactions neither delivered nor refused today (aborted), and their recipients
    would_aborted: int = 0
    would_aborted_recipients: int = 0
    refused_recipients: int = 0  # recipients enforce mode refused (see recipients())
    affected: Affected = field(default_factory=lambda: Affected({}))
    # what an exemption from the policy would keep (see the module docstring): the suggestions
    kept: Affected = field(default_factory=lambda: Affected({}))
    # day -> [transactions, would refuse, refused, recipients, would refuse rcpts, refused rcpts]
    daily: dict[str, list[int]] = field(default_factory=dict)
    overrides: Counter[str] = field(default_factory=Counter)  # override reason -> transactions
    # (override reason, details.override_by) -> [transactions, recipients]
    overrides_by: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def result(self, top: int) -> dict[str, Any]:
        seen = self.transactions
        would = self.would["reject"] + self.would["tempfail"]
        refused = self.applied["reject"] + self.applied["tempfail"]
        by = sorted(self.overrides_by.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[:top]
        return {
            "name": self.name,
            "transactions": seen,
            "recipients": self.recipients,
            "modes": dict(self.modes.most_common()),
            "results": dict(self.results.most_common()),
            "exempt": dict(self.exempt.most_common()),
            "would_reject": self.would["reject"],
            "would_tempfail": self.would["tempfail"],
            "would_quarantine": self.would["quarantine"],
            "would_refuse": would,
            "would_refuse_share": _share(would, seen),
            "would_refuse_recipients": self.would_recipients,
            "would_refuse_aborted": self.would_aborted,
            "would_refuse_aborted_recipients": self.would_aborted_recipients,
            "rejected": self.applied["reject"],
            "tempfailed": self.applied["tempfail"],
            "quarantined": self.applied["quarantine"],
            "refused": refused,
            "refused_share": _share(refused, seen),
            "refused_recipients": self.refused_recipients,
            "affected": self.affected.summary(top),
            "overrides": dict(sorted(self.overrides.items(), key=lambda kv: (-kv[1], kv[0]))),
            "overrides_by": [
                {"override": reason, "by": name, "transactions": n, "recipients": r}
                for (reason, name), (n, r) in by
            ],
            "daily": [
                {
                    "date": d,
                    "transactions": r[0],
                    "would_refuse": r[1],
                    "refused": r[2],
                    "recipients": r[3],
                    "would_refuse_recipients": r[4],
                    "refused_recipients": r[5],
                }
                for d, r in sorted(self.daily.items())
            ],
        }


@dataclass
class FloorStats:
    """What raising the MTA's TLS floor to ``floor`` would do: clients below it fail the
    handshake and (usually) retry in plaintext; with require_starttls enforced, that mail is lost
    when it was delivered today (see :func:`delivered_today`: mail enforce mode refused today or
    that was aborted is not lost by the switch), except what a require_starttls exemption keeps."""

    floor: str
    sessions: int = 0
    clients: dict[str, list[int]] = field(default_factory=dict)  # ip -> _row()
    domains: dict[str, list[int]] = field(default_factory=dict)
    transactions: list[int] = field(default_factory=_row)
    lost: list[int] = field(default_factory=_row)
    lost_clients: dict[str, list[int]] = field(default_factory=dict)
    kept_exempt: Counter[str] = field(default_factory=Counter)

    def add(
        self, ip: str, domain: str, state: int, exempt: str | None, delivered: bool, n: int, r: int
    ) -> None:
        """``n`` transactions of ``r`` recipients (those left after RCPT) below the floor;
        ``delivered``: delivered today."""
        lost = exempt is None and delivered
        for row in (self.transactions, self.lost) if lost else (self.transactions,):
            row[0] += n
            row[state] += n
            row[RCPTS] += r
            row[RCPTS + state] += r
        _bump(self.clients, ip, state, n, r)
        _bump(self.domains, domain, state, n, r)
        if lost:
            _bump(self.lost_clients, ip, state, n, r)
        elif exempt is not None and delivered:
            self.kept_exempt[exempt] += n

    def result(self, top: int, names: dict[str, str]) -> dict[str, Any]:
        return {
            "floor": self.floor,
            "sessions": self.sessions,
            "transactions": _split(self.transactions),
            "clients": len(self.clients),
            "sender_domains": len(self.domains),
            "top_clients": [
                {"ip": k, "name": names.get(k, ""), **_split(v)} for k, v in _top(self.clients, top)
            ],
            "top_sender_domains": [{"domain": k, **_split(v)} for k, v in _top(self.domains, top)],
            "with_require_starttls": {
                "lost": _split(self.lost),
                "lost_clients": len(self.lost_clients),
                "kept_by_exemption": dict(self.kept_exempt.most_common()),
            },
        }


MAX_COMBOS = 50_000
"""Distinct raw policy objects cached (bounded memory: the cache is emptied when full)."""
MAX_DECODED = 20_000
"""Distinct raw authentication and ARC objects whose meaning (:func:`auth_state`,
:func:`mail_path`) is cached, each cache emptied when full."""


K = TypeVar("K")
V = TypeVar("V")


def _cached(cache: dict[K, V], key: K, compute: Callable[[Event], V], ev: Event) -> V:
    """``compute(ev)``, remembered under ``key`` in ``cache``, which is emptied when it holds
    MAX_DECODED entries."""
    found = cache.get(key)
    if found is None:
        found = compute(ev)
        if len(cache) >= MAX_DECODED:
            cache.clear()
        cache[key] = found
    return found


@dataclass(frozen=True, slots=True)
class Combo:
    """What the hot path needs of one policy combination (a transaction's decisions), worked out
    once when the combination is first seen."""

    pid: int
    # By what became of the transaction (DELIVERED, REFUSED, ABORTED; see outcome_class), the
    # Affected tables it is counted in: those of the policies that refuse or would refuse, each
    # with True when it is an enforce-mode policy that refused (applied), False for a monitor-mode
    # one that would refuse; then the ``kept`` tables of the policies an exemption would keep it
    # from (see the module docstring); then, delivered, the combined scenario's (False) when a
    # monitor-mode policy would refuse. All empty when no policy refuses or would.
    tables: tuple[tuple[tuple[Affected, bool], ...], ...]
    lost_by: tuple[str, ...]  # monitor-mode policies that would refuse
    enforced: bool  # an enforce-mode policy refused (applied)
    starttls_exempt: str | None
    # the dmarc policy refuses (False) or would refuse (True) a DMARC fail (a sealer could vouch);
    # None when it does neither
    dmarc_fail: bool | None
    # by outcome class: whether trusting a sealer (an exemption from dmarc) would keep that fail
    dmarc_kept: tuple[bool, ...]
    overridden: bool  # a decision has an override (see Aggregator.overrides_by)


@dataclass(slots=True)
class TxnRow:
    """The transactions of one (host, day, policy combination, outcome): how many, the sums of
    their ``rcpt_count`` and ``rcpt_rejected``, and the first and last timestamp (the host's
    span derives from these)."""

    n: int
    rc: int
    rr: int
    first: str
    last: str


@dataclass(slots=True)
class ConnRow:
    """The connections of one (host, day, TLS version, cipher): how many, first and last
    timestamp."""

    n: int
    first: str
    last: str


@dataclass
class HostStats:
    events: int = 0
    connections: int = 0
    transactions: int = 0
    recipients: int = 0
    would_lose: int = 0
    would_lose_recipients: int = 0
    refused: int = 0
    refused_recipients: int = 0
    first: str = ""
    last: str = ""


@dataclass
class SourceStats:
    name: str
    lines: int = 0
    events: int = 0
    malformed: int = 0
    error: str | None = None


@dataclass
class Options:
    since: str | None = None
    until: str | None = None
    policies: frozenset[str] = frozenset()
    hosts: frozenset[str] = frozenset()
    top: int = 10
    our_domains: tuple[str, ...] = ()
    """Domains we receive mail for (``--our-domain``): the look-alike senders section finds From
    domains imitating them; empty: guessed from the events' host names."""


class Aggregator:
    """Folds events into counters. The hot path does two dict updates per transaction, keyed by
    small tuples: (host, day, policy combination, outcome) with the recipient sums, and (TLS version,
    cipher); a connection is one. The per-sender tables are only touched for the transactions that
    a policy refuses or would refuse, or that are below a simulated TLS floor."""

    def __init__(self, options: Options | None = None):
        self.opt = options or Options()
        self.lookalikes = Collector(self.opt.our_domains)
        self.sources: list[SourceStats] = []
        self.lines = 0
        self.blank = 0
        self.non_event = 0
        self.malformed = 0
        self.malformed_examples: list[dict[str, Any]] = []
        self.unsupported_schema: Counter[int] = Counter()
        self.unknown_event_types: Counter[str] = Counter()
        self.filtered_out = 0
        # first and last ts of the events the filters left out (NO_TS and "": none yet)
        self.filtered_first = NO_TS
        self.filtered_last = ""
        # (host, day, policy combination id, outcome) -> transactions, rcpt_count and rcpt_rejected
        # sums, first and last ts; see _combo. Hosts, days, outcomes and every policy's counts
        # derive from it.
        self.decisions: dict[tuple[str, str, int, str | None], TxnRow] = {}
        self._combos: dict[bytes, Combo] = {}
        # The policies object of the last transaction and its combination: one transaction in two
        # has the same object as the one before, and comparing it is cheaper than hashing it.
        self._last: tuple[msgspec.Raw | None, Combo | None] = (None, None)
        self._by_decisions: dict[tuple[tuple[str, PolicyRec], ...], Combo] = {}
        self._combo_ids: dict[tuple[tuple[str, PolicyRec], ...], int] = {}
        self._combo_items: list[tuple[tuple[str, PolicyRec], ...]] = []
        # combinations a monitor-mode policy would refuse: lost in the combined scenario when
        # delivered today (the outcome, in the key of ``decisions``)
        self._lost_pids: set[int] = set()
        # (tls version, cipher) -> [transactions]
        self.txns: dict[tuple[str, str | None], list[int]] = {}
        # (host, day, tls version, cipher) -> connections, first and last ts
        self.conns: dict[tuple[str, str, str, str | None], ConnRow] = {}
        self.names: dict[str, str] = {}  # client IP -> first client name seen, for affected clients
        self.affected: dict[str, Affected] = {}
        self.kept: dict[str, Affected] = {}  # policy -> what an exemption from it would keep
        self.combined = Affected(self.names)  # the lost transactions
        # policy -> [transactions, recipients] lost that it alone / it (among others) would refuse
        self.combined_solely: dict[str, list[int]] = {}
        self.combined_policies: dict[str, list[int]] = {}
        # (ip, version) -> sessions below TLS 1.2
        self.legacy_sessions: dict[tuple[str, str], int] = {}
        # (version, ip, sender domain, auth state, require_starttls exemption, delivered today) ->
        # [transactions, recipients] below the highest simulated floor
        self.below: dict[tuple[str, str, str, int, str | None, bool], list[int]] = {}
        # DMARC failures the dmarc policy refuses or would refuse that came with a valid ARC chain,
        # that trusting a sealer would keep (see Combo.dmarc_kept): (newest sealer, sender domain) ->
        # [transactions, recipients], and (newest sealer, an earlier sealer of the chain) ->
        # transactions; the trusted_arc_sealers suggestions (see suggest.py)
        self.arc_refused: dict[tuple[str, str], list[int]] = {}
        self.arc_earlier: dict[tuple[str, str], int] = {}
        # (policy, override reason, details.override_by) -> [transactions, recipients]
        self.overrides_by: dict[tuple[str, str, str], list[int]] = {}
        # auth_state and mail_path by the raw objects they read: a sender's mail repeats them
        self._auth_states: dict[tuple[bool | None, bytes, bytes], int] = {}
        self._paths: dict[tuple[bytes, str | None], tuple[tuple[str, str], tuple[str, ...]]] = {}

    # ---- input ----

    def add_source(self, name: str, stdin: IO[bytes] | None = None) -> None:
        src = SourceStats("<stdin>" if name == "-" else name)
        self.sources.append(src)
        try:
            with open_source(name, stdin) as fh:
                self._consume(src, fh)
        except (OSError, EOFError) as exc:
            # Unreadable file or truncated gzip stream: keep what was read, say what happened.
            src.error = f"{type(exc).__name__}: {exc}"

    def _consume(self, src: SourceStats, fh: IO[bytes]) -> None:
        decode = DECODER.decode
        since, until = self.opt.since, self.opt.until
        hosts = self.opt.hosts
        filtering = bool(since or until or hosts)
        on_txn, on_legacy = self._transaction, self._legacy
        conns = self.conns
        days = _CANONICAL_DAYS
        n = src.lines
        events = 0
        filtered_first, filtered_last = self.filtered_first, self.filtered_last
        try:
            for line in fh:
                n += 1
                try:
                    ev = decode(line)
                except DecodeError as exc:
                    salvaged = self._undecodable(src, n, line, exc)
                    if salvaged is None:
                        continue
                    ev = salvaged
                kind_ = ev.event
                if kind_ is None:
                    self.non_event += 1
                    continue
                if ev.schema != EVENT_SCHEMA:
                    if ev.schema is None:
                        self._malformed(src, n, "event without 'schema'")
                    else:
                        self.unsupported_schema[ev.schema] += 1
                    continue
                ts = ev.ts
                day = days.get(ts[:11])
                if day is None or len(ts) != 24 or ts[19] != ".":
                    fixed = check_ts(ts)
                    if fixed is None:
                        self._malformed(src, n, f"bad 'ts': {ts!r}")
                        continue
                    ev.ts = ts = fixed
                    day = days.get(ts[:11]) or ts[:10]
                if filtering and (
                    (since and ts < since) or (until and ts > until) or (hosts and ev.host not in hosts)
                ):
                    self.filtered_out += 1
                    if ts < filtered_first:
                        filtered_first = ts
                    if ts > filtered_last:
                        filtered_last = ts
                    continue
                if kind_ == "transaction":
                    try:
                        on_txn(ev, day)
                    except DecodeError as exc:  # a policies object of the wrong shape
                        self._malformed(src, n, str(exc))
                        continue
                elif kind_ == "connection":
                    # counted here rather than in a method of its own: half the events
                    version = (ev.tls_version or "unknown") if ev.starttls else PLAINTEXT
                    key = (ev.host, day, version, ev.tls_cipher)
                    row = conns.get(key)
                    if row is None:
                        conns[key] = ConnRow(1, ts, ts)
                    else:
                        row.n += 1
                        if ts > row.last:
                            row.last = ts
                        elif ts < row.first:
                            row.first = ts
                    if version in LEGACY:
                        on_legacy(ev, version)
                else:
                    self.unknown_event_types[kind_] += 1
                    continue
                events += 1
        finally:
            src.lines = n
            src.events += events
            self.lines += n
            self.filtered_first, self.filtered_last = filtered_first, filtered_last

    def _undecodable(self, src: SourceStats, lineno: int, line: bytes, exc: Exception) -> Event | None:
        """Slow path for a line the typed decoder refused: a ``<N>`` priority, or the prefix of one
        of mailpolicy's syslog lines (``--input-format lines`` given ``journalctl -o short`` or
        /var/log/mail.log) is stripped (:func:`~mailpolicy.report.reader.event_json`), never JSON
        inside another program's message; otherwise the line is counted as blank, non-event
        (diagnostics, another program's syslog line), unsupported schema or malformed."""
        if not line.strip():
            self.blank += 1
            return None
        if line.startswith(NOT_SYSLOG_LINE):
            self._malformed(
                src,
                lineno,
                "not a syslog line (syslog input: only the message after mailpolicy's tag is read)",
            )
            return None
        idents = current_idents()
        payload = event_json(line, idents)
        if payload is None:
            if syslog_split(line, idents)[0] == OTHER:  # another program's syslog line (lines input)
                self.non_event += 1
                return None
        elif payload is not line:
            if not payload.strip():
                self.blank += 1
                return None
            try:
                return DECODER.decode(payload)
            except DecodeError:
                line = payload
        kind, schema = classify_undecodable(line)
        if kind == "non_event":
            self.non_event += 1
        elif kind == "schema":
            self.unsupported_schema[schema or 0] += 1
        else:
            self._malformed(src, lineno, str(exc))
        return None

    def _malformed(self, src: SourceStats, lineno: int, error: str) -> None:
        self.malformed += 1
        src.malformed += 1
        if len(self.malformed_examples) < MAX_EXAMPLES:
            self.malformed_examples.append({"source": src.name, "line": lineno, "error": error[:200]})

    # ---- connection events ----

    def _legacy(self, ev: Event, version: str) -> None:
        """A connection below TLS 1.2 (the connection itself is counted in ``_consume``)."""
        ip = ev.client_ip or UNKNOWN_CLIENT
        if ip not in self.names:
            self.names[ip] = ev.client_name or ""
        lkey = (ip, version)
        self.legacy_sessions[lkey] = self.legacy_sessions.get(lkey, 0) + 1

    # ---- transaction events ----

    def _combo(self, raw: bytes) -> Combo:
        """The decoded policies object of a transaction, cached by its raw JSON (most
        transactions repeat one of a few hundred distinct policy objects) and, when the raw JSON
        is new (e.g. per-message ``details``), by the decoded decisions."""
        decoded = POLICIES_DECODER.decode(raw) or {}
        key = tuple(decoded.items())
        combo = self._by_decisions.get(key)
        if combo is None:
            combo = self._make_combo(decoded)
            if len(self._by_decisions) < MAX_COMBOS:
                self._by_decisions[key] = combo
        if len(self._combos) >= MAX_COMBOS:
            # Raw objects with per-message details can all differ: start the cache afresh so that
            # memory stays bounded and the frequent objects come back.
            self._combos.clear()
        self._combos[raw] = combo
        return combo

    def _make_combo(self, decoded: dict[str, PolicyRec]) -> Combo:
        wanted = self.opt.policies
        items = tuple((k, d) for k, d in decoded.items() if not wanted or k in wanted)
        pid = self._combo_ids.get(items)
        if pid is None:
            pid = self._combo_ids[items] = len(self._combo_items)
            self._combo_items.append(items)
        acting = tuple(
            (k, d)
            for k, d in items
            if d.action in REFUSING and (d.mode == "monitor" or (d.mode == "enforce" and d.applied))
        )
        lost_by = tuple(k for k, d in acting if d.mode == "monitor")
        if lost_by:
            self._lost_pids.add(pid)
        # Every enforce-mode decision that refuses, applied or not (only the strongest is applied;
        # the others would refuse without it), also of the policies --policy leaves out.
        enforcing = [k for k, d in decoded.items() if d.mode == "enforce" and d.action in REFUSING]
        rs = decoded.get("require_starttls")
        dmarc_fail = next(
            (d.mode == "monitor" for k, d in acting if k == "dmarc" and d.result == "fail"), None
        )
        overridden = any(d.override is not None for _, d in items)
        affected, kept = self.affected, self.kept
        tables = tuple(
            (affected.get(k) or affected.setdefault(k, Affected(self.names)), d.mode != "monitor")
            for k, d in acting
        )

        def keeps(k: str, d: PolicyRec, outcome: int) -> bool:
            """Whether an exemption from ``k`` would keep a transaction of that outcome class."""
            if d.mode == "monitor":
                return outcome == DELIVERED
            return outcome != ABORTED and enforcing == [k]

        by_outcome = []
        for outcome in (DELIVERED, REFUSED, ABORTED):
            kept_tables = tuple(
                (kept.get(k) or kept.setdefault(k, Affected(self.names)), d.mode != "monitor")
                for k, d in acting
                if keeps(k, d, outcome)
            )
            lost = ((self.combined, False),) if lost_by and outcome == DELIVERED else ()
            by_outcome.append((*tables, *kept_tables, *lost))
        dmarc = next((d for k, d in acting if k == "dmarc"), None)
        return Combo(
            pid,
            tuple(by_outcome),
            lost_by,
            any(d.mode != "monitor" for _, d in acting),
            rs.exempt if rs is not None else None,
            dmarc_fail,
            tuple(dmarc is not None and keeps("dmarc", dmarc, o) for o in (DELIVERED, REFUSED, ABORTED)),
            overridden,
        )

    def _transaction(self, ev: Event, day: str) -> None:
        policies = ev.policies
        last, combo = self._last
        if combo is None or policies != last:
            raw = bytes(policies)
            combo = self._combos.get(raw)
            if combo is None:
                combo = self._combo(raw)
            self._last = (policies, combo)
        version = (ev.tls_version or "unknown") if ev.starttls else PLAINTEXT
        rc, rr = ev.rcpt_count, ev.rcpt_rejected
        if rr > rc:
            rr = rc  # inconsistent counts: no more refused than seen
        live = rc - rr  # what refusing the whole message would lose (see recipients())
        # Everything is decoded before anything is counted: an object of the wrong shape makes the
        # line malformed, never half-counted.
        vouched = self._vouched(policies) if combo.overridden else ()
        below = version in BELOW_TOP
        acting = combo.tables[DELIVERED]  # empty when no policy refuses or would
        if acting or below:
            # Who is affected: one key per (client, sender domain, auth state).
            ip = ev.client_ip or UNKNOWN_CLIENT
            sender = ev.header_from_domain
            sender = sender.lower() if sender else sender_domain(ev)
            state = AUTH if ev.authenticated else self._auth_state(ev)
            outcome = ev.outcome
            if outcome in DELIVERED_OUTCOMES:  # outcome_class, inlined
                cls = DELIVERED
            else:
                cls = REFUSED if outcome in REFUSED_OUTCOMES else ABORTED
            if acting:
                self._acting(ev, combo, (ip, sender, state), rc, rr, live, cls)
            if ip not in self.names:
                self.names[ip] = ev.client_name or ""
            if below:
                bkey = (version, ip, sender, state, combo.starttls_exempt, cls == DELIVERED)
                row = self.below.get(bkey)  # _pair, inlined
                if row is None:
                    self.below[bkey] = [1, live]
                else:
                    row[0] += 1
                    row[1] += live
        if vouched:
            for vkey in vouched:
                _pair(self.overrides_by, vkey, live)
        key = (ev.host, day, combo.pid, ev.outcome)
        ts = ev.ts
        trow = self.decisions.get(key)
        if trow is None:
            self.decisions[key] = TxnRow(1, rc, rr, ts, ts)
        else:
            trow.n += 1
            trow.rc += rc
            if rr:
                trow.rr += rr
            if ts > trow.last:
                trow.last = ts
            elif ts < trow.first:
                trow.first = ts
        tkey = (version, ev.tls_cipher)
        row = self.txns.get(tkey)
        if row is None:
            self.txns[tkey] = [1]
        else:
            row[0] += 1
        # Look-alike senders: Collector.add_event, but a From domain already judged neither ours
        # nor a look-alike, from a host the collector looked at already, is only counted.
        look = self.lookalikes
        from_domain = ev.header_from_domain
        if (
            from_domain
            and look.verdicts.get(from_domain) is False
            and (ev.host in look.hosts or not look.watch_hosts)
        ):
            look.transactions += 1
        else:
            look.add_event(ev)

    def _acting(
        self,
        ev: Event,
        combo: Combo,
        who: tuple[str, str, int],
        rc: int,
        rr: int,
        live: int,
        cls: int,
    ) -> None:
        """A transaction that policies refuse or would refuse, from ``who``, of outcome class
        ``cls`` (see :func:`outcome_class`): counted per policy, in what exemptions would keep and,
        when it was delivered today, as lost in the combined scenario (``combo.tables[cls]``: a row
        in ``counts`` and one in ``paths`` of each Affected table, ``_pair`` inlined), by how the
        mail came. A monitor-mode policy's table counts the recipients the message had after RCPT
        (``live``), an enforce-mode one's those it refused."""
        path, chain = self._mail_path(ev)
        acting = combo.tables[cls]
        # recipients an enforce-mode refusal refused (see recipients())
        whole = (rc if cls == REFUSED else rr) if combo.enforced else live
        for aff, enforced in acting:
            r = whole if enforced else live
            row = aff.counts.get(who)
            if row is None:
                aff.counts[who] = [1, r]
            else:
                row[0] += 1
                row[1] += r
            row = aff.paths.get(path)
            if row is None:
                aff.paths[path] = [1, r]
            else:
                row[0] += 1
                row[1] += r
        lost_by = combo.lost_by
        if lost_by and cls == DELIVERED:
            if len(lost_by) == 1:
                _pair(self.combined_solely, lost_by[0], live)
            for name in lost_by:
                _pair(self.combined_policies, name, live)
        if combo.dmarc_fail is not None and path[0] == FORWARDED_ARC and combo.dmarc_kept[cls]:
            self._arc_refused(path[1], who[1], chain, live if combo.dmarc_fail else whole)

    def _auth_state(self, ev: Event) -> int:
        """:func:`auth_state`, cached by what it reads."""
        return _cached(self._auth_states, (ev.authenticated, bytes(ev.dmarc), bytes(ev.dkim)), auth_state, ev)

    def _mail_path(self, ev: Event) -> tuple[tuple[str, str], tuple[str, ...]]:
        """:func:`mail_path`, cached by what it reads."""
        return _cached(self._paths, (bytes(ev.arc), ev.list_id), mail_path, ev)

    def _vouched(self, raw: msgspec.Raw) -> list[tuple[str, str, str]]:
        """(policy, override reason, details.override_by) of each overridden decision: who
        vouched for it (a network, an ARC sealer, a list id)."""
        wanted = self.opt.policies
        out = []
        for name, d in (OVERRIDES_DECODER.decode(raw) or {}).items():
            by = d.details.override_by if d.details is not None else None
            if d.override and by and (not wanted or name in wanted):
                out.append((name, d.override, by))
        return out

    def _arc_refused(self, sealer: str, domain: str, chain: tuple[str, ...], r: int) -> None:
        _pair(self.arc_refused, (sealer, domain), r)
        for earlier in set(chain[:-1]) - {sealer}:
            ekey = (sealer, earlier)
            self.arc_earlier[ekey] = self.arc_earlier.get(ekey, 0) + 1

    # ---- output ----

    def _by_day(self) -> dict[tuple[str, int, int], list[int]]:
        """``decisions`` without the host: (day, policy combination, outcome class) ->
        [transactions, rcpt_count, rcpt_rejected]."""
        out: dict[tuple[str, int, int], list[int]] = {}
        for (_, day, pid, outcome), t in self.decisions.items():
            row = out.setdefault((day, pid, outcome_class(outcome)), [0, 0, 0])
            row[0] += t.n
            row[1] += t.rc
            row[2] += t.rr
        return out

    def policy_stats(self) -> dict[str, PolicyStats]:
        out: dict[str, PolicyStats] = {}
        for (day, pid, cls), (n, rc, rr) in self._by_day().items():
            for name, d in self._combo_items[pid]:
                self._add_decision(out, name, day, d, n, rc, rc if cls == REFUSED else rr, rc - rr, cls)
        for (name, reason, by), nr in self.overrides_by.items():
            if name in out:
                out[name].overrides_by[(reason, by)] = nr
        return out

    def _add_decision(
        self,
        out: dict[str, PolicyStats],
        name: str,
        day: str,
        d: PolicyRec,
        n: int,
        rc: int,
        refused_r: int,
        live: int,
        cls: int,
    ) -> None:
        """``n`` transactions of outcome class ``cls`` with ``rc`` recipients, ``refused_r`` of them
        refused and ``live`` still there after RCPT (see :func:`recipients`), that ``name`` decided
        ``d``."""
        ps = out.get(name)
        if ps is None:
            ps = out[name] = PolicyStats(
                name,
                affected=self.affected.get(name) or Affected(self.names),
                kept=self.kept.get(name) or Affected(self.names),
            )
        ps.transactions += n
        ps.recipients += rc
        ps.modes[d.mode] += n
        ps.results[d.result] += n
        if d.exempt is not None:
            ps.exempt[d.exempt] += n
        if d.override is not None:
            ps.overrides[d.override] += n
        row = ps.daily.get(day)
        if row is None:
            row = ps.daily[day] = [0, 0, 0, 0, 0, 0]
        row[0] += n
        row[3] += rc
        if d.action == "continue":
            return
        if d.mode == "monitor":
            ps.would[d.action] += n
            if d.action in REFUSING:
                row[1] += n
                row[4] += live
                ps.would_recipients += live
                if cls == ABORTED:
                    ps.would_aborted += n
                    ps.would_aborted_recipients += live
        elif d.applied:
            ps.applied[d.action] += n
            if d.action in REFUSING:
                row[2] += n
                row[5] += refused_r
                ps.refused_recipients += refused_r

    @property
    def spans(self) -> dict[str, list[str]]:
        """host -> [first ts, last ts] of its events."""
        rows: list[tuple[str, TxnRow | ConnRow]] = [(k[0], r) for k, r in self.decisions.items()]
        rows += [(k[0], r) for k, r in self.conns.items()]
        spans: dict[str, list[str]] = {}
        for host, r in rows:
            span = spans.get(host)
            if span is None:
                spans[host] = [r.first, r.last]
            else:
                span[0] = min(span[0], r.first)
                span[1] = max(span[1], r.last)
        return spans

    @property
    def first(self) -> str:
        return min((s[0] for s in self.spans.values()), default="")

    @property
    def last(self) -> str:
        return max((s[1] for s in self.spans.values()), default="")

    def result(self) -> dict[str, Any]:
        from mailpolicy.report.suggest import sealer_suggestions, suggestions, suggestions_toml

        top = self.opt.top
        stats = self.policy_stats()
        policies = [stats[k].result(top) for k in sorted(stats, key=policy_order)]

        hosts: dict[str, HostStats] = {}
        outcomes: Counter[str] = Counter()
        # day -> [transactions, lost, refused, recipients, lost rcpts, refused rcpts]
        comb_daily: dict[str, list[int]] = {}
        lost_pids = self._lost_pids
        for (host, day, pid, outcome), t in self.decisions.items():
            n, rc, rr = t.n, t.rc, t.rr
            h = hosts.get(host)
            if h is None:
                h = hosts[host] = HostStats()
            h.events += n
            h.transactions += n
            h.recipients += rc
            outcomes[outcome or "unknown"] += n
            row = comb_daily.get(day)
            if row is None:
                row = comb_daily[day] = [0, 0, 0, 0, 0, 0]
            row[0] += n
            row[3] += rc
            if outcome in REFUSED_OUTCOMES:  # refused today: never lost (see refused_today)
                row[2] += n
                h.refused += n
                refused_r = rc
            else:
                refused_r = rr
                if pid in lost_pids and outcome in DELIVERED_OUTCOMES:  # see delivered_today
                    row[1] += n
                    row[4] += rc - rr
                    h.would_lose += n
                    h.would_lose_recipients += rc - rr
            row[5] += refused_r
            h.refused_recipients += refused_r
        txn_tls: Counter[str] = Counter()
        txn_cipher: Counter[tuple[str, str]] = Counter()
        for (version, cipher), (n,) in self.txns.items():
            txn_tls[version] += n
            txn_cipher[(version, cipher or "")] += n
        conn_tls: Counter[str] = Counter()
        conn_cipher: Counter[tuple[str, str]] = Counter()
        tls_daily: dict[str, Counter[str]] = {}
        for (host, day, version, cipher), c in self.conns.items():
            n = c.n
            h = hosts.setdefault(host, HostStats())
            h.events += n
            h.connections += n
            conn_tls[version] += n
            conn_cipher[(version, cipher or "")] += n
            tls_daily.setdefault(day, Counter())[version] += n
        for host, (first, last) in self.spans.items():
            if host in hosts:
                hosts[host].first, hosts[host].last = first, last
        n_txns = sum(txn_tls.values())
        n_conns = sum(conn_tls.values())
        n_rcpts = sum(h.recipients for h in hosts.values())
        n_refused_r = sum(h.refused_recipients for h in hosts.values())

        lost = self.combined.tables().total
        combined_doc = {
            "policies": [p["name"] for p in policies if p["modes"].get("monitor")],
            "transactions": n_txns,
            "recipients": n_rcpts,
            "lost": lost[0],
            "lost_share": _share(lost[0], n_txns),
            "lost_recipients": lost[RCPTS],
            "lost_recipients_share": _share(lost[RCPTS], n_rcpts),
            "lost_by_policy": by_policy({k: v[0] for k, v in self.combined_policies.items()}),
            "lost_only_by_policy": by_policy({k: v[0] for k, v in self.combined_solely.items()}),
            "lost_recipients_by_policy": by_policy({k: v[1] for k, v in self.combined_policies.items()}),
            "lost_recipients_only_by_policy": by_policy({k: v[1] for k, v in self.combined_solely.items()}),
            "already_refused": outcomes["rejected"] + outcomes["tempfailed"],
            "already_refused_recipients": n_refused_r,
            "affected": self.combined.summary(top),
            "daily": [
                {
                    "date": d,
                    "transactions": r[0],
                    "lost": r[1],
                    "refused": r[2],
                    "recipients": r[3],
                    "lost_recipients": r[4],
                    "refused_recipients": r[5],
                }
                for d, r in sorted(comb_daily.items())
            ],
        }
        sugg = suggestions(stats, top)
        sealers = sealer_suggestions(self, stats, top)
        doc: dict[str, Any] = {
            "report_schema": REPORT_SCHEMA,
            "generated": canonical(datetime.now(UTC)),
            "mailpolicy_version": __version__,
            "event_schema": EVENT_SCHEMA,
            "filters": {
                "since": self.opt.since,
                "until": self.opt.until,
                "policies": sorted(self.opt.policies),
                "hosts": sorted(self.opt.hosts),
                "top": top,
            },
            "period": {"first": self.first or None, "last": self.last or None},
            "combined": combined_doc,
            "policies": policies,
            "suggestions": sugg,
            "sealer_suggestions": sealers,
            "suggestions_toml": suggestions_toml(sugg, self, stats, sealers),
            "lookalikes": lookalikes_json(self.lookalikes.result(top)),
            "tls": self._tls_result(top, conn_tls, conn_cipher, txn_tls, txn_cipher, tls_daily),
            "hosts": [
                {
                    "host": name,
                    "events": h.events,
                    "connections": h.connections,
                    "transactions": h.transactions,
                    "recipients": h.recipients,
                    "refused": h.refused,
                    "refused_recipients": h.refused_recipients,
                    "would_lose": h.would_lose,
                    "would_lose_recipients": h.would_lose_recipients,
                    "first": h.first,
                    "last": h.last,
                }
                for name, h in sorted(hosts.items())
            ],
            "totals": {
                "connections": n_conns,
                "transactions": n_txns,
                "recipients": n_rcpts,
                "refused_recipients": n_refused_r,
                "outcomes": dict(outcomes.most_common()),
            },
            "input": {
                "sources": [
                    {
                        "name": s.name,
                        "lines": s.lines,
                        "events": s.events,
                        "malformed": s.malformed,
                        "error": s.error,
                    }
                    for s in self.sources
                ],
                "lines": self.lines,
                "events": sum(s.events for s in self.sources),
                "blank_lines": self.blank,
                "non_event_lines": self.non_event,
                "malformed_lines": self.malformed,
                "malformed_examples": self.malformed_examples,
                "unsupported_schema": {str(k): v for k, v in sorted(self.unsupported_schema.items())},
                "unknown_event_types": dict(self.unknown_event_types.most_common()),
                "filtered_out": self.filtered_out,
                "filtered_out_period": {
                    "first": self.filtered_first if self.filtered_out else None,
                    "last": self.filtered_last if self.filtered_out else None,
                },
            },
        }
        return doc

    def _tls_result(
        self,
        top: int,
        conn_tls: Counter[str],
        conn_cipher: Counter[tuple[str, str]],
        txn_tls: Counter[str],
        txn_cipher: Counter[tuple[str, str]],
        tls_daily: dict[str, Counter[str]],
    ) -> dict[str, Any]:
        def versions(c: Counter[str]) -> list[dict[str, Any]]:
            total = sum(c.values())
            return [
                {"version": v, "count": n, "share": _share(n, total)}
                for v, n in sorted(c.items(), key=lambda kv: (-_version_rank(kv[0]), kv[0]))
            ]

        def ciphers(c: Counter[tuple[str, str]]) -> list[dict[str, Any]]:
            total = sum(c.values())
            return [
                {"version": v, "cipher": ci or None, "count": n, "share": _share(n, total)}
                for (v, ci), n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
            ]

        def kind(c: Counter[str], cc: Counter[tuple[str, str]]) -> dict[str, Any]:
            total = sum(c.values())
            return {
                "total": total,
                "plaintext": c[PLAINTEXT],
                "plaintext_share": _share(c[PLAINTEXT], total),
                "by_version": versions(c),
                "by_cipher": ciphers(cc),
            }

        floors = {f: FloorStats(f) for f in FLOORS}
        for f in floors.values():
            f.sessions = sum(n for v, n in conn_tls.items() if TLS_RANK.get(v, 99) < TLS_RANK[f.floor])
        # ip -> [sessions, transactions] below TLS 1.2, and the versions seen
        legacy: dict[str, list[int]] = {}
        legacy_versions: dict[str, set[str]] = {}
        for (ip, version), n in self.legacy_sessions.items():
            legacy.setdefault(ip, [0, 0])[0] += n
            legacy_versions.setdefault(ip, set()).add(version)
        for (version, ip, domain, state, exempt, delivered), (n, r) in self.below.items():
            rank = TLS_RANK[version]
            for f in floors.values():
                if rank < TLS_RANK[f.floor]:
                    f.add(ip, domain, state, exempt, delivered, n, r)
            if version in LEGACY:
                legacy.setdefault(ip, [0, 0])[1] += n
                legacy_versions.setdefault(ip, set()).add(version)
        ranked = sorted(legacy.items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0]))
        return {
            "sessions": kind(conn_tls, conn_cipher),
            "transactions": kind(txn_tls, txn_cipher),
            "daily_sessions": [
                {"date": d, "versions": dict(sorted(c.items(), key=lambda kv: -_version_rank(kv[0])))}
                for d, c in sorted(tls_daily.items())
            ],
            "below_tls12": {
                "clients": len(legacy),
                "sessions": sum(r[0] for r in legacy.values()),
                "transactions": sum(r[1] for r in legacy.values()),
                "top_clients": [
                    {
                        "ip": ip,
                        "name": self.names.get(ip, ""),
                        "versions": sorted(legacy_versions[ip]),
                        "sessions": r[0],
                        "transactions": r[1],
                    }
                    for ip, r in ranked[:top]
                ],
            },
            "floor_simulation": [floors[f].result(top, self.names) for f in FLOORS],
        }


def _version_rank(version: str) -> int:
    """Newest first, then unknown versions, then plaintext."""
    if version == PLAINTEXT:
        return -2
    return TLS_RANK.get(version, -1)


def build_report(
    paths: Iterable[str], options: Options | None = None, stdin: IO[bytes] | None = None
) -> dict[str, Any]:
    """Read every path ("-" for standard input) and return the report document."""
    agg = Aggregator(options)
    for path in paths:
        agg.add_source(path, stdin)
    return agg.result()
