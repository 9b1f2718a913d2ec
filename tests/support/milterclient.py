"""A small MTA-side milter client for protocol tests, built on PyPI ``miltertest``'s codec.

miltertest cannot decode an SMFIC_OPTNEG reply that carries a macro list (what our milter sends to
request the TLS macros at MAIL), so option negotiation is parsed here; the rest uses its codec.
It honours the no-callback / no-reply bits the milter negotiated, as Postfix does."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from typing import Any

from miltertest import client, codec
from miltertest import constants as C

NOCONNECT, NOHELO, NOMAIL, NORCPT, NOBODY, NOHDRS, NOEOH = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40
NR_HDR, NR_CONN, NR_HELO, NR_MAIL, NR_RCPT, NR_EOH, NR_BODY = (
    0x80,
    0x1000,
    0x2000,
    0x4000,
    0x8000,
    0x40000,
    0x80000,
)
ALL_PROTOCOL = 0x1FFFFF
HDR_LEADSPC = 0x100000
ALL_ACTIONS = 0x1FF


_FINAL = {
    C.SMFIR_ACCEPT,
    C.SMFIR_CONTINUE,
    C.SMFIR_DISCARD,
    C.SMFIR_REJECT,
    C.SMFIR_TEMPFAIL,
    C.SMFIR_REPLYCODE,
}


@dataclass
class Reply:
    """What the milter answered to one stage: a code letter and, for REPLYCODE, the text."""

    cmd: str
    text: str | None = None
    actions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def continued(self) -> bool:
        return self.cmd == C.SMFIR_CONTINUE

    @property
    def smtp(self) -> str | None:
        return self.text


def _reply_text(rdict: dict[str, Any]) -> str:
    return f"{rdict['smtpcode']} {rdict['text']}"


class MilterClient:
    def __init__(self, path: str, timeout: float = 10.0, offer_protocol: int = ALL_PROTOCOL):
        """``path``: a unix socket path, or ``inet:PORT@HOST`` as in the milter's config.
        ``offer_protocol``: the protocol bits the simulated MTA offers (e.g. without
        P_HDR_LEADSPC = 0x100000, as an MTA that strips the space after each header colon)."""
        self.offer_protocol = offer_protocol
        if path.startswith("inet:"):
            port, _, host = path[5:].partition("@")
            self.sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        self.conn = client.MilterConnection(self.sock)
        self.protocol = 0
        self.actions = 0
        self.symlists: dict[int, str] = {}
        self._negotiate()

    def _negotiate(self) -> None:
        self.sock.sendall(struct.pack("!LcLLL", 13, b"O", 6, ALL_ACTIONS, self.offer_protocol))
        head = self._recv_exact(5)
        length, cmd = struct.unpack("!Lc", head)
        assert cmd == b"O", cmd
        body = self._recv_exact(length - 1)
        _version, self.actions, self.protocol = struct.unpack("!LLL", body[:12])
        rest = body[12:]
        while len(rest) >= 4:
            (where,) = struct.unpack("!L", rest[:4])
            end = rest.index(b"\0", 4)
            self.symlists[where] = rest[4:end].decode()
            rest = rest[end + 1 :]

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("milter closed the connection")
            buf += chunk
        return buf

    def _stage(
        self, cmd: str, skip_bit: int, noreply_bit: int, macros: dict[str, str] | None, **args: Any
    ) -> Reply:
        if macros:
            self.conn.send_macro(cmd, **macros)
        if self.protocol & skip_bit:
            return Reply(C.SMFIR_CONTINUE)
        if self.protocol & noreply_bit:
            self.conn._send(cmd, **args)
            return Reply(C.SMFIR_CONTINUE)
        rcmd, rdict = self.conn.send_get(cmd, **args)
        if rcmd == C.SMFIR_REPLYCODE:
            return Reply(rcmd, _reply_text(rdict))
        return Reply(rcmd)

    def connect(
        self, hostname: str, address: str, port: int = 25000, macros: dict[str, str] | None = None
    ) -> Reply:
        family = "6" if ":" in address else "4"
        return self._stage(
            C.SMFIC_CONNECT,
            NOCONNECT,
            NR_CONN,
            macros,
            hostname=hostname,
            family=family,
            port=port,
            address=address,
        )

    def helo(self, name: str, macros: dict[str, str] | None = None) -> Reply:
        return self._stage(C.SMFIC_HELO, NOHELO, NR_HELO, macros, helo=name)

    def mail(self, sender: str, macros: dict[str, str] | None = None) -> Reply:
        return self._stage(C.SMFIC_MAIL, NOMAIL, NR_MAIL, macros, args=[f"<{sender}>"])

    def rcpt(self, rcpt: str, macros: dict[str, str] | None = None) -> Reply:
        return self._stage(C.SMFIC_RCPT, NORCPT, NR_RCPT, macros, args=[f"<{rcpt}>"])

    def header(self, name: str, value: str) -> Reply:
        return self._stage(C.SMFIC_HEADER, NOHDRS, NR_HDR, None, name=name, value=value)

    def eoh(self) -> Reply:
        return self._stage(C.SMFIC_EOH, NOEOH, NR_EOH, None)

    def body(self, data: bytes | str) -> Reply:
        """Send a body chunk as raw bytes (miltertest's codec only takes str and re-encodes it)."""
        raw = data.encode() if isinstance(data, str) else data
        if self.protocol & NOBODY:
            return Reply(C.SMFIR_CONTINUE)
        self.sock.sendall(struct.pack("!Lc", len(raw) + 1, C.SMFIC_BODY.encode()) + raw)
        if self.protocol & NR_BODY:
            return Reply(C.SMFIR_CONTINUE)
        rcmd, rdict = self.conn.recv()
        return Reply(rcmd, _reply_text(rdict) if rcmd == C.SMFIR_REPLYCODE else None)

    def eom(self, macros: dict[str, str] | None = None) -> Reply:
        if macros:
            self.conn.send_macro(C.SMFIC_BODYEOB, **macros)
        # miltertest's send_eom() stops at SMFIR_QUARANTINE, which is a modification action followed
        # by the final reply: collect actions up to a real final reply here.
        self.conn._send(C.SMFIC_BODYEOB)
        replies = []
        while True:
            msg = self.conn.recv()
            replies.append(msg)
            if msg[0] in _FINAL:
                break
        last = replies[-1]
        out = Reply(last[0], _reply_text(last[1]) if last[0] == C.SMFIR_REPLYCODE else None)
        out.actions = [(r[0], r[1]) for r in replies[:-1]]
        return out

    def message(
        self, headers: list[tuple[str, str]], body: bytes, eom_macros: dict[str, str] | None = None
    ) -> Reply:
        """Headers as (name, value exactly as after the colon); without negotiated P_HDR_LEADSPC the
        leading blanks are stripped, as an MTA does. The body goes in chunks of at most 65535 bytes."""
        for name, value in headers:
            if not self.protocol & HDR_LEADSPC:
                value = value.lstrip(" \t")
            self.header(name, value)
        self.eoh()
        for i in range(0, len(body), 65535):
            self.body(body[i : i + 65535])
        return self.eom(eom_macros)

    def abort(self) -> None:
        self.conn._send(C.SMFIC_ABORT)

    def quit(self) -> None:
        try:
            self.conn._send(C.SMFIC_QUIT)
        finally:
            self.sock.close()


__all__ = ["MilterClient", "Reply", "codec"]
