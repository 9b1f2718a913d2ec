"""What the message stage collects, with every cost bounded and no field ever skipped.

Each header field is looked at once, as it arrives: From values are kept for DMARC (up to
:data:`mailpolicy.auth.dmarc.MAX_FROM_FIELDS`, the count is always exact), every
Authentication-Results field claiming our authserv-id is remembered by its index (for removal;
past :data:`MAX_AR_UNUSUAL` fields of an unusual shape, every further unusual one is),
the first List-Id (RFC 2919) is kept for the mailing-list override, and the field is handed
to each authentication method that reads the message (DKIM, ARC), which keeps the fields it may
have to hash (up to :data:`mailpolicy.auth.dkim.MAX_HEADER_FIELDS`; beyond that its signatures are
``neutral``). The body is never stored: the methods hash it chunk by chunk. Padding the header
with junk fields therefore hides nothing: a From or a forged Authentication-Results after 100,000
fields is seen exactly like the first one."""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailpolicy.auth import header as auth_header
from mailpolicy.auth.base import Feed
from mailpolicy.auth.dmarc import MAX_FROM_FIELDS

_FROM = "from"
_AR = auth_header.NAME.lower()
_LIST_ID = "list-id"
MAX_AR_UNUSUAL = 32
"""Authentication-Results values out of the usual shape (auth_header.claims reads those carefully,
up to about 0.1 ms each) read per message; every further one is removed unread (the safe side:
no reader can take it as ours then), so a header padded with them costs at most a few ms."""
_LIST_ID_RE = re.compile(rb"<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)+)>")


def list_id_of(value: bytes) -> str | None:
    """The list identifier of a List-Id field (RFC 2919: ``phrase <label.namespace>``), lower case,
    or None when the field holds none."""
    m = _LIST_ID_RE.search(value[:2048])
    return m.group(1).decode("ascii").lower()[:253] if m else None


def name_text(name: str | bytes) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


def dkim_value(value: bytes, leadspc: bool) -> bytes:
    """A header value as the MTA passed it, as DKIM hashes it: everything after the colon, CRLF
    line ends, a final CRLF. Without ``P_HDR_LEADSPC`` the MTA stripped the blank after the colon:
    it is put back (exact for the usual ``Name: value`` form; relaxed canonicalization never cares)."""
    v = value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return (v if leadspc else b" " + v) + b"\r\n"


class Message:
    def __init__(self, authserv_id: str, feeds: Sequence[Feed], leadspc: bool):
        self.authserv_id = authserv_id
        self.feeds = tuple(feeds)
        self.leadspc = leadspc
        self.fields = 0
        self.from_values: list[bytes] = []
        self.from_count = 0
        self.ar_count = 0
        self.ar_unusual = 0  # A-R values that needed the careful reading (auth_header.claims)
        self.forged: list[int] = []  # 1-based indexes among the A-R fields
        self.body_bytes = 0
        self.headers_seen = False
        self.list_id: str | None = None  # the first List-Id's identifier

    def header(self, name: str | bytes, value: bytes) -> None:
        self.headers_seen = True
        self.fields += 1
        key = name_text(name).strip().lower()
        if key == _FROM:
            self.from_count += 1
            if self.from_count <= MAX_FROM_FIELDS:
                self.from_values.append(value)
        elif key == _AR:
            self.ar_count += 1
            ours = auth_header.claims_usual(value, self.authserv_id)
            if ours is None:  # an unusual value: the careful reading, at most MAX_AR_UNUSUAL times
                self.ar_unusual += 1
                ours = self.ar_unusual > MAX_AR_UNUSUAL or auth_header.claims_unusual(value, self.authserv_id)
            if ours:
                self.forged.append(self.ar_count)
        elif key == _LIST_ID and self.list_id is None:
            self.list_id = list_id_of(value)
        if self.feeds:
            raw_name = name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")
            raw_value = dkim_value(value, self.leadspc)
            for feed in self.feeds:
                feed.header(raw_name, raw_value)

    def body(self, chunk: bytes) -> None:
        self.body_bytes += len(chunk)
        for feed in self.feeds:
            feed.body(chunk)
