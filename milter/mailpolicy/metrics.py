"""Prometheus metrics. Labels are bounded sets only: never a domain, address or IP.

The counters, gauges and histograms the milter updates on every message are kept here, not in
``prometheus_client``'s metric objects: one update is one Python call that takes the series' lock
(``prometheus_client`` makes three or four calls, each with its own checks, per update, and a busy
MX makes about forty updates per message). :class:`Exporter` publishes them through
``prometheus_client``'s registry as standard families, so the names, types and exposition format
are exactly those of ``prometheus_client``'s own ``Counter``, ``Gauge`` and ``Histogram``."""

from __future__ import annotations

import abc
import bisect
import math
import platform
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from prometheus_client import REGISTRY, Info, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from mailpolicy import __version__

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double the scrape for no use here


# ---- the series and their families ------------------------------------------------------------


class CounterSeries:
    """One labelled counter series."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        with self._lock:
            self.value += amount


class GaugeSeries:
    """One labelled gauge series."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        with self._lock:
            self.value -= amount

    def set(self, value: float) -> None:
        with self._lock:
            self.value = float(value)


class HistogramSeries:
    """One labelled histogram series: a count per bucket (not cumulative; the exporter adds them
    up) and the sum of the observations."""

    __slots__ = ("_bounds", "_lock", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._lock = threading.Lock()
        self._bounds = bounds  # ascending, the last one +Inf
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        i = bisect.bisect_left(self._bounds, amount)  # the first bucket whose bound is >= amount
        with self._lock:
            self.counts[i] += 1
            self.sum += amount

    def snapshot(self) -> tuple[list[int], float]:
        with self._lock:
            return list(self.counts), self.sum


S = TypeVar("S", CounterSeries, GaugeSeries, HistogramSeries)
_FAMILIES: list[_Family[Any]] = []


class _Family(abc.ABC, Generic[S]):
    """A metric: its name (without ``_total``), help text, label names and series by label values."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        *,
        families: list[_Family[Any]] | None = None,
    ):
        """``families``: the list the metric is exported from (tests); by default the milter's."""
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], S] = {}
        self._lock = threading.Lock()
        (_FAMILIES if families is None else families).append(self)
        self._solo: S | None = None if self.labelnames else self.labels()

    @abc.abstractmethod
    def _new(self) -> S:
        """A new series at 0."""

    def labels(self, *values: str) -> S:
        """The series of these label values (created at 0 on first use), always the same object."""
        found = self._series.get(values)
        if found is not None:
            return found
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values!r}")
        key = tuple(str(v) for v in values)
        with self._lock:
            return self._series.setdefault(key, self._new())

    def _only(self) -> S:
        if self._solo is None:
            raise ValueError(f"{self.name} has labels {self.labelnames}: use labels() first")
        return self._solo

    def series(self) -> list[tuple[tuple[str, ...], S]]:
        with self._lock:
            return list(self._series.items())


class Counter(_Family[CounterSeries]):
    def _new(self) -> CounterSeries:
        return CounterSeries()

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)


class Gauge(_Family[GaugeSeries]):
    def _new(self) -> GaugeSeries:
        return GaugeSeries()

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._only().dec(amount)

    def set(self, value: float) -> None:
        self._only().set(value)


class Histogram(_Family[HistogramSeries]):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        *,
        buckets: Iterable[float],
        families: list[_Family[Any]] | None = None,
    ):
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.bounds = tuple(bounds)
        # the "le" label values, written as prometheus_client writes them ("0.0001", "1.0", "+Inf")
        self.le = tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames, families=families)

    def _new(self) -> HistogramSeries:
        return HistogramSeries(self.bounds)

    def observe(self, amount: float) -> None:
        self._only().observe(amount)


class Exporter(Collector):
    """The families, as ``prometheus_client`` families (what /metrics serves)."""

    def __init__(self, families: list[_Family[Any]]):
        self.families = families

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            labels = list(family.labelnames)
            out: CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
            if isinstance(family, Counter):
                out = CounterMetricFamily(family.name, family.documentation, labels=labels)
                for values, c in family.series():
                    out.add_metric(list(values), c.value)
            elif isinstance(family, Gauge):
                out = GaugeMetricFamily(family.name, family.documentation, labels=labels)
                for values, g in family.series():
                    out.add_metric(list(values), g.value)
            elif isinstance(family, Histogram):
                out = HistogramMetricFamily(family.name, family.documentation, labels=labels)
                for values, h in family.series():
                    counts, total = h.snapshot()
                    cumulative, running = [], 0
                    for le, n in zip(family.le, counts, strict=True):
                        running += n
                        cumulative.append((le, float(running)))
                    out.add_metric(list(values), cumulative, total)
            else:
                raise TypeError(f"{family.name}: unknown metric type")
            yield out


REGISTRY.register(Exporter(_FAMILIES))

_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

BUILD = Info("mailpolicy_build", "mailpolicy version and runtime")
BUILD.info({"version": __version__, "python_version": platform.python_version()})

CONNECTIONS = Counter(
    "mailpolicy_connections",
    "SMTP connections seen, at close, by STARTTLS use and TLS version",
    ["starttls", "tls_version"],
)
CONNECTIONS_ACTIVE = Gauge("mailpolicy_connections_active", "SMTP connections open now")
TRANSACTIONS = Counter(
    "mailpolicy_transactions",
    "Transactions (MAIL FROM to end), by outcome: accepted, rejected, tempfailed, quarantined, aborted",
    ["outcome"],
)
MESSAGES = Counter(
    "mailpolicy_messages",
    "Messages that reached end of data, by final action",
    ["final_action"],
)
POLICY_DECISIONS = Counter(
    "mailpolicy_policy_decisions",
    "Policy decisions by policy, mode, result and action; mode=monitor with action=reject counts "
    "mail that enforce mode would have rejected",
    ["policy", "mode", "result", "action"],
)
POLICY_OVERRIDES = Counter(
    "mailpolicy_policy_overrides",
    "Decisions local policy turned from an action into continue (or a milder action), by policy, "
    "mode, reason (RFC 9990: trusted_forwarder, mailing_list, local_policy, ...) and the action the "
    "result asked for: in monitor mode, what each override would save",
    ["policy", "mode", "reason", "overridden_action"],
)
POLICY_EXEMPTIONS = Counter(
    "mailpolicy_policy_exemptions",
    "Decisions that would have acted but an exemption matched, by policy and reason",
    ["policy", "reason"],
)
CHECK_ERRORS = Counter(
    "mailpolicy_check_errors", "Unexpected exceptions inside a check (result temperror)", ["check"]
)
CALLBACK_ERRORS = Counter(
    "mailpolicy_callback_errors", "Unexpected exceptions inside a milter callback", ["callback"]
)
CALLBACK_SECONDS = Histogram(
    "mailpolicy_callback_duration_seconds",
    "Time spent in each milter callback the MTA waits for (header and body callbacks are not timed)",
    ["callback"],
    buckets=_LATENCY_BUCKETS,
)
CHECK_SECONDS = Histogram(
    "mailpolicy_check_duration_seconds", "Time spent in each check", ["check"], buckets=_LATENCY_BUCKETS
)
DNS_QUERIES = Counter(
    "mailpolicy_dns_queries",
    "DNS lookups (cache hits included) by record type and outcome: ok, nxdomain, nodata, timeout, "
    "servfail, error",
    ["type", "outcome"],
)
DNS_SECONDS = Histogram(
    "mailpolicy_dns_query_duration_seconds",
    "Time per DNS lookup, by record type",
    ["type"],
    buckets=_LATENCY_BUCKETS,
)
AUTH_RESULTS = Counter(
    "mailpolicy_auth_results",
    "Authentication results by method (spf, dkim, arc, dmarc) and RFC 8601 result word",
    ["method", "result"],
)
AR_REMOVED = Counter(
    "mailpolicy_authres_removed",
    "Authentication-Results headers claiming our authserv-id removed from incoming messages",
)
RELOADS = Counter(
    "mailpolicy_config_reloads",
    "Configuration reloads (SIGHUP, systemctl reload) by result: ok, error (the running "
    "configuration was kept)",
    ["result"],
)
LAST_RELOAD = Gauge(
    "mailpolicy_config_last_reload_success_timestamp_seconds",
    "When the running configuration was loaded (start-up or the last successful reload), Unix time",
)
CONFIG_INFO = Info(
    "mailpolicy_config",
    "The running configuration: the SHA-256 of the configuration file (first 16 hex digits) and its path",
)
POLICY_MODE = Gauge(
    "mailpolicy_policy_mode",
    "The running mode of each policy: 1 for its mode (off, monitor, enforce), 0 for the others",
    ["policy", "mode"],
)


RESTART_PENDING = Gauge(
    "mailpolicy_config_restart_pending",
    "1 for each setting the configuration file changes that only a restart applies (the running value "
    "is kept), 0 for the others",
    ["key"],
)


def set_restart_pending(keys: Iterable[str], pending: Iterable[str]) -> None:
    """Publish which restart-only settings the file changes (at start-up: none)."""
    waiting = set(pending)
    for key in keys:
        RESTART_PENDING.labels(key).set(1 if key in waiting else 0)


def set_policy_modes(modes: dict[str, str]) -> None:
    """Publish each policy's running mode (at start-up and after every reload)."""
    for name, current in modes.items():
        for mode in ("off", "monitor", "enforce"):
            POLICY_MODE.labels(name, mode).set(1 if mode == current else 0)


UNREADABLE_INPUTS = Counter(
    "mailpolicy_unreadable_inputs",
    "Inputs the MTA sent that could not be read as text (not UTF-8), by input: client_name, helo, "
    "daemon_name, tls_version, cipher, cipher_bits, cert_subject, cert_issuer, verify, auth_authen, "
    "header_name, other; the checks still ran on what was known",
    ["input"],
)
UNREADABLE_NAMES = frozenset(
    (
        "client_name",
        "helo",
        "daemon_name",
        "tls_version",
        "cipher",
        "cipher_bits",
        "cert_subject",
        "cert_issuer",
        "verify",
        "auth_authen",
        "header_name",
    )
)


def unreadable_label(name: str) -> str:
    """The metric label of an unreadable input (``{auth_authen}`` -> ``auth_authen``)."""
    label = name.strip("{}")
    return label if label in UNREADABLE_NAMES else "other"


DKIM_SKIPPED = Counter(
    "mailpolicy_dkim_signatures_skipped",
    "DKIM signatures not verified because the message carried more than auth.dkim_max_signatures",
)
SPF_REUSED = Counter(
    "mailpolicy_spf_results_reused",
    "SPF results reused instead of evaluated again: same client IP and domain (or address, when "
    "the record uses macros), every DNS answer it came from still within its TTL",
)


def child(metric: _Family[S], *values: str) -> S:
    """``metric.labels(*values)``: the series of these label values, created at 0 on first use
    unless :func:`init_series` created it beforehand."""
    return metric.labels(*values)


# ---- the known label sets, exported at 0 from start-up ------------------------------------------
# A labelled Prometheus counter has no series until its first increment, and rate()/increase() need
# two samples of a series: the first-ever error, refusal or failed reload would never be alerted on.
# init_series() creates every label set below at 0, so a counter going 0 -> 1 is an increase.

CALLBACKS = ("connect", "helo", "mail", "rcpt", "header", "body", "eom", "abort", "close", "decode")
"""``callback`` values: the milter callbacks, and ``decode`` (an argument pymilter could not decode)."""
EXTRA_CHECKS = ("auth", "header")
"""``check`` values besides the registered checks: the authentication step and our A-R header."""
OUTCOMES = ("accepted", "rejected", "tempfailed", "quarantined", "aborted")
"""``outcome`` values of mailpolicy_transactions_total."""
ACTIONS = ("continue", "quarantine", "tempfail", "reject")
"""``action`` (policy decisions) and ``final_action`` (messages) values."""
MODES = ("monitor", "enforce")
"""``mode`` values of a policy decision (a policy that is off decides nothing)."""
EXEMPTION_REASONS = ("network", "authenticated", "recipient")
RELOAD_RESULTS = ("ok", "error")
OVERRIDE_REASONS = ("trusted_forwarder", "mailing_list", "local_policy", "policy_test_mode", "other")
"""``reason`` values of mailpolicy_policy_overrides_total (RFC 9990's words)."""
DNS_TYPES = ("A", "AAAA", "MX", "PTR", "TXT", "SPF", "CNAME", "NS", "SOA", "other")
DNS_OUTCOMES = ("ok", "nxdomain", "nodata", "timeout", "servfail", "error")


def policy_label_sets(name: str, mode: str, results: tuple[str, ...]) -> list[tuple[str, str, str, str]]:
    """The (policy, mode, result, action) label sets of one active policy: ``pass`` only ever
    continues; every other result may come with any action (configurable actions, exemptions)."""
    if mode not in MODES:
        raise ValueError(f"policy {name!r}: mode must be one of {', '.join(MODES)} (got {mode!r})")
    return [
        (name, mode, result, action)
        for result in results
        for action in ACTIONS
        if result != "pass" or action == "continue"
    ]


def init_series(
    policies: Iterable[tuple[str, str]],
    checks: Mapping[str, tuple[str, ...]],
    methods: Mapping[str, tuple[str, ...]],
) -> None:
    """Export every known label set at 0, so that alerts on ``increase()`` see the first event.

    ``policies``: the active policies as (name, mode) pairs, mode ``monitor`` or ``enforce``
    (``off`` is skipped); ``checks``: every registered check with the results it can give;
    ``methods``: the authentication methods that run with their result words (none: no
    authentication, so no DNS either). Call it at start-up once the
    configuration is loaded and after each successful reload. Idempotent: a series that exists
    keeps its value, none is removed (a policy switched off keeps its counts until restart)."""
    for callback in CALLBACKS:
        child(CALLBACK_ERRORS, callback)
    for check in (*checks, *EXTRA_CHECKS):
        child(CHECK_ERRORS, check)
    for outcome in OUTCOMES:
        child(TRANSACTIONS, outcome)
    for action in ACTIONS:
        child(MESSAGES, action)
    for result in RELOAD_RESULTS:
        child(RELOADS, result)
    for name in sorted(UNREADABLE_NAMES | {"other"}):
        child(UNREADABLE_INPUTS, name)
    # plaintext: so that "no connection at all" is a rate of 0, not an absent series
    child(CONNECTIONS, "false", "none")
    for name, mode in policies:
        if mode == "off":
            continue
        for labels in policy_label_sets(name, mode, checks[name]):
            child(POLICY_DECISIONS, *labels)
        for reason in EXEMPTION_REASONS:
            child(POLICY_EXEMPTIONS, name, reason)
        for reason in OVERRIDE_REASONS:
            for action in ACTIONS[1:]:
                child(POLICY_OVERRIDES, name, mode, reason, action)
    for method, words in methods.items():
        for word in words:
            child(AUTH_RESULTS, method, word)
    if methods:
        for rdtype in DNS_TYPES:
            for outcome in DNS_OUTCOMES:
                child(DNS_QUERIES, rdtype, outcome)
