"""SPF (RFC 7208) with pyspf, through the milter's resolver (``mailpolicy.dns.install``).

The MAIL FROM identity is checked; for a null reverse-path the HELO identity (``postmaster@HELO``).
Every evaluation is bounded by ``querytime`` (total seconds for all its DNS lookups)."""

from __future__ import annotations

import logging

import spf as pyspf

from mailpolicy import dns
from mailpolicy.auth import SpfResult

dns.hook_pyspf()  # pyspf never reaches the system resolver, even before dns.install()

log = logging.getLogger("mailpolicy.auth.spf")

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
_OLD_NAMES = {"unknown": "permerror", "error": "temperror"}


def _domain_of(address: str) -> str | None:
    _local, at, domain = address.rpartition("@")
    if not at:
        return None
    return domain.strip().rstrip(".").lower() or None


def evaluate(client_ip: str | None, mail_from: str, helo: str | None, querytime: float) -> SpfResult:
    """Evaluate SPF for one transaction. Never raises."""
    helo = (helo or "").strip().strip("[]")
    if mail_from:
        scope, identity, domain = "mailfrom", mail_from, _domain_of(mail_from)
        if domain is None:  # no domain part: RFC 7208 4.3, use postmaster@HELO... as pyspf does
            domain = helo.rstrip(".").lower() or None
    else:
        scope, identity, domain = "helo", helo, helo.rstrip(".").lower() or None
    if client_ip is None:
        return SpfResult("none", scope, domain, identity, "no client IP address")
    if domain is None:
        return SpfResult("none", scope, None, identity, "no domain to check")
    try:
        q = pyspf.query(
            i=client_ip,
            s=mail_from or f"postmaster@{helo}",
            h=helo or domain,
            querytime=querytime,
            timeout=querytime,
        )
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
