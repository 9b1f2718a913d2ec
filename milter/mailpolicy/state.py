"""Connection state apart from transaction state.

One :class:`Connection` lives for one SMTP session (one milter connection); it holds zero or more
:class:`Transaction` objects, one per MAIL FROM. The adapter fills them; checks read them."""

from __future__ import annotations

import ipaddress
import itertools
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mailpolicy.auth import AuthResults
from mailpolicy.model import Decision, iso
from mailpolicy.tls import PLAINTEXT_RECORD, TlsInfo

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Connection ids: a per-process prefix plus a counter, unique across restarts and hosts in practice.
_PREFIX = os.urandom(3).hex()
_counter = itertools.count(1)


def new_conn_id() -> str:
    return f"{_PREFIX}{next(_counter):x}"


def parse_ip(raw: object) -> IPAddress | None:
    """Client address from a connect callback (``'192.0.2.1'``, ``'::1'``, ``'IPv6:::1'``)."""
    if not isinstance(raw, str):
        return None
    text = raw.strip().strip("[]")
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


@dataclass
class Transaction:
    conn: Connection
    index: int
    started: float = field(default_factory=time.time)
    mail_from: str | None = None
    auth_user: str | None = None
    tls: TlsInfo | None = None
    recipients: list[str] = field(default_factory=list)
    rcpt_rejected: int = 0
    queue_id: str | None = None
    decisions: dict[str, Decision] = field(default_factory=dict)
    # Data the message stage collects (headers, body hashes); checks add what they need.
    headers: list[tuple[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    # Authentication (SPF at MAIL, DKIM/DMARC at EOM) when enabled; see mailpolicy.auth.
    auth: AuthResults | None = None
    body: bytearray = field(default_factory=bytearray)
    body_truncated: bool = False
    outcome: str | None = None  # accepted | rejected | tempfailed | quarantined | aborted
    stage: str = "mail"
    final_action: str = "continue"

    @property
    def client_ip(self) -> IPAddress | None:
        return self.conn.client_ip

    def record(self) -> dict[str, Any]:
        c = self.conn
        rec: dict[str, Any] = {
            "event": "transaction",
            "conn_id": c.conn_id,
            "txn": self.index,
            "queue_id": self.queue_id,
            "start": iso(self.started),
            "client_ip": c.client_ip_text,
            "client_port": c.client_port,
            "client_name": c.client_name,
            "helo": c.helo[-1] if c.helo else None,
            "auth": self.auth_user,
            "mail_from": self.mail_from,
            "rcpt_count": len(self.recipients),
            "rcpt_rejected": self.rcpt_rejected,
            "starttls": self.tls is not None,
            **(self.tls.record() if self.tls else PLAINTEXT_RECORD),
            "policies": {name: d.record() for name, d in self.decisions.items()},
            "final_action": self.final_action,
            "outcome": self.outcome,
            "stage": self.stage,
        }
        rec.update(self.extra)
        return rec


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
    outcomes: Counter[str] = field(default_factory=Counter)
    last_stage: str = "negotiate"
    seen_connect: bool = False
    current: Transaction | None = None

    def begin(self) -> Transaction:
        self.transactions += 1
        self.current = Transaction(conn=self, index=self.transactions)
        return self.current

    def record(self, ended: float) -> dict[str, Any]:
        return {
            "event": "connection",
            "conn_id": self.conn_id,
            "start": iso(self.started),
            "end": iso(ended),
            "duration_s": round(ended - self.started, 6),
            "client_ip": self.client_ip_text,
            "client_port": self.client_port,
            "client_name": self.client_name,
            "daemon": self.daemon,
            "helo": list(self.helo),
            "starttls": self.tls is not None,
            **(self.tls.record() if self.tls else PLAINTEXT_RECORD),
            "transactions": self.transactions,
            "messages": self.messages,
            "outcomes": dict(self.outcomes),
            "end_stage": self.last_stage,
        }
