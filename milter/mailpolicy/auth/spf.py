"""SPF (RFC 7208) with pyspf, through the milter's resolver (``mailpolicy.dns.install``).

The MAIL FROM identity is checked; for a null reverse-path the HELO identity (``postmaster@HELO``).
Every evaluation is bounded by ``querytime`` (total seconds for all its DNS lookups).

The domain checked is the part after the LAST "@" (RFC 5321: a quoted local part may hold "@", as in
``"x@y"@example.org``), with the local part before it; pyspf would split at the first "@". So pyspf
is told both (its ``l``, ``o``, ``d`` and ``s``): the domain it evaluates is always the one the
result is recorded and reused under. A MAIL FROM without a domain is checked as ``postmaster@HELO``.

Envelope addresses are evaluated whole up to :data:`MAX_ADDRESS` characters. The session keeps a
longer one as :func:`shortened` makes it (see there); such an address is never decided on as if it
were whole: its domain, when kept whole, gives its result only if no SPF record consulted holds a
macro (then the local part plays no part: the fact the reuse of results rests on), else
``permerror``; without its domain it is ``permerror``. Neither is softer than what the domain's
records say, as far as anything can be known of them.

Results are reused while every DNS answer they were computed from is still valid (the earliest
TTL expiry of those answers, at most :data:`MAX_REUSE` seconds): a result is a function of the
client IP, the identity and those answers, so recomputing it before then gives the same result.
When none of the SPF texts consulted holds a macro (``%``), the local part and the HELO name play
no part and the result is shared by every sender address of the domain (VERP bounce addresses);
otherwise the whole address and the HELO name are part of the key. A temperror, or any lookup that
failed or was not cached, is never reused."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import spf as pyspf

from mailpolicy import dns, metrics
from mailpolicy.auth import SpfResult, header
from mailpolicy.auth.base import MethodSpec
from mailpolicy.envelope import CUT, MAX_ADDRESS, TOO_LONG
from mailpolicy.model import Stage

if TYPE_CHECKING:
    from mailpolicy.state import Transaction

dns.hook_pyspf()  # pyspf never reaches the system resolver, even before dns.install()

log = logging.getLogger("mailpolicy.auth.spf")

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
_OLD_NAMES = {"unknown": "permerror", "error": "temperror"}
MAX_REUSE = 3600.0
CACHE_SIZE = 10_000
MAX_KEYED_ADDRESS = 1024  # a result keyed by the whole address (macros) is reused only up to this

# (client IP, scope, domain) -> result for texts without macros; (client IP, scope, domain, MAIL
# FROM, HELO) -> result otherwise. Each with its expiry. Oldest entries go first when full.
_cache: dict[tuple[str, ...], tuple[SpfResult, float]] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


dns.on_new_answers(clear_cache)


def _remember(key: tuple[str, ...], result: SpfResult, expires: float) -> None:
    with _cache_lock:
        _cache.pop(key, None)
        while _cache and len(_cache) >= CACHE_SIZE:
            del _cache[next(iter(_cache))]
        _cache[key] = (result, expires)


def _split(address: str) -> tuple[str, str | None]:
    """(local part, domain): the domain is what follows the LAST "@" (a quoted local part may hold
    "@"), lower case, without a final dot; None when there is none."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "", None
    return local, domain.strip().rstrip(".").lower() or None


def _with_identity(res: SpfResult, identity: str) -> SpfResult:
    """``dataclasses.replace(res, identity=identity)``, built directly (replace walks the fields'
    metadata each time, half the cost of a reused result); a test checks the fields are these."""
    return SpfResult(res.result, res.scope, res.domain, identity, res.reason)


def evaluate(client_ip: str | None, mail_from: str, helo: str | None, querytime: float) -> SpfResult:
    """Evaluate SPF for one transaction. Never raises."""
    helo = (helo or "").strip().strip("[]")
    # Shortened by the session (shortened()): the length says so; no address kept whole is longer.
    cut = len(mail_from) > MAX_ADDRESS
    if cut and mail_from.endswith(CUT):  # its domain was not kept: nothing to check it against
        return SpfResult("permerror", "mailfrom", None, mail_from, TOO_LONG)
    helo_domain = helo.rstrip(".").lower() or None
    if mail_from:
        scope, identity = "mailfrom", mail_from
        local, domain = _split(mail_from)
        if domain is None:  # no domain part: RFC 7208 4.3, checked as postmaster@HELO
            local, domain = "", helo_domain
    else:
        scope, identity, local, domain = "helo", helo, "", helo_domain
    if client_ip is None:
        return SpfResult("none", scope, domain, identity, "no client IP address")
    if domain is None:
        return SpfResult("none", scope, None, identity, "no domain to check")
    now = time.time()
    short = (client_ip, scope, domain)
    full = (*short, mail_from, helo)
    for key in (short, full):
        hit = _cache.get(key)
        if hit is not None and hit[1] > now:
            metrics.SPF_REUSED.inc()
            return _with_identity(hit[0], identity)
    with dns.track_validity() as validity:
        result = _check(client_ip, scope, domain, local or "postmaster", identity, helo, querytime)
    if cut and validity.macros:  # the local part it lacks may decide: never a result computed without it
        return SpfResult("permerror", scope, domain, identity, f"{TOO_LONG}, SPF record with macros")
    if result.result != "temperror" and validity.reusable and validity.expires > now:
        if not validity.macros:
            _remember(short, result, min(validity.expires, now + MAX_REUSE))
        elif len(mail_from) + len(helo) <= MAX_KEYED_ADDRESS:
            _remember(full, result, min(validity.expires, now + MAX_REUSE))
    return result


def _check(
    client_ip: str, scope: str, domain: str, local: str, identity: str, helo: str, querytime: float
) -> SpfResult:
    """pyspf's check_host() of exactly ``domain``, for the sender ``local@domain``."""
    try:
        q = pyspf.query(
            i=client_ip,
            s=f"{local}@{domain}",
            h=helo or domain,
            querytime=querytime,
            timeout=querytime,
        )
        # pyspf splits the sender at its first "@": set the parts it would get wrong (RFC 7208 4.1,
        # 7.3: <sender>'s local part and domain, and <domain>, the name check_host() evaluates).
        q.l, q.o, q.d = local, domain, domain
        res, _code, expl = q.check()
    except pyspf.TempError as exc:
        res, expl = "temperror", str(exc)
    except pyspf.PermError as exc:
        res, expl = "permerror", str(exc)
    except Exception as exc:  # a library bug must still give a defined result
        log.warning("pyspf raised %s: %s", type(exc).__name__, exc)
        res, expl = "temperror", f"internal error: {type(exc).__name__}"
    res = _OLD_NAMES.get(res, res)
    if res not in RESULTS:
        res = "permerror"
    return SpfResult(res, scope, domain, identity, str(expl)[:200])


# ---- the method --------------------------------------------------------------------------------


def _run(txn: Transaction) -> SpfResult:
    c = txn.conn
    return evaluate(
        c.client_ip_text if c.client_ip is not None else None,
        txn.mail_from or "",
        c.helo[-1] if c.helo else None,
        txn.setup.config.auth.spf_timeout,
    )


def _clauses(res: SpfResult, note: str | None) -> list[str]:
    prop = "smtp.mailfrom" if res.scope == "mailfrom" else "smtp.helo"
    return [header.resinfo("spf", res.result, note, None, [(prop, res.identity)])]


METHOD = MethodSpec(
    name="spf",
    stage=Stage.MAIL,
    run=_run,
    results=RESULTS,
    words=lambda res: (res.result,),
    clauses=_clauses,
    record=lambda res: res.record(),
    unavailable=lambda why: SpfResult("temperror", "mailfrom", None, "", why),
)
