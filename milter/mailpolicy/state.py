"""Connection state apart from transaction state: small, dumb records (aiosmtpd's Session/Envelope).

One :class:`Connection` lives for one SMTP session (one milter connection); it holds zero or more
:class:`Transaction` objects, one per MAIL FROM. :mod:`mailpolicy.session` fills them and owns their
life; checks read them; :mod:`mailpolicy.events` turns them into event lines."""

from __future__ import annotations

import functools
import ipaddress
import itertools
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailpolicy.auth import AuthResults
from mailpolicy.model import Decision
from mailpolicy.tls import TlsInfo

if TYPE_CHECKING:
    from mailpolicy.message import Message
    from mailpolicy.session import Setup

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Connection ids: a per-process prefix plus a counter, unique across restarts and hosts in practice.
_PREFIX = os.urandom(3).hex()
_counter = itertools.count(1)


def new_conn_id() -> str:
    return f"{_PREFIX}{next(_counter):x}"


def parse_ip(raw: object) -> IPAddress | None:
    """Client address from a connect callback or macro (``'192.0.2.1'``, ``'::1'``, ``'IPv6:::1'``)."""
    if not isinstance(raw, str):
        return None
    # The same clients come back and ipaddress parses slowly: short values (any address) are cached.
    return _cached_ip(raw) if len(raw) <= 100 else _parse_ip(raw)


def _parse_ip(raw: str) -> IPAddress | None:
    text = raw.strip().strip("[]")
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


_cached_ip = functools.lru_cache(maxsize=4096)(_parse_ip)


@dataclass
class Transaction:
    conn: Connection
    index: int
    setup: Setup
    started: float = field(default_factory=time.time)
    mail_from: str | None = None
    auth_user: str | None = None
    tls: TlsInfo | None = None
    recipients: list[str] = field(default_factory=list)
    rcpt_rejected: int = 0
    refused_rcpts: set[int] = field(default_factory=set)  # indexes in recipients refused at RCPT
    rcpt_exempt: dict[str, int] = field(default_factory=dict)  # per policy: exempt recipients
    queue_id: str | None = None
    decisions: dict[str, Decision] = field(default_factory=dict)
    # Authentication (SPF at MAIL, DKIM/DMARC at EOM) when it runs; see mailpolicy.auth.
    auth: AuthResults | None = None
    message: Message | None = None  # header facts and DKIM state, when the message is looked at
    unreadable: list[str] = field(default_factory=list)  # inputs that could not be read, by name
    outcome: str | None = None  # accepted | rejected | tempfailed | quarantined | aborted
    stage: str = "mail"
    final_action: str = "continue"

    @property
    def client_ip(self) -> IPAddress | None:
        return self.conn.client_ip

    @property
    def accepted_recipients(self) -> list[str]:
        """The recipients the message goes to (those not refused at RCPT by an enforced policy)."""
        return [r for i, r in enumerate(self.recipients) if i not in self.refused_rcpts]


@dataclass
class Connection:
    conn_id: str = field(default_factory=new_conn_id)
    started: float = field(default_factory=time.time)
    client_ip: IPAddress | None = None
    client_ip_text: str | None = None
    client_port: int | None = None
    client_name: str | None = None
    daemon: str | None = None
    helo: list[str] = field(default_factory=list)
    tls: TlsInfo | None = None
    transactions: int = 0
    messages: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # transactions by outcome
    last_stage: str = "negotiate"
    seen_connect: bool = False
    unreadable: list[str] = field(default_factory=list)  # connection-level inputs not readable
    current: Transaction | None = None
