"""Prometheus metrics. Labels are bounded sets only: never a domain, address or IP."""

from __future__ import annotations

import platform
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.metrics import MetricWrapperBase

from mailpolicy import __version__

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double the scrape for no use here

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
    "Time spent in each milter callback",
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
    "Authentication results by method (spf, dkim, dmarc) and RFC 8601 result word",
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
UNREADABLE_INPUTS = Counter(
    "mailpolicy_unreadable_inputs",
    "Inputs the MTA sent that could not be read as text (not UTF-8), by input: client_name, helo, "
    "daemon_name, tls_version, cipher, cipher_bits, cert_subject, cert_issuer, auth_authen, "
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


M = TypeVar("M", bound=MetricWrapperBase)
_children: dict[tuple[Any, tuple[str, ...]], Any] = {}
_MAX_CHILDREN = 4096


def child(metric: M, *values: str) -> M:
    """``metric.labels(*values)``, looked up once per label set: ``labels()`` takes a lock and
    rebuilds its key on every call. The child is created on first use, as with ``labels()``, so
    no series appears before it is counted. Label sets are bounded by design; past a cap the
    lookup simply is not cached."""
    key = (metric, values)
    found: M | None = _children.get(key)
    if found is None:
        found = metric.labels(*values)
        if len(_children) < _MAX_CHILDREN:
            _children[key] = found
    return found
