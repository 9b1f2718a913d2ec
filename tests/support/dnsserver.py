"""An in-process authoritative DNS stub for tests (dnspython), on 127.0.0.1, UDP and TCP on the same
ephemeral port.

    with DnsServer({"example.org": [("TXT", "v=spf1 -all"), ("A", "192.0.2.1")]}) as srv:
        srv.add("_dmarc.example.org", "TXT", "v=DMARC1; p=reject")
        srv.timeout("slow.example.org")            # every type: the query is dropped
        srv.servfail("broken.example.org", "TXT")  # only TXT answers SERVFAIL
        srv.nameserver                             # "127.0.0.1:PORT", for [dns] nameservers

Zone values: A/AAAA "ip"; MX (pref, "host"); CNAME/PTR/NS "host"; TXT "text" (split into
255-byte strings) or a list of strings (one record made of several strings). Names are case-insensitive
and absolute. A name that is not in the zone but has a descendant that is answers NOERROR/no data
(an empty non-terminal); any other unknown name is NXDOMAIN. CNAMEs are followed inside the zone.
UDP answers larger than the client's payload size are truncated (TC), so clients retry over TCP.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SPF
import dns.rdtypes.ANY.TXT
import dns.rrset

Zone = Mapping[str, Iterable[tuple[str, Any]]]

_ALL = "*"


def _norm(name: str) -> str:
    """Canonical key: presentation form (escapes as dnspython prints them), lower case, no dot."""
    text = name.strip().rstrip(".")
    if not text:
        return ""
    return str(dns.name.from_text(text + ".").to_text(omit_final_dot=True)).lower()


def _txt_strings(value: Any) -> list[bytes]:
    parts = [value] if isinstance(value, str | bytes) else list(value)
    chunks: list[bytes] = []
    for p in parts:
        b = p.encode("utf-8") if isinstance(p, str) else bytes(p)
        if not b:
            chunks.append(b"")
        while b:
            chunks.append(b[:255])
            b = b[255:]
    return chunks or [b""]


def _rdata(rdtype: str, value: Any) -> dns.rdata.Rdata:
    if rdtype in ("TXT", "SPF"):
        cls = dns.rdtypes.ANY.TXT.TXT if rdtype == "TXT" else dns.rdtypes.ANY.SPF.SPF
        return cls(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), _txt_strings(value))
    if rdtype == "MX":
        pref, host = value
        text = f"{int(pref)} {_norm(host) or '.'}."
        if not _norm(host):
            text = f"{int(pref)} ."
    elif rdtype in ("CNAME", "PTR", "NS"):
        text = _norm(value) + "."
    else:
        text = str(value)
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text)


class DnsServer:
    def __init__(
        self, zone: Zone | None = None, host: str = "127.0.0.1", port: int = 0, memoize: bool = False
    ):
        """``port`` 0: an ephemeral port free for both UDP and TCP. ``memoize``, for load tests on a
        zone that no longer changes once started: a UDP question asked before is answered from
        memory, in the server's thread (no thread per query), about as cheaply as a local caching
        resolver would."""
        self.host = host
        self.wanted_port = port
        self._memo: dict[bytes, tuple[tuple[str, str], bytes]] | None = {} if memoize else None
        self._lock = threading.Lock()
        self._records: dict[str, list[tuple[str, dns.rdata.Rdata]]] = {}
        self._timeouts: set[tuple[str, str]] = set()
        self._servfails: set[tuple[str, str]] = set()
        self.queries: list[tuple[str, str]] = []
        self._udp: socketserver.ThreadingUDPServer | None = None
        self._tcp: socketserver.ThreadingTCPServer | None = None
        self._threads: list[threading.Thread] = []
        if zone:
            self.load(zone)

    # -- zone --------------------------------------------------------------------------------
    def add(self, name: str, rdtype: str, value: Any) -> None:
        rd = _rdata(rdtype.upper(), value)
        with self._lock:
            self._records.setdefault(_norm(name), []).append((rdtype.upper(), rd))

    def load(self, zone: Zone) -> None:
        for name, records in zone.items():
            for rdtype, value in records:
                self.add(name, rdtype, value)

    def timeout(self, name: str, rdtype: str = _ALL) -> None:
        """Never answer queries for ``name`` (of ``rdtype``, or of every type)."""
        with self._lock:
            self._timeouts.add((_norm(name), rdtype.upper()))

    def servfail(self, name: str, rdtype: str = _ALL) -> None:
        with self._lock:
            self._servfails.add((_norm(name), rdtype.upper()))

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._timeouts.clear()
            self._servfails.clear()
            self.queries.clear()

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._udp is not None, "server not started"
        return int(self._udp.server_address[1])

    @property
    def nameserver(self) -> str:
        """The ``[dns] nameservers`` entry for this server."""
        return f"{self.host}:{self.port}" if ":" not in self.host else f"[{self.host}]:{self.port}"

    def start(self) -> DnsServer:
        server = self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                reply = server._answer_udp(data)
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn = self.request
                conn.settimeout(5)
                try:
                    while True:
                        head = _recv(conn, 2)
                        if head is None:
                            return
                        data = _recv(conn, int.from_bytes(head, "big"))
                        if data is None:
                            return
                        reply = server._answer(data, udp=False)
                        if reply is None:
                            return
                        conn.sendall(len(reply).to_bytes(2, "big") + reply)
                except OSError:
                    return

        class UdpServer(socketserver.ThreadingUDPServer):
            address_family = family
            daemon_threads = True

            def process_request(self, request: Any, client_address: Any) -> None:
                if server._memo is None:
                    super().process_request(request, client_address)
                else:
                    self.finish_request(request, client_address)
                    self.shutdown_request(request)

        class TcpServer(socketserver.ThreadingTCPServer):
            address_family = family
            daemon_threads = True
            allow_reuse_address = True

        for _ in range(20):
            udp = UdpServer((self.host, self.wanted_port), Udp)
            try:
                tcp = TcpServer((self.host, udp.server_address[1]), Tcp)
            except OSError:
                udp.server_close()
                continue
            break
        else:
            raise OSError("no free port for UDP and TCP")
        self._udp, self._tcp = udp, tcp
        for srv in (udp, tcp):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        for srv in (self._udp, self._tcp):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
        for t in self._threads:
            t.join(timeout=2)
        self._threads.clear()
        self._udp = self._tcp = None

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- answering ---------------------------------------------------------------------------
    def _exists(self, name: str) -> bool:
        return name in self._records or any(n.endswith("." + name) for n in self._records)

    def _answer_udp(self, data: bytes) -> bytes | None:
        if self._memo is None:
            return self._answer(data, udp=True)
        known = self._memo.get(data[2:])  # the question without its ID
        if known is not None:
            self.queries.append(known[0])
            return data[:2] + known[1]
        reply = self._answer(data, udp=True)
        if reply is not None:  # then the question parsed
            question = dns.message.from_wire(data).question[0]
            name = str(question.name.to_text(omit_final_dot=True)).lower()
            self._memo[data[2:]] = ((name, dns.rdatatype.to_text(question.rdtype)), reply[2:])
        return reply

    def _answer(self, data: bytes, udp: bool) -> bytes | None:
        try:
            q = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None
        if not q.question:
            return None
        question = q.question[0]
        qname = str(question.name.to_text(omit_final_dot=True)).lower()
        qtype = dns.rdatatype.to_text(question.rdtype)
        resp = dns.message.make_response(q)
        resp.flags |= dns.flags.AA
        with self._lock:
            self.queries.append((qname, qtype))
            name = qname
            visited: set[str] = set()
            for _ in range(12):  # follow CNAMEs inside the zone, stop at a loop
                visited.add(name)
                if (name, _ALL) in self._timeouts or (name, qtype) in self._timeouts:
                    return None
                if (name, _ALL) in self._servfails or (name, qtype) in self._servfails:
                    resp.set_rcode(dns.rcode.SERVFAIL)
                    break
                records = self._records.get(name, [])
                cname = [rd for t, rd in records if t == "CNAME"]
                owner = dns.name.from_text(name + ".")
                if cname and qtype != "CNAME":
                    resp.answer.append(dns.rrset.from_rdata(owner, 300, cname[0]))
                    name = _norm(cname[0].to_text())
                    if name in visited:
                        break
                    continue
                matching = [rd for t, rd in records if t == qtype]
                if matching:
                    resp.answer.append(dns.rrset.from_rdata_list(owner, 300, matching))
                elif not self._exists(name) and not resp.answer:
                    resp.set_rcode(dns.rcode.NXDOMAIN)
                break
        max_size = 65535
        if udp:
            max_size = max(512, q.payload) if q.edns >= 0 else 512
        try:
            return resp.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            trunc = dns.message.make_response(q)
            trunc.flags |= dns.flags.AA | dns.flags.TC
            return trunc.to_wire()


def _recv(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


__all__ = ["DnsServer", "Zone"]
