"""Envelope addresses (MAIL FROM, RCPT TO) as the session keeps them: whole up to a bound far beyond
what any MTA passes on, and past it shortened in a form that says so, so that nothing (SPF, a
recipient exemption) ever decides on a cut address as if it were the one sent."""

from __future__ import annotations

MAX_ADDRESS = 4096
"""Envelope addresses (MAIL FROM, RCPT TO) are kept and evaluated whole up to this many characters.
SMTP servers cut command lines far shorter (Postfix and Sendmail at 2048 bytes; RFC 5321 allows a
256-octet path), so only a broken or foreign MTA passes on a longer one."""
MAX_DOMAIN = 255  # no DNS name is longer (253 characters, a final dot, some slack)
CUT = " ..."  # where an over-long address was shortened: a blank no domain and no exemption pattern has
TOO_LONG = f"envelope address longer than {MAX_ADDRESS} characters"


def shortened(address: str, keep_domain: bool = True) -> str:
    """``address`` when it has at most :data:`MAX_ADDRESS` characters; else a shortened form, longer
    than MAX_ADDRESS (which no address kept whole is, so its length says it was shortened), for
    display and for the explicit rules about it:
    - with ``keep_domain`` and a domain (after the last "@") of at most MAX_DOMAIN characters: the
      start of the local part, :data:`CUT`, "@", the domain whole (SPF can still check the domain);
    - else the first MAX_ADDRESS characters, CUT, "@", CUT: both its local part and its domain hold a
      blank, so it equals no DNS name and matches no recipient pattern (those never hold a blank).
    """
    if len(address) <= MAX_ADDRESS:
        return address
    _local, at, domain = address.rpartition("@")
    if keep_domain and at and len(domain) <= MAX_DOMAIN:
        return address[: MAX_ADDRESS - len(domain) - 1] + CUT + "@" + domain
    return address[:MAX_ADDRESS] + CUT + "@" + CUT
