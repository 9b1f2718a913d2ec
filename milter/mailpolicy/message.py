"""What the message stage collects, with every cost bounded and no field ever skipped.

Each header field is looked at once, as it arrives: From values are kept for DMARC (up to
:data:`mailpolicy.auth.dmarc.MAX_FROM_FIELDS`, the count is always exact), every
Authentication-Results field claiming our authserv-id is remembered by its index (for removal),
and the field is handed to the DKIM verifier, which keeps the fields it may have to hash (up to
:data:`mailpolicy.auth.dkim.MAX_HEADER_FIELDS`; beyond that its signatures are ``neutral``). The
body is never stored: the verifier hashes it chunk by chunk. Padding the header with junk fields
therefore hides nothing: a From or a forged Authentication-Results after 100,000 fields is seen
exactly like the first one."""

from __future__ import annotations

from mailpolicy.auth import dkim as auth_dkim
from mailpolicy.auth import header as auth_header
from mailpolicy.auth.dmarc import MAX_FROM_FIELDS

_FROM = "from"
_AR = auth_header.NAME.lower()


def name_text(name: str | bytes) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


def dkim_value(value: bytes, leadspc: bool) -> bytes:
    """A header value as the MTA passed it, as DKIM hashes it: everything after the colon, CRLF
    line ends, a final CRLF. Without ``P_HDR_LEADSPC`` the MTA stripped the blank after the colon:
    it is put back (exact for the usual ``Name: value`` form; relaxed canonicalization never cares)."""
    v = value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return (v if leadspc else b" " + v) + b"\r\n"


class Message:
    def __init__(self, authserv_id: str, dkim: auth_dkim.Verifier | None, leadspc: bool):
        self.authserv_id = authserv_id
        self.dkim = dkim
        self.leadspc = leadspc
        self.fields = 0
        self.from_values: list[bytes] = []
        self.from_count = 0
        self.ar_count = 0
        self.forged: list[int] = []  # 1-based indexes among the A-R fields
        self.body_bytes = 0
        self.headers_seen = False

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
            if auth_header.claims(value, self.authserv_id):
                self.forged.append(self.ar_count)
        if self.dkim is not None:
            raw_name = name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")
            self.dkim.header(raw_name, dkim_value(value, self.leadspc))

    def body(self, chunk: bytes) -> None:
        self.body_bytes += len(chunk)
        if self.dkim is not None:
            self.dkim.body(chunk)
