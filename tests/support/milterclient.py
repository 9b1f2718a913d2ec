"""A small MTA-side milter client for protocol tests.

miltertest cannot decode an SMFIC_OPTNEG reply that carries a macro list (what our milter sends to
request the TLS macros at MAIL), and its codec only takes ``str`` (re-encoded as UTF-8) and decodes
replies strictly, so packets are encoded and decoded here; miltertest supplies the constants.
It honours the no-callback / no-reply bits the milter negotiated, as Postfix does.

Every argument that ends up on the wire (macro names and values, the connect host name and address,
HELO, MAIL/RCPT arguments, header names and values, body chunks) may be ``str`` (sent as UTF-8;
lone surrogates from ``surrogateescape`` become their original bytes) or ``bytes`` (sent exactly as
given), so tests can send what a hostile or sloppy MTA might. Strings in replies are decoded as
UTF-8 with ``surrogateescape``: ``value.encode("utf-8", "surrogateescape")`` gives the exact bytes."""

from __future__ import annotations

import socket
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from miltertest import codec
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
NODATA, NR_DATA = 0x200, 0x10000
ALL_PROTOCOL = 0x1FFFFF
HDR_LEADSPC = 0x100000
ALL_ACTIONS = 0x1FF

# Reply codes (miltertest's constants are untyped).
ACCEPT, CONTINUE, DISCARD, REJECT, TEMPFAIL, REPLYCODE = "a", "c", "d", "r", "t", "y"
SKIP, PROGRESS, QUARANTINE = "s", "p", "q"
ADDHEADER, INSHEADER, CHGHEADER = "h", "i", "m"

_FINAL = {ACCEPT, CONTINUE, DISCARD, REJECT, TEMPFAIL, REPLYCODE}

Text = str | bytes
"""Wire text: ``str`` is sent as UTF-8 (surrogateescape), ``bytes`` as is."""
Macros = Mapping[str, Text] | Mapping[bytes, Text] | Mapping[Text, Text]


def wire(value: Text) -> bytes:
    """The bytes sent for ``value``."""
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _cstr(value: Text) -> bytes:
    """A NUL-terminated protocol string. A NUL inside would silently split it: refuse that."""
    raw = wire(value)
    if b"\0" in raw:
        raise ValueError(f"a milter protocol string cannot contain NUL: {raw!r}")
    return raw + b"\0"


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _strings(raw: bytes, at_least: int) -> list[str]:
    """A run of NUL-terminated strings (a last one without its NUL is kept), padded with "" to
    ``at_least`` entries."""
    parts = raw.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    out = [_text(p) for p in parts]
    return out + [""] * (at_least - len(out))


def decode_reply(cmd: str, data: bytes) -> dict[str, Any]:
    """The fields of a milter reply, with the same names as miltertest's codec uses."""
    if cmd == REPLYCODE:
        text = data.rstrip(b"\0")
        return {"smtpcode": _text(text[:3]), "space": _text(text[3:4]), "text": _text(text[4:])}
    if cmd in (INSHEADER, CHGHEADER):
        (index,) = struct.unpack("!L", data[:4]) if len(data) >= 4 else (-1,)
        strs = _strings(data[4:], 2)
        return {"index": index, "name": strs[0], "value": strs[1]}
    if cmd == ADDHEADER:
        strs = _strings(data, 2)
        return {"name": strs[0], "value": strs[1]}
    if cmd == QUARANTINE:
        return {"reason": _strings(data, 1)[0]}
    if cmd in ("+", "-"):
        return {"rcpt": _strings(data, 1)[0]}
    if cmd in ("2", "e"):
        strs = _strings(data, 1)
        key = "rcpt" if cmd == "2" else "from"
        return {key: strs[0], "args": strs[1:]}
    if cmd == "b":
        return {"buf": data}
    return {"raw": data} if data else {}


@dataclass
class Reply:
    """What the milter answered to one stage: a code letter and, for REPLYCODE, the text."""

    cmd: str
    text: str | None = None
    actions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def continued(self) -> bool:
        return self.cmd == CONTINUE

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
        self._buf = b""
        self.protocol = 0
        self.actions = 0
        self.symlists: dict[int, str] = {}
        self._negotiate()

    # -- wire -----------------------------------------------------------------------------------
    def send_raw(self, cmd: str, payload: bytes = b"") -> None:
        """Send one packet exactly: command letter and payload (no reply is read)."""
        self.sock.sendall(struct.pack("!Lc", len(payload) + 1, cmd.encode("latin-1")) + payload)

    def _recv_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise EOFError("milter closed the connection")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def recv_raw(self) -> tuple[str, bytes]:
        """The next packet the milter sent (SMFIR_PROGRESS skipped): command letter, payload."""
        while True:
            (length,) = struct.unpack("!L", self._recv_exact(4))
            if length == 0:
                raise EOFError("zero-length milter packet")
            body = self._recv_exact(length)
            cmd = body[:1].decode("latin-1")
            if cmd != PROGRESS:
                return cmd, body[1:]

    def recv(self) -> tuple[str, dict[str, Any]]:
        cmd, data = self.recv_raw()
        return cmd, decode_reply(cmd, data)

    def _negotiate(self) -> None:
        self.send_raw("O", struct.pack("!LLL", 6, ALL_ACTIONS, self.offer_protocol))
        cmd, body = self.recv_raw()
        assert cmd == "O", cmd
        _version, self.actions, self.protocol = struct.unpack("!LLL", body[:12])
        rest = body[12:]
        while len(rest) >= 4:
            (where,) = struct.unpack("!L", rest[:4])
            end = rest.index(b"\0", 4)
            self.symlists[where] = rest[4:end].decode()
            rest = rest[end + 1 :]

    def send_macros(self, cmd: str, macros: Macros) -> None:
        """SMFIC_MACRO for the command ``cmd``: names and values as given (str or raw bytes)."""
        payload = cmd.encode("latin-1") + b"".join(_cstr(k) + _cstr(v) for k, v in macros.items())
        self.send_raw(C.SMFIC_MACRO, payload)

    def _stage(
        self, cmd: str, skip_bit: int, noreply_bit: int, macros: Macros | None, payload: bytes
    ) -> Reply:
        """One MTA stage: the macros, the command, and the reply unless negotiated away. A stage the
        milter asked to skip is not sent at all (nor its macros), as Postfix does."""
        if self.protocol & skip_bit:
            return Reply(CONTINUE)
        if macros:
            self.send_macros(cmd, macros)
        self.send_raw(cmd, payload)
        if self.protocol & noreply_bit:
            return Reply(CONTINUE)
        rcmd, rdict = self.recv()
        if rcmd == REPLYCODE:
            return Reply(rcmd, _reply_text(rdict))
        return Reply(rcmd)

    # -- stages ---------------------------------------------------------------------------------
    def connect(
        self,
        hostname: Text,
        address: Text,
        port: int = 25000,
        macros: Macros | None = None,
        family: str | None = None,
    ) -> Reply:
        """``family``: "4", "6", "L" (unix) or "U" (unknown: no port and address are sent);
        default from the address."""
        fam = family or ("6" if b":" in wire(address) else "4")
        payload = _cstr(hostname) + fam.encode("latin-1")
        if fam != "U":
            payload += struct.pack("!H", port) + _cstr(address)
        return self._stage(C.SMFIC_CONNECT, NOCONNECT, NR_CONN, macros, payload)

    def helo(self, name: Text, macros: Macros | None = None) -> Reply:
        return self._stage(C.SMFIC_HELO, NOHELO, NR_HELO, macros, _cstr(name))

    def mail_args(self, args: Sequence[Text], macros: Macros | None = None) -> Reply:
        """MAIL with its arguments exactly as given: the reverse-path as the MTA passes it (usually
        with its angle brackets) and then ESMTP parameters."""
        return self._stage(C.SMFIC_MAIL, NOMAIL, NR_MAIL, macros, b"".join(_cstr(a) for a in args))

    def rcpt_args(self, args: Sequence[Text], macros: Macros | None = None) -> Reply:
        return self._stage(C.SMFIC_RCPT, NORCPT, NR_RCPT, macros, b"".join(_cstr(a) for a in args))

    def mail(self, sender: Text, macros: Macros | None = None) -> Reply:
        return self.mail_args([b"<" + wire(sender) + b">"], macros)

    def rcpt(self, rcpt: Text, macros: Macros | None = None) -> Reply:
        return self.rcpt_args([b"<" + wire(rcpt) + b">"], macros)

    def data(self, macros: Macros | None = None) -> Reply:
        return self._stage(C.SMFIC_DATA, NODATA, NR_DATA, macros, b"")

    def header(self, name: Text, value: Text) -> Reply:
        """One header field, name and value sent exactly as given (no P_HDR_LEADSPC handling)."""
        return self._stage(C.SMFIC_HEADER, NOHDRS, NR_HDR, None, _cstr(name) + _cstr(value))

    def header_as_mta(self, name: Text, value: Text) -> Reply:
        """One header field with ``value`` exactly as after the colon; without negotiated
        P_HDR_LEADSPC the leading blanks are stripped, as an MTA does."""
        if not self.protocol & HDR_LEADSPC:
            value = value.lstrip(b" \t") if isinstance(value, bytes) else value.lstrip(" \t")
        return self.header(name, value)

    def eoh(self, macros: Macros | None = None) -> Reply:
        return self._stage(C.SMFIC_EOH, NOEOH, NR_EOH, macros, b"")

    def body(self, data: bytes | str) -> Reply:
        """Send a body chunk as raw bytes (a ``str`` is sent as UTF-8). The reply may be SKIP."""
        return self._stage(C.SMFIC_BODY, NOBODY, NR_BODY, None, wire(data))

    def eom(self, macros: Macros | None = None) -> Reply:
        if macros:
            self.send_macros(C.SMFIC_BODYEOB, macros)
        # SMFIR_QUARANTINE is a modification action followed by the final reply: collect actions up
        # to a real final reply.
        self.send_raw(C.SMFIC_BODYEOB)
        actions: list[tuple[str, dict[str, Any]]] = []
        while True:
            rcmd, rdict = self.recv()
            if rcmd in _FINAL:
                break
            actions.append((rcmd, rdict))
        out = Reply(rcmd, _reply_text(rdict) if rcmd == REPLYCODE else None)
        out.actions = actions
        return out

    def message(
        self,
        headers: Sequence[tuple[Text, Text]],
        body: bytes,
        eom_macros: Macros | None = None,
        raw_values: bool = False,
    ) -> Reply:
        """Headers as (name, value exactly as after the colon); without negotiated P_HDR_LEADSPC the
        leading blanks are stripped, as an MTA does (``raw_values=True``: values sent as given).
        The body goes in chunks of at most 65535 bytes; a SKIP reply ends the body early.
        A refusal at a header, EOH or body stage is returned at once (the MTA sends no EOM)."""
        for name, value in headers:
            r = self.header(name, value) if raw_values else self.header_as_mta(name, value)
            if not r.continued:
                return r
        r = self.eoh()
        if not r.continued:
            return r
        for i in range(0, len(body), 65535):
            r = self.body(body[i : i + 65535])
            if r.cmd == SKIP:
                break
            if not r.continued:
                return r
        return self.eom(eom_macros)

    def abort(self) -> None:
        self.send_raw(C.SMFIC_ABORT)

    def wait_closed(self, timeout: float) -> bool:
        """Wait until the milter closes its end (EOF); False when it has not after ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except OSError:
            pass
        return True

    def close(self) -> None:
        """Drop the connection at once without QUIT (an MTA that vanished). Careful: libmilter may
        then lose commands sent just before that it has not read yet; see :meth:`drop`."""
        self.sock.close()

    def drop(self, wait: float = 5.0) -> bool:
        """The MTA vanishes without QUIT, but deterministically: half-close (the milter reads
        everything sent so far, then EOF), wait up to ``wait`` seconds for the milter to close its
        end, close. Returns whether the milter closed its end in time."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            return self.wait_closed(wait)
        finally:
            self.sock.close()

    def quit(self, wait: float | None = None) -> bool:
        """SMFIC_QUIT and close. With ``wait``: first wait up to that many seconds for the milter to
        close its end (libmilter may otherwise lose commands sent just before, and the milter never
        see them); returns whether it did. Postfix itself closes at once."""
        try:
            self.send_raw(C.SMFIC_QUIT)
            return self.wait_closed(wait) if wait is not None else True
        finally:
            self.sock.close()


__all__ = ["MilterClient", "Reply", "codec", "decode_reply", "wire"]
