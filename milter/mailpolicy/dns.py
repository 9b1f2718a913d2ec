"""One DNS resolver for the whole milter.

- dnspython ``Resolver(configure=False)``: nameservers come from ``[dns] nameservers``, or, when that
  list is empty, from /etc/resolv.conf read explicitly at start-up. Never the system resolver library.
- One shared, TTL-respecting, thread-safe cache (dnspython's :class:`dns.resolver.LRUCache`).
- pyspf reaches it through :func:`spf_dns_lookup`, installed ONCE as ``spf.DNSLookup`` by
  :func:`install`; dkimpy through :func:`dkim_dnsfunc`.
- Every lookup is counted in ``mailpolicy_dns_queries_total{type,outcome}`` and timed.
- DNS failures (timeout, SERVFAIL, other errors) are collected per thread while a
  :func:`collect_errors` block is active, for the event's ``dns_errors`` field. One milter connection
  runs in one libmilter thread, so a thread-local list is exactly one transaction's list.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.nameserver
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from mailpolicy import metrics

log = logging.getLogger("mailpolicy.dns")

OUTCOMES = ("ok", "nxdomain", "nodata", "timeout", "servfail", "error")
"""The fixed set of ``outcome`` label values."""
_TYPES = frozenset({"A", "AAAA", "MX", "PTR", "TXT", "SPF", "CNAME", "NS", "SOA"})

RESOLV_CONF = "/etc/resolv.conf"


def parse_nameserver(value: str) -> tuple[str, int]:
    """``"192.0.2.53"``, ``"192.0.2.53:5353"``, ``"::1"``, ``"[::1]:5353"`` -> (ip, port).
    Raises ValueError naming the problem."""
    text = value.strip()
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]{1,5}))?", text)
    if m:
        host, port = m.group(1), m.group(2) or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, "53"
        prefix, _, last = text.rpartition(":")
        if last.isascii() and last.isdigit() and len(last) <= 5 and _is_ip(prefix):
            raise ValueError(
                f"{value!r} is ambiguous: write '[{prefix}]:{last}' for port {last} of {prefix}, or "
                f"'[{text}]' for the address {text}"
            )
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{value!r} is not 'IP', 'IP:PORT' or '[IPV6]:PORT' (a nameserver must be an IP address)"
        ) from None
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r}: port must be 1-65535")
    return str(ip), int(port)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class Answer:
    """The outcome of one lookup (one of :data:`OUTCOMES`) and, when ``ok``, its records."""

    outcome: str
    records: tuple[Any, ...] = ()
    error: str = ""

    @property
    def failed(self) -> bool:
        """A lookup failure that may succeed later (timeout, SERVFAIL, other error)."""
        return self.outcome in ("timeout", "servfail", "error")

    @property
    def exists(self) -> bool:
        return self.outcome in ("ok", "nodata")

    def txt(self) -> list[bytes]:
        """Each TXT record's strings joined (RFC 7208 3.3 / RFC 6376 3.6.2.2)."""
        return [b"".join(r.strings) for r in self.records if hasattr(r, "strings")]


_NXDOMAIN = Answer("nxdomain")
_NODATA = Answer("nodata")


class Resolver:
    """A dnspython resolver with a shared cache. Thread-safe once built (its settings never change)."""

    def __init__(self, nameservers: Sequence[tuple[str, int]], timeout: float, cache_size: int):
        if not nameservers:
            raise ValueError("no nameservers")
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in nameservers]
        r.timeout = timeout
        r.lifetime = timeout
        r.retry_servfail = False
        r.cache = dns.resolver.LRUCache(cache_size) if cache_size > 0 else None
        self._r = r
        self.timeout = timeout
        self.nameservers = tuple(nameservers)
        # In front of dnspython's cache: (name as asked, type) -> our Answer (ok, nxdomain, nodata)
        # and the expiration of dnspython's cached entry for it (now + the smallest TTL, or the
        # negative TTL), so that a warm lookup skips name parsing and the resolution machinery but
        # expires exactly when dnspython's cached copy does. Failures are never kept. Shared,
        # bounded like the cache behind it.
        self._hits: dict[tuple[str, str], tuple[Answer, float]] = {}
        self._hits_size = cache_size
        self._hits_lock = threading.Lock()

    def clear_cache(self) -> None:
        if self._r.cache is not None:
            self._r.cache.flush()
        with self._hits_lock:
            self._hits.clear()
        _invalidate()

    def _remember_negative(
        self, key: tuple[str, str], qname: dns.name.Name, cached_type: Any, answer: Answer
    ) -> float | None:
        """A negative answer expires when dnspython's negative cache entry for it does (NXDOMAIN
        is cached for any type, NODATA for the type asked); nothing is kept when it kept nothing.
        Returns that expiration, or None."""
        cache = self._r.cache
        if cache is None:
            return None
        try:
            entry = cache.get((qname, dns.rdatatype.RdataType.make(cached_type), dns.rdataclass.IN))
        except Exception:  # an unknown type name: leave it to dnspython
            return None
        if entry is None:
            return None
        self._remember(key, answer, entry.expiration)
        return float(entry.expiration)

    def _remember(self, key: tuple[str, str], answer: Answer, expiration: float) -> None:
        with self._hits_lock:
            hits = self._hits
            hits.pop(key, None)
            while hits and len(hits) >= self._hits_size:
                del hits[next(iter(hits))]  # oldest first
            hits[key] = (answer, expiration)

    def query(self, name: str | bytes, rdtype: str, timeout: float | None = None) -> Answer:
        """Look up ``name``/``rdtype``; never raises. Records DNS failures for :func:`collect_errors`
        and, inside :func:`track_validity`, until when the answer may be reused."""
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        label = rdtype if rdtype in _TYPES else "other"
        lifetime = self.timeout if timeout is None else max(0.05, min(timeout, self.timeout))
        t0 = time.perf_counter()
        key = (name, rdtype)
        hit = self._hits.get(key)
        if hit is not None and hit[1] > time.time():
            metrics.child(metrics.DNS_QUERIES, label, hit[0].outcome).inc()
            metrics.child(metrics.DNS_SECONDS, label).observe(time.perf_counter() - t0)
            _note_validity(hit[1])
            return hit[0]
        try:
            qname = dns.name.from_text(name.rstrip(".") + ".")
        except Exception:  # label too long, empty label, bad IDNA: no such name can exist
            metrics.child(metrics.DNS_QUERIES, label, "nxdomain").inc()
            _note_validity(math.inf)
            return Answer("nxdomain", error="invalid name")
        expiration: float | None = None
        try:
            ans = self._r.resolve(qname, rdtype, lifetime=lifetime, search=False)
            result = Answer("ok", tuple(ans) if ans.rrset is not None else ())
            if not result.records:
                result = Answer("nodata")
            elif self._r.cache is not None:
                expiration = ans.expiration
                self._remember(key, result, expiration)
        except dns.resolver.NXDOMAIN:
            result = _NXDOMAIN
            expiration = self._remember_negative(key, qname, dns.rdatatype.ANY, result)
        except dns.resolver.NoAnswer:
            result = _NODATA
            expiration = self._remember_negative(key, qname, rdtype, result)
        except dns.exception.Timeout:
            result = Answer("timeout", error="timeout")
        except dns.resolver.NoNameservers:
            result = Answer("servfail", error="servfail")
        except Exception as exc:  # malformed answer, network error, ...
            result = Answer("error", error=f"{type(exc).__name__}")
        metrics.child(metrics.DNS_QUERIES, label, result.outcome).inc()
        metrics.child(metrics.DNS_SECONDS, label).observe(time.perf_counter() - t0)
        _note_validity(expiration)
        if result.failed:
            note_error(f"{rdtype} {name.rstrip('.')}: {result.outcome}")
        return result


# ---- per-thread DNS error collection (one milter connection = one thread) ----

_local = threading.local()


def note_error(text: str) -> None:
    errors: list[str] | None = getattr(_local, "errors", None)
    if errors is not None and text not in errors and len(errors) < 20:
        errors.append(text[:200])


class Validity:
    """Until when a result computed from DNS answers may be reused: the earliest expiration of
    the answers it used. Not reusable when one of them is not in the cache (a failure, caching
    off) or when no lookup was seen at all (e.g. a resolver that does not report)."""

    def __init__(self) -> None:
        self.expires = math.inf
        self.lookups = 0
        self.uncacheable = False
        self.macros = False  # an SPF-relevant text held "%": the result may depend on the sender

    @property
    def reusable(self) -> bool:
        return self.lookups > 0 and not self.uncacheable

    def note(self, expiration: float | None) -> None:
        self.lookups += 1
        if expiration is None:
            self.uncacheable = True
        else:
            self.expires = min(self.expires, expiration)


def _note_validity(expiration: float | None) -> None:
    v: Validity | None = getattr(_local, "validity", None)
    if v is not None:
        v.note(expiration)


@contextlib.contextmanager
def track_validity() -> Iterator[Validity]:
    """Inside the block, every lookup of this thread narrows the returned :class:`Validity`."""
    prev = getattr(_local, "validity", None)
    v = _local.validity = Validity()
    try:
        yield v
    finally:
        _local.validity = prev


class collect_errors:  # named as the function it replaced: ``with collect_errors(into):``
    """Append the failures of every lookup made by this thread inside the block to ``into``.
    (A class rather than a generator: it runs around every authentication method.)"""

    __slots__ = ("_into", "_prev")

    def __init__(self, into: list[str]):
        self._into = into

    def __enter__(self) -> list[str]:
        self._prev = getattr(_local, "errors", None)
        _local.errors = self._into
        return self._into

    def __exit__(self, *exc: object) -> None:
        _local.errors = self._prev


# ---- the process-wide resolver ----

_resolver: Resolver | None = None
_install_lock = threading.Lock()


def resolv_conf_nameservers(path: str | None = None) -> list[tuple[str, int]]:
    """Nameservers listed in resolv.conf (read explicitly; used when none are configured)."""
    out: list[tuple[str, int]] = []
    with open(path or RESOLV_CONF, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    out.append((str(ipaddress.ip_address(parts[1].split("%", 1)[0])), 53))
    return out


def hook_pyspf() -> None:
    """Route pyspf's module-global lookup through :func:`spf_dns_lookup`, once. Done when
    mailpolicy.auth.spf is imported, so pyspf can never reach the system resolver: before
    :func:`install` a lookup fails (SPF temperror) instead."""
    import spf

    with _install_lock:
        if spf.DNSLookup is not spf_dns_lookup:
            spf.DNSLookup = spf_dns_lookup


_invalidators: list[Callable[[], None]] = []


def on_new_answers(forget: Callable[[], None]) -> None:
    """``forget`` is called whenever earlier DNS answers stop counting (a new resolver, a cleared
    cache): results computed from them (e.g. reused SPF results) must go too."""
    _invalidators.append(forget)


def _invalidate() -> None:
    for forget in _invalidators:
        forget()


def install(resolver: Resolver) -> None:
    """Make ``resolver`` the milter's resolver (pyspf goes through it). Called at start-up and when
    a reload changes the DNS settings (tests may call it again too: the pyspf hook itself is never
    swapped). Results computed from the old resolver's answers are forgotten."""
    global _resolver
    hook_pyspf()
    with _install_lock:
        _resolver = resolver
    _invalidate()


def get() -> Resolver:
    if _resolver is None:
        raise RuntimeError("mailpolicy.dns.install() has not been called")
    return _resolver


MAX_SPF_MACRO_TERM = 512
MAX_MACRO_TEXT = 1024


def _spf_costly(text: bytes) -> bool:
    """pyspf's macro expansion checks the whole string once per dot in it (quadratic): a record
    whose macro-bearing parts are long costs seconds of CPU per transaction (a 50 KB ``exp=``
    took 14 s). An SPF record with a term over MAX_SPF_MACRO_TERM bytes that holds a macro is a
    permerror; any other TXT record over MAX_MACRO_TEXT bytes holding ``%`` (an exp= explanation,
    or a record pyspf ignores anyway) is left out of the answer. Domain names are 253 bytes at most,
    so no usable term comes near these sizes."""
    import spf

    if b"%" not in text:
        return False
    if text[:6].lower() == b"v=spf1":
        if any(b"%" in term and len(term) > MAX_SPF_MACRO_TERM for term in text.split()):
            raise spf.PermError(f"SPF record term with a macro longer than {MAX_SPF_MACRO_TERM} bytes")
        return False
    return len(text) > MAX_MACRO_TEXT


def spf_dns_lookup(name: str, qtype: str, tcpfallback: Any = True, timeout: float = 30) -> list[Any]:
    """pyspf's ``spf.DNSLookup`` contract: a list of ``((name, type), value)``; a lookup failure
    raises ``spf.TempError``; no such name / no such record is an empty list."""
    import spf

    if _resolver is None:
        raise spf.TempError("mailpolicy's resolver is not installed")
    ans = get().query(name, qtype, timeout=timeout)
    if ans.failed:
        raise spf.TempError(f"DNS {ans.outcome} for {qtype} {name}")
    out: list[Any] = []
    for r in ans.records:
        if qtype in ("A", "AAAA"):
            out.append(((name, qtype), r.address))
        elif qtype == "MX":
            out.append(((name, qtype), (r.preference, r.exchange)))
        elif qtype == "PTR":
            out.append(((name, qtype), r.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            text = b"".join(r.strings)
            if b"%" in text:
                v: Validity | None = getattr(_local, "validity", None)
                if v is not None:
                    v.macros = True
            if _spf_costly(text):
                continue
            out.append(((name, qtype), r.strings))
        elif qtype == "CNAME":
            out.append(((name, qtype), r.target.to_text(True)))
    return out


class DnsTempError(Exception):
    """A lookup that may succeed later (raised by :func:`dkim_dnsfunc`)."""


def dkim_dnsfunc(name: str | bytes, timeout: float = 5) -> bytes | None:
    """dkimpy's ``dnsfunc``: the first TXT record's strings joined, None when there is none; a
    lookup failure raises :class:`DnsTempError`."""
    ans = get().query(name, "TXT", timeout=timeout)
    if ans.failed:
        raise DnsTempError(ans.outcome)
    txt = ans.txt()
    return txt[0] if txt else None
