"""Hostile SMTP sessions for fuzzing the real milter over the milter protocol.

A :class:`Session` is a plan made up front from a seed (``random.Random(f"{seed}/{index}")``), so
one session replays on its own, whatever the thread scheduling. :func:`run_session` plays it
against a milter socket the way an MTA would: it honours the stages and no-reply bits the milter
negotiated, sends header values as after the colon (``P_HDR_LEADSPC`` respected), and stops a
transaction the milter refused (no RCPT after a refused MAIL, no DATA without an accepted RCPT, no
EOM after a refused header or body chunk), resets an open transaction with SMFIC_ABORT before the
next MAIL or HELO (Postfix on RSET), and hangs up so that the milter has read everything sent before
(QUIT or a half-close, then wait for the milter to close; ``racy=True`` closes at once, as Postfix
does, and libmilter may then drop the last commands). It records every reply and what was sent.

The zone (:func:`load_zone`) has normal and hostile SPF, DMARC and DKIM key records, names that
time out and names that answer SERVFAIL. The inputs mix normal mail with: macros carrying invalid
UTF-8, 8-bit and garbage HELO names, odd MAIL/RCPT arguments, 0..N recipients, missing, repeated and
malformed From fields, floods of header fields, forged Authentication-Results fields in many
syntactic variants, garbage and real DKIM signatures, 8-bit header values, odd bodies, several
transactions per connection, aborts, dropped connections and STARTTLS-looking sessions."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from support import dkimkeys
from support.dnsserver import DnsServer
from support.milterclient import ALL_PROTOCOL, HDR_LEADSPC, MilterClient, Reply

AUTHSERV_ID = "mx.fuzz.example"

MacroMap = dict[str, bytes]
Field = tuple[bytes, bytes]
"""A header field: name, and value exactly as after the colon (folded lines joined with LF or CRLF)."""

# -- the DNS zone -----------------------------------------------------------------------------------

PASS = "pass.fuzz.example"
FAIL = "fail.fuzz.example"
QUAR = "quar.fuzz.example"
NONE = "none.fuzz.example"
SUB = "sub.pass.fuzz.example"

# Domains used in MAIL FROM, HELO and From, with what their records do.
DOMAINS: tuple[str, ...] = (
    PASS,  # SPF pass from 192.0.2.0/24 and 2001:db8::/32; DMARC p=reject; RSA and Ed25519 keys
    PASS,
    FAIL,  # SPF -all; DMARC p=reject sp=quarantine np=reject
    QUAR,  # SPF ~all; DMARC p=quarantine pct=50
    NONE,  # SPF ?all; DMARC p=none with rua
    SUB,  # exists, no own DMARC record: tree walk to pass.fuzz.example
    "nx.pass.fuzz.example",  # NXDOMAIN
    "tflag.fuzz.example",  # DMARC t=y
    "badp.fuzz.example",  # DMARC p=bogus sp=reject
    "badsp.fuzz.example",  # DMARC sp/np with 8-bit bytes
    "eight.fuzz.example",  # SPF and DMARC records with bytes > 0x7f
    "notag.fuzz.example",  # DMARC tag without '=': permerror
    "novers.fuzz.example",  # "v=DMARC1 p=reject": not a DMARC record
    "two.fuzz.example",  # two SPF and two DMARC records
    "pctjunk.fuzz.example",  # pct=abc, strict alignment
    "spfgarbage.fuzz.example",  # SPF syntax errors
    "spfloop.fuzz.example",  # SPF include loop
    "spfredir.fuzz.example",  # SPF redirect to fail
    "spfmacro.fuzz.example",  # SPF exists with macros
    "cname.fuzz.example",  # _dmarc CNAME to pass.fuzz.example's record
    "slow.fuzz.example",  # every query times out
    "dmarcslow.fuzz.example",  # only _dmarc times out
    "broken.fuzz.example",  # every query SERVFAIL
    "dmarcsf.fuzz.example",  # only _dmarc SERVFAIL
    "unknown-tld.invalid",  # NXDOMAIN
)
TIMEOUT_DOMAINS = {"slow.fuzz.example", "dmarcslow.fuzz.example"}

CLIENTS_V4 = ("192.0.2.10", "192.0.2.77", "198.51.100.7", "203.0.113.5", "127.0.0.1")
CLIENTS_V6 = ("2001:db8::10", "2001:db8:1::7", "::1")

RSA_SELECTORS = (
    "rsa",
    "revoked",
    "garbage",
    "wrongk",
    "hsha1",
    "strict",
    "svc",
    "tmo",
    "sf",
    "eight",
    "multi",
)
# Selectors whose lookups time out: used sparingly (each costs the DNS timeout).
SLOW_SELECTORS = {"tmo"}


def load_zone(server: DnsServer) -> None:
    """Publish the fuzz zone on ``server`` (keys from :mod:`support.dkimkeys`)."""
    rsa, ed = dkimkeys.rsa_key(), dkimkeys.ed25519_key()
    spf_pass = "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"
    zone: dict[str, list[tuple[str, object]]] = {
        PASS: [("TXT", spf_pass), ("A", "192.0.2.1"), ("MX", (10, f"mx.{PASS}"))],
        f"_dmarc.{PASS}": [("TXT", "v=DMARC1; p=reject; rua=mailto:d@pass.fuzz.example")],
        SUB: [("A", "192.0.2.2"), ("TXT", spf_pass)],
        FAIL: [("TXT", "v=spf1 -all"), ("A", "192.0.2.3")],
        f"_dmarc.{FAIL}": [("TXT", "v=DMARC1; p=reject; sp=quarantine; np=reject")],
        QUAR: [("TXT", "v=spf1 ~all"), ("A", "192.0.2.4")],
        f"_dmarc.{QUAR}": [("TXT", "v=DMARC1; p=quarantine; pct=50")],
        NONE: [("TXT", "v=spf1 ?all"), ("A", "192.0.2.5")],
        f"_dmarc.{NONE}": [("TXT", "v=DMARC1; p=none; rua=mailto:x@none.fuzz.example")],
        "tflag.fuzz.example": [("TXT", "v=spf1 -all")],
        "_dmarc.tflag.fuzz.example": [("TXT", "v=DMARC1; p=reject; t=y")],
        "badp.fuzz.example": [("TXT", "v=spf1 ~all")],
        "_dmarc.badp.fuzz.example": [("TXT", "v=DMARC1; p=bogus; sp=reject")],
        "badsp.fuzz.example": [("TXT", "v=spf1 -all")],
        "_dmarc.badsp.fuzz.example": [("TXT", b"v=DMARC1; p=reject; sp=\xff\xfe; np=x\xe9x")],
        "eight.fuzz.example": [("TXT", b"v=spf1 ip4:192.0.2.0/24 \xff\xfe -all")],
        "_dmarc.eight.fuzz.example": [("TXT", b"v=DMARC1; p=r\xe9ject; rua=mailto:\xff@x")],
        "notag.fuzz.example": [("TXT", "v=spf1 -all")],
        "_dmarc.notag.fuzz.example": [("TXT", "v=DMARC1; p=reject; garbage")],
        "novers.fuzz.example": [("TXT", "v=spf1 -all")],
        "_dmarc.novers.fuzz.example": [("TXT", "v=DMARC1 p=reject")],
        "two.fuzz.example": [("TXT", "v=spf1 -all"), ("TXT", "v=spf1 +all")],
        "_dmarc.two.fuzz.example": [("TXT", "v=DMARC1; p=reject"), ("TXT", "v=DMARC1; p=none")],
        "pctjunk.fuzz.example": [("TXT", "v=spf1 ?all")],
        "_dmarc.pctjunk.fuzz.example": [("TXT", "v=DMARC1; p=reject; pct=abc; adkim=s; aspf=s")],
        "spfgarbage.fuzz.example": [("TXT", "v=spf1 ip4:999.0.0.1 a:: mx:/33 include: -all")],
        "spfloop.fuzz.example": [("TXT", "v=spf1 include:spfloop.fuzz.example -all")],
        "spfredir.fuzz.example": [("TXT", "v=spf1 redirect=fail.fuzz.example")],
        "spfmacro.fuzz.example": [("TXT", "v=spf1 exists:%{ir}.%{l1r+-}.%{d}._spf.fuzz.example ~all")],
        "cname.fuzz.example": [("TXT", "v=spf1 ?all")],
        "_dmarc.cname.fuzz.example": [("CNAME", f"_dmarc.{PASS}")],
        "dmarcslow.fuzz.example": [("TXT", "v=spf1 ?all")],
        "dmarcsf.fuzz.example": [("TXT", "v=spf1 ?all")],
    }
    for dom in (PASS, FAIL, QUAR, NONE, SUB):
        zone[f"rsa._domainkey.{dom}"] = [("TXT", rsa.record)]
        zone[f"ed._domainkey.{dom}"] = [("TXT", ed.record)]
    keys = f"._domainkey.{PASS}"
    zone["revoked" + keys] = [("TXT", "v=DKIM1; k=rsa; p=")]
    zone["garbage" + keys] = [("TXT", "v=DKIM1; k=rsa; p=!!!not-base64")]
    zone["wrongk" + keys] = [("TXT", rsa.record.replace("k=rsa", "k=ed25519"))]
    zone["hsha1" + keys] = [("TXT", rsa.record.replace("h=sha256", "h=sha1"))]
    zone["strict" + keys] = [("TXT", rsa.record + "; t=s")]
    zone["svc" + keys] = [("TXT", rsa.record + "; s=other")]
    zone["eight" + keys] = [("TXT", b"v=DKIM1; k=rsa; p=\xff\xfe" + rsa.record.encode()[-40:])]
    zone["multi" + keys] = [("TXT", "v=DKIM1; k=rsa; p="), ("TXT", rsa.record)]
    server.load(zone)
    for name in (
        "slow.fuzz.example",
        "_dmarc.slow.fuzz.example",
        "_dmarc.dmarcslow.fuzz.example",
        "tmo" + keys,
    ):
        server.timeout(name)
    for name in (
        "broken.fuzz.example",
        "_dmarc.broken.fuzz.example",
        "_dmarc.dmarcsf.fuzz.example",
        "sf" + keys,
    ):
        server.servfail(name)


# -- signed messages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signed:
    headers: tuple[Field, ...]
    body: bytes
    label: str


def _raw_message(from_: str, subject: str, body: bytes) -> bytes:
    lines = [
        f"From: {from_}",
        "To: Bob <bob@rcpt.example>",
        f"Subject: {subject}",
        "Date: Mon, 23 Nov 2026 04:00:00 +0000",
        f"Message-ID: <{subject.replace(' ', '.')}@fuzz.example>",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _fields(message: bytes) -> tuple[tuple[Field, ...], bytes]:
    headers, body = dkimkeys.split(message)
    return tuple((n.encode(), v.encode("utf-8", "surrogateescape")) for n, v in headers), body


def signed_pool() -> list[Signed]:
    """DKIM-signed messages (RSA and Ed25519, several canonicalizations, aligned or not, keys good,
    revoked, malformed, restricted, timing out or failing), built once: signing is slow-ish."""
    rsa, ed = dkimkeys.rsa_key(), dkimkeys.ed25519_key()
    bodies = (
        b"Hello.\r\n\r\nThis is a test.\r\n",
        b"",
        b"line of a longer body\r\n" * 60,
        b"bare\nLF and bare\rCR\r\n\xff\xfe 8-bit\r\n",
    )
    plan: list[tuple[str, str, str, dkimkeys.Key]] = []  # (d=, From domain, selector, key)
    for sel in RSA_SELECTORS:
        plan.append((PASS, PASS, sel, rsa))
    plan += [
        (PASS, PASS, "ed", ed),
        (PASS, PASS, "rsa", ed),  # Ed25519 signature, RSA key: key type mismatch
        (PASS, PASS, "nx", rsa),  # no key
        (PASS, SUB, "rsa", rsa),  # relaxed alignment
        (SUB, SUB, "ed", ed),
        (FAIL, FAIL, "rsa", rsa),
        (FAIL, PASS, "ed", ed),  # not aligned
        (QUAR, QUAR, "ed", ed),
        (NONE, NONE, "rsa", rsa),
        (PASS, FAIL, "rsa", rsa),  # passes, not aligned with a p=reject From
    ]
    canons = ((b"relaxed", b"relaxed"), (b"simple", b"simple"), (b"relaxed", b"simple"))
    out: list[Signed] = []
    for i, (d, from_dom, sel, key) in enumerate(plan):
        body = bodies[i % len(bodies)]
        canon = canons[i % len(canons)]
        raw = _raw_message(f"Signer <s{i}@{from_dom}>", f"signed {i} {sel}", body)
        signed = dkimkeys.sign(raw, d, sel, key, canonicalize=canon)
        headers, body_out = _fields(signed)
        out.append(Signed(headers, body_out, f"dkim:{sel}@{d}/from={from_dom}"))
    return out


# -- the session plan -------------------------------------------------------------------------------


@dataclass
class Connect:
    hostname: bytes
    family: str  # "4", "6", "U" (unknown), "L" (unix)
    address: bytes
    port: int
    macros: MacroMap


@dataclass
class Helo:
    name: bytes
    macros: MacroMap | None


@dataclass
class Message:
    headers: list[Field]
    body: bytes
    data_macros: MacroMap | None = None
    eom_macros: MacroMap | None = None
    # How the message ends: "eom"; "abort" (SMFIC_ABORT) or "close" (connection dropped) after
    # ``stop_header`` header fields (None: after the headers, ``stop_body`` body bytes).
    end: str = "eom"
    stop_header: int | None = None
    stop_body: int = 0


@dataclass
class Transaction:
    mail_args: list[bytes]
    mail_macros: MacroMap | None
    rcpts: list[tuple[list[bytes], MacroMap | None]]
    message: Message | None
    # Without a message (or when no recipient was accepted): "" (the next command follows; before a
    # MAIL or HELO the MTA resets the transaction with SMFIC_ABORT, as Postfix does on RSET),
    # "abort" (SMFIC_ABORT now) or "close" (the connection is dropped).
    end: str = ""


Step = Helo | Transaction


@dataclass
class Session:
    index: int
    seed: str
    offer_protocol: int
    connect: Connect | None
    steps: list[Step]
    finish: str  # "quit" | "close"
    tags: set[str] = field(default_factory=set)

    @property
    def port(self) -> int | None:
        """The client port that identifies this session's events (None: not identifiable)."""
        if self.connect is None or self.connect.family not in ("4", "6"):
            return None
        return self.connect.port


# -- generators -------------------------------------------------------------------------------------


def _pick(rng: random.Random, items: Sequence[bytes]) -> bytes:
    return items[rng.randrange(len(items))]


BAD_UTF8 = (b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80")


def bad_utf8(rng: random.Random) -> bytes:
    return _pick(rng, BAD_UTF8)


def eight_bit(rng: random.Random, base: bytes) -> bytes:
    """``base`` with invalid UTF-8 (or valid 8-bit UTF-8) spliced in somewhere."""
    at = rng.randrange(len(base) + 1)
    junk = bad_utf8(rng) if rng.random() < 0.8 else "é€".encode()
    return base[:at] + junk + base[at:]


def random_case(rng: random.Random, text: bytes) -> bytes:
    mode = rng.random()
    if mode < 0.5:
        return text
    if mode < 0.7:
        return text.upper()
    return bytes(c ^ 0x20 if 0x61 <= (c | 0x20) <= 0x7A and rng.random() < 0.5 else c for c in text)


def _domain(rng: random.Random, slow_ok: bool) -> str:
    while True:
        d = DOMAINS[rng.randrange(len(DOMAINS))]
        if slow_ok or d not in TIMEOUT_DOMAINS:
            return d


TLS_VERSIONS = (b"TLSv1.3", b"TLSv1.2", b"TLSv1.3", b"TLSv1.2", b"TLSv1.1", b"TLSv1", b"SSLv3", b"tls1.0")
CIPHERS = (b"TLS_AES_256_GCM_SHA384", b"ECDHE-RSA-AES128-GCM-SHA256", b"RC4-MD5")


def tls_macros(rng: random.Random, tags: set[str]) -> MacroMap:
    """TLS macros as Postfix/Sendmail send them after STARTTLS, often hostile."""
    m: MacroMap = {
        "{tls_version}": _pick(rng, TLS_VERSIONS),
        "{cipher}": _pick(rng, CIPHERS),
        "{cipher_bits}": _pick(rng, (b"256", b"128", b"40")),
    }
    if rng.random() < 0.3:
        m["{cert_subject}"] = _pick(rng, (b"client.example", b"CN=client.example,O=Example", b"x" * 300))
        m["{cert_issuer}"] = _pick(rng, (b"Example CA", b"CN=Example CA,O=Example,C=DE"))
    if rng.random() < 0.25:
        tags.add("macro-8bit")
        for name in rng.sample(sorted(m), rng.randint(1, len(m))):
            m[name] = eight_bit(rng, m[name])
    if rng.random() < 0.08:
        tags.add("macro-garbage")
        m[rng.choice(sorted(m))] = _pick(
            rng, (b"banana", b"", b" ", b"99999999999", b"TLSv9.9", b"-1", b"\x01\x02")
        )
    return m


def auth_macros(rng: random.Random, tags: set[str]) -> MacroMap:
    tags.add("auth")
    value = _pick(rng, (b"alice", b"bob@pass.fuzz.example", b"", b"x" * 500))
    if rng.random() < 0.4:
        tags.add("macro-8bit")
        value = eight_bit(rng, value)
    return {"{auth_type}": b"PLAIN", "{auth_authen}": value}


def queue_id(rng: random.Random, tags: set[str]) -> MacroMap:
    qid = b"%X" % rng.randrange(1 << 40)
    if rng.random() < 0.05:
        tags.add("macro-8bit")
        qid = eight_bit(rng, qid)
    return {"i": qid}


def helo_name(rng: random.Random, tags: set[str]) -> bytes:
    r = rng.random()
    if r < 0.55:
        return (f"mail.{_domain(rng, slow_ok=rng.random() < 0.2)}").encode()
    if r < 0.65:
        return _pick(rng, (b"[192.0.2.10]", b"[IPv6:2001:db8::10]", b"192.0.2.10", b"localhost", b""))
    if r < 0.8:
        tags.add("helo-8bit")
        return eight_bit(rng, b"mail.pass.fuzz.example")
    tags.add("helo-garbage")
    return _pick(
        rng,
        (
            b"two words",
            b"comma,host",
            b"semi;colon.example",
            b"<bracket>",
            b"a" * 1000,
            b".",
            b"-.-",
            b"\x01\x02\x7f",
            b"host.example\r\nX-Injected: yes",
            b"(comment) host.example",
        ),
    )


def address(rng: random.Random, tags: set[str], slow_ok: bool, null_ok: bool) -> bytes:
    """A MAIL/RCPT argument as the MTA passes it to the milter (normally with angle brackets)."""
    r = rng.random()
    dom = _domain(rng, slow_ok).encode()
    local = _pick(rng, (b"alice", b"bounce+x=y", b"a.b", b"postmaster", b"A"))
    if r < 0.65:
        return b"<" + local + b"@" + random_case(rng, dom) + b">"
    if r < 0.72 and null_ok:
        return b"<>"
    tags.add("address-hostile")
    return _pick(
        rng,
        (
            b"<" + local + b" space@" + dom + b">",
            b"<a,b@" + dom + b">",
            b"<a@" + dom + b",b@" + dom + b">",
            b"<@relay.example:" + local + b"@" + dom + b">",
            b"<" + local + b"@[192.0.2.10]>",
            b"<" + local + b"@[IPv6:2001:db8::10]>",
            b"<" + local + b"@[garbage]>",
            local + b"@" + dom,
            b"<<" + local + b"@" + dom + b">>",
            b"<" + local + b"@" + dom,
            b'<"quoted local; part"@' + dom + b">",
            b"<" + local + b"@" + dom + b".>",
            b"<" + eight_bit(rng, local) + b"@" + dom + b">",
            b"<" + local + b"@" + eight_bit(rng, dom) + b">",
            b"<" + local + b"@" + dom + b"(comment)>",
            b"<" + local + b"@>",
            b"<@>",
            b"< >",
            b"",
            b"<" + b"x" * 300 + b"@" + dom + b">",
            b"<" + local + b"@" + dom + b";x=y>",
            b'<a"@' + dom + b">",
        ),
    )


ESMTP_ARGS = (
    b"SIZE=1000",
    b"BODY=8BITMIME",
    b"SMTPUTF8",
    b"RET=HDRS",
    b"ENVID=x",
    b"X=\xff\xfe",
    b"=",
    b"AUTH=<>",
)


def transaction_macros(rng: random.Random, tags: set[str], tls_at_mail: bool) -> MacroMap | None:
    m: MacroMap = {}
    if tls_at_mail:
        m.update(tls_macros(rng, tags))
    if rng.random() < 0.1:
        m.update(auth_macros(rng, tags))
    if rng.random() < 0.3:
        m.update(queue_id(rng, tags))
    return m or None


# -- header fields ------------------------------------------------------------------------------------


def fold(rng: random.Random) -> bytes:
    return _pick(rng, (b" ", b"\t", b"\n\t", b"\r\n ", b"\n ", b"  ", b"\n\t \t"))


def comment(rng: random.Random, depth: int = 0) -> bytes:
    """An RFC 5322 comment: nested comments, quoted-pairs (also of parentheses), folding, 8-bit."""
    parts: list[bytes] = []
    for _ in range(rng.randint(0, 4)):
        r = rng.random()
        if r < 0.35:
            parts.append(
                _pick(rng, (b"forged", b"by", b"mx.fuzz.example", b"dkim=pass", b";", b"x@y", b'"q"'))
            )
        elif r < 0.5:
            parts.append(_pick(rng, (b"\\(", b"\\)", b"\\\\", b"\\a", b"\\ ")))
        elif r < 0.65 and depth < 3:
            parts.append(comment(rng, depth + 1))
        elif r < 0.8:
            parts.append(fold(rng))
        else:
            parts.append(bad_utf8(rng) if rng.random() < 0.5 else "é".encode())
    return b"(" + b"".join(parts) + b")"


def cfws(rng: random.Random) -> bytes:
    out = b""
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        out += fold(rng) if rng.random() < 0.5 else comment(rng)
    return out


AR_RESULTS = (
    b"dkim=pass header.d=pass.fuzz.example header.s=rsa",
    b"spf=pass smtp.mailfrom=ceo@fail.fuzz.example",
    b"dmarc=pass header.from=fail.fuzz.example",
    b"none",
    b"dkim=pass; spf=pass; dmarc=pass",
    b"",
    b"garbage \xff",
)
AR_DECOYS = (
    b"other.example",
    b"mx.fuzz.example.evil",
    b"evil.mx.fuzz.example",
    b"mx.fuzz.examples",
    b"mx-fuzz.example",
    b"mx.fuzz",
    b"fuzz.example",
    b"mx.fuzz.exampl",
    b"\xff\xfe",
    b"",
)


def authres_value(rng: random.Random, ours: bool) -> bytes:
    """An Authentication-Results value (as after the colon): claiming our authserv-id or not, in
    assorted syntax. Whether it claims ours is decided by the test's own parser, not by this flag."""
    if ours:
        ident = random_case(rng, AUTHSERV_ID.encode())
        if rng.random() < 0.15:
            ident += b"."
    else:
        ident = _pick(rng, AR_DECOYS)
    if rng.random() < 0.15 and ident:
        if rng.random() < 0.3:  # a quoted-pair inside the quoted string
            at = rng.randrange(len(ident))
            ident = ident[:at] + b"\\" + ident[at:]
        ident = b'"' + ident + b'"'
    lead = _pick(rng, (b" ", b" ", b"", b"\t", b"\n\t"))
    sep = _pick(rng, (b";", b";", b" ;", b" 1;", b" 1 (v1);", b"(c);", b"\n\t;", b"/1;", b""))
    if sep == b"/1;" and ours:
        sep = b";"  # "id/1" is not an authserv-id followed by a version: do not make it ambiguous
    if not sep and ident and not ident.endswith(b'"'):
        sep = b";"
    tail = _pick(rng, AR_RESULTS)
    return lead + cfws(rng) + ident + sep + (b" " if tail else b"") + tail


# Hand-written variants, some of them exotic: (value, claims our authserv-id)
AR_FIXED: tuple[tuple[bytes, bool], ...] = (
    (b" mx.fuzz.example; dkim=pass header.d=pass.fuzz.example", True),
    (b" MX.FUZZ.EXAMPLE; spf=pass smtp.mailfrom=a@pass.fuzz.example", True),
    (b" mx.fuzz.example.; dmarc=pass", True),
    (b" mx.fuzz.example 1; dkim=pass", True),
    (b' "mx.fuzz.example"; dkim=pass', True),
    (b' "mx.fuzz\\.example"; dmarc=pass', True),
    (b" (forged) mx.fuzz.example; dkim=pass", True),
    (b" (a (b) c) mx.fuzz.example; dkim=pass", True),
    (b" (a (b (c)) d)mx.fuzz.example;dkim=pass", True),
    (b" (quoted \\) paren) mx.fuzz.example; dmarc=pass", True),
    (b" (quoted \\( paren) mx.fuzz.example; dmarc=pass", True),
    (b"\n\tmx.fuzz.example;\n\tdkim=pass", True),
    (b"\r\n (c)\r\n mx.fuzz.example; dkim=pass", True),
    (b"(x)(y) mx.fuzz.example; none", True),
    (b" mx.fuzz.example(comment); dkim=pass", True),
    (b" (\xff\xfe 8-bit) mx.fuzz.example; dkim=pass", True),
    (b" other.example; dkim=pass", False),
    (b" (mx.fuzz.example) other.example; dkim=pass", False),
    (b" (a (mx.fuzz.example) b) other.example; dkim=pass", False),
    (b" other.example; dkim=pass header.d=mx.fuzz.example", False),
    (b" (unterminated mx.fuzz.example; dkim=pass", False),
    (b' "mx.fuzz.example evil"; dkim=pass', False),
    (b' "unterminated mx.fuzz.example; dkim=pass', False),
    (b" ; dkim=pass", False),
    (b"", False),
    (b" mx.fuzz.example.evil; dkim=pass", False),
)


def dkim_garbage(rng: random.Random, tags: set[str]) -> bytes:
    tags.add("dkim-garbage")
    bh = b"bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    b = b"b=dGVzdA=="
    return _pick(
        rng,
        (
            b" v=1; a=rsa-sha256; d=pass.fuzz.example; s=rsa; h=from; " + bh + b"; b=",
            b" \x01\x02=\x03; d=pass.fuzz.example; s=rsa",
            b" v=1; a=rsa-sha256; d=pass.fuzz.example; s=r s a; h=from; " + bh + b"; " + b,
            b' v=1; a=rsa-sha256; d="pass.fuzz.example"; s="rsa"; h=from; ' + bh + b"; " + b,
            b" v=1; a=rsa-sha256; d=pass.fuzz.example;;;; s=;rsa; h=from; " + bh + b"; " + b,
            b" v=1; a=rsa -sha256; d=pass .fuzz.example; s=rsa; h=from; " + bh + b"; " + b,
            b" v=1; a=ed25519-sha256; d=pass.fuzz.example; s=rsa; h=from; " + bh + b"; " + b,
            b" v=1; a=rsa-sha1; d=pass.fuzz.example; s=rsa; h=from; " + bh + b"; " + b,
            b" v=1; a=foo-bar; d=pass.fuzz.example; s=rsa; h=from; " + bh + b"; " + b,
            b" v=1; a=rsa-sha256; d=pass.fuzz.example; s=rsa; h=from; x=1; " + bh + b"; " + b,
            b" v=1; a=rsa-sha256; d=pass.fuzz.example; s=rsa; h=from; l=99999999; " + bh + b"; " + b,
            b" v=1; a=rsa-sha256; d=pass.fuzz.example; s=rsa; h=from; l=-1; " + bh + b"; " + b,
            b" v=1; a=rsa-sha256; d=pass.fuzz.example; s=rsa; i=x@other.example; h=from; " + bh + b"; " + b,
            b" v=1; a=rsa-sha256; d=p\xe4ss.fuzz.example; s=r\xff; h=from; " + bh + b"; " + b,
            b" v=1; a=rsa-sha256; d=pass.fuzz.example; s=rsa; h=subject; " + bh + b"; " + b,
            b" v=1; a=rsa-sha256; d=pass.fuzz.example; s=nx; h=from; " + bh + b"; " + b,
            b" v=1; a=rsa-sha256; d=pass.fuzz.example; s=sf; h=from; " + bh + b"; " + b,
            b" v=1; a=rsa-sha256; d=fuzz.example; s=rsa; h=from; " + bh + b"; b=" + b"A" * 3000,
            b" v=1; a=rsa-sha256; d=[192.0.2.1]; s=a,b; h=from; " + bh + b"; " + b,
            b" v=1; a=rsa-sha256; d=pass.fuzz.example; s=rsa;\n\th=from:to; " + bh + b";\n\t" + b,
            b" garbage",
            b"",
            b" ;;;;",
            b" v=2; a=rsa-sha256",
            b" v=1; d=x(y); s=(comment); a=rsa-sha256; h=from; " + bh + b"; " + b,
        ),
    )


def from_value(rng: random.Random, tags: set[str], slow_ok: bool) -> bytes:
    """A From value (as after the colon): usually a plain mailbox, often something odd."""
    d1 = _domain(rng, slow_ok).encode()
    d2 = _domain(rng, slow_ok).encode()
    r = rng.random()
    if r < 0.55:
        return _pick(rng, (b" Alice <alice@" + d1 + b">", b" alice@" + d1, b" <alice@" + d1 + b">"))
    tags.add("from-hostile")
    return _pick(
        rng,
        (
            b" a@" + d1 + b", b@" + d2,
            b" a@" + d1 + b", b@" + d1,
            b" Group: a@" + d1 + b", b@" + d2 + b";",
            b" undisclosed-recipients:;",
            b" <alice@" + d1,
            b" alice@" + d1 + b">",
            b" Alice <<alice@" + d1 + b">",
            b" alice@" + d1 + b" (comment (nested) " + d2 + b")",
            b" (comment) alice@" + d1,
            b' "Doe, John" <john@' + d1 + b">",
            b' "unterminated <john@' + d1 + b">",
            b" =?utf-8?q?=E2=80=AE?= <a@" + d1 + b">",
            b" =?utf-8?b?" + b"QWxpY2UgPGFAZmFpbC5mdXp6LmV4YW1wbGU+" + b"?= <a@" + d1 + b">",
            b" " + eight_bit(rng, b"Alice") + b" <alice@" + d1 + b">",
            b" alice@" + eight_bit(rng, d1),
            b" alice@[192.0.2.10]",
            b" alice",
            b" <>",
            b" @" + d1,
            b" alice@",
            b" <@relay.example:alice@" + d1 + b">",
            b" alice@" + d1 + b".",
            b" ALICE@" + d1.upper(),
            b"",
            b" ",
            b"\n\talice@" + d1,
            b" " + b"A" * 2000 + b" <a@" + d1 + b">",
            b" a@" + d1 + b"; b@" + d2,
            b" a@" + d1 + b" b@" + d2,
            b" a@b@" + d1,
            b' "a@' + d2 + b'" <a@' + d1 + b">",
        ),
    )


def junk_fields(rng: random.Random, n: int) -> list[Field]:
    base = rng.randrange(1 << 30)
    return [(b"X-Junk-%d" % (base + i), b" junk value %d" % i) for i in range(n)]


def gen_body(rng: random.Random, tags: set[str]) -> bytes:
    r = rng.random()
    if r < 0.15:
        return b""
    if r < 0.6:
        return b"Hello.\r\n\r\nA short message.\r\n"
    if r < 0.75:
        tags.add("body-bare-crlf")
        return _pick(rng, (b"bare\nLF\nonly", b"bare\rCR\r", b"\r\n.\r\n", b"x\r", b"\n", b".\r\n.."))
    if r < 0.9:
        size = rng.randrange(1, 20000)
        return bytes(rng.getrandbits(8) for _ in range(min(size, 2000))) * (size // 2000 + 1)
    tags.add("body-large")
    return b"0123456789abcdef" * rng.randrange(4096, 12288)  # 64..192 KiB: several chunks


def gen_message(rng: random.Random, pool: Sequence[Signed], tags: set[str], slow_ok: bool) -> Message:
    headers: list[Field]
    if pool and rng.random() < 0.3:
        s = pool[rng.randrange(len(pool))]
        if not slow_ok and ":tmo@" in s.label:
            s = pool[0]
        tags.add("dkim-real")
        headers, body = list(s.headers), s.body
        if rng.random() < 0.15:
            tags.add("dkim-tampered")
            if rng.random() < 0.5:
                body = body + b"tampered\r\n"
            else:
                headers = [(n, v + b" (changed)") if n.lower() == b"subject" else (n, v) for n, v in headers]
        if rng.random() < 0.1:
            tags.add("from-several")
            headers.append((b"From", from_value(rng, tags, slow_ok)))
    else:
        body = gen_body(rng, tags)
        headers = [
            (b"Received", b" from x by y; Mon, 23 Nov 2026 04:00:00 +0000"),
            (b"To", b" Bob <bob@rcpt.example>"),
            (b"Subject", b" fuzz"),
            (b"Date", b" Mon, 23 Nov 2026 04:00:00 +0000"),
            (b"Message-ID", b" <%d@fuzz.example>" % rng.randrange(1 << 40)),
        ]
        r = rng.random()
        n_from = 0 if r < 0.06 else 1 if r < 0.88 else rng.randint(2, 4)
        if n_from == 0:
            tags.add("from-none")
        elif n_from > 1:
            tags.add("from-several")
        for _ in range(n_from):
            name = _pick(rng, (b"From", b"From", b"From", b"from", b"FROM"))
            headers.insert(rng.randrange(len(headers) + 1), (name, from_value(rng, tags, slow_ok)))

    def insert(fields: list[Field], anywhere: bool = True) -> None:
        for f in fields:
            at = rng.randrange(len(headers) + 1) if anywhere else 0
            headers.insert(at, f)

    if rng.random() < 0.35:
        tags.add("ar-forged")
        ars: list[Field] = []
        for _ in range(rng.choice((1, 1, 2, 3, 5))):
            name = _pick(
                rng, (b"Authentication-Results",) * 6 + (b"authentication-results", b"AUTHENTICATION-RESULTS")
            )
            if rng.random() < 0.3:
                value, _ours = AR_FIXED[rng.randrange(len(AR_FIXED))]
            else:
                value = authres_value(rng, ours=rng.random() < 0.6)
            ars.append((name, value))
        insert(ars)
    if rng.random() < 0.12:
        insert([(b"DKIM-Signature", dkim_garbage(rng, tags)) for _ in range(rng.randint(1, 3))])
    if rng.random() < 0.02:
        tags.add("dkim-many")
        sigs = [(b"DKIM-Signature", dkim_garbage(rng, tags)) for _ in range(rng.randint(6, 9))]
        if pool:
            sigs += [f for f in pool[0].headers if f[0].lower() == b"dkim-signature"]
        insert(sigs, anywhere=False)
    if rng.random() < 0.1:
        tags.add("header-8bit")
        insert([(_pick(rng, (b"Subject", b"X-Eight", b"Comments")), eight_bit(rng, b" caf\xc3\xa9 value"))])
    if rng.random() < 0.01:
        tags.add("header-name-8bit")
        insert([(eight_bit(rng, b"X-Name"), b" value")])
    if rng.random() < 0.2:
        insert(junk_fields(rng, rng.randint(1, 10)))
    if rng.random() < 0.015:
        # A flood of fields, then a From and/or forged Authentication-Results fields after it.
        tags.add("header-flood")
        after: list[Field] = []
        if rng.random() < 0.6:
            after.append((b"Authentication-Results", authres_value(rng, ours=True)))
        if rng.random() < 0.6:
            after.append((b"From", b" Mallory <m@fail.fuzz.example>"))
        headers[:0] = junk_fields(rng, rng.randint(1000, 3000)) + after
    msg = Message(headers=headers, body=body)
    if rng.random() < 0.3:
        msg.eom_macros = queue_id(rng, tags)
    r = rng.random()
    if r < 0.04:
        msg.end = rng.choice(("abort", "close"))
        msg.stop_header = rng.randrange(len(headers) + 1)
        tags.add(f"{msg.end}-in-headers")
    elif r < 0.08:
        msg.end = rng.choice(("abort", "close"))
        msg.stop_body = rng.randrange(len(body) + 1)
        tags.add(f"{msg.end}-in-body")
    return msg


def gen_session(seed: str, index: int, pool: Sequence[Signed]) -> Session:
    """One session, from ``random.Random(f"{seed}/{index}")``."""
    rng = random.Random(f"{seed}/{index}")
    tags: set[str] = set()
    # Names that time out cost the DNS timeout per lookup: keep them to a few sessions.
    slow_ok = rng.random() < 0.05
    offer = ALL_PROTOCOL
    if rng.random() < 0.08:
        offer &= ~HDR_LEADSPC
        tags.add("no-leadspc")
    session = Session(index, seed, offer, None, [], "quit" if rng.random() < 0.85 else "close", tags)
    if rng.random() < 0.02:
        tags.add("no-connect")
        return session
    r = rng.random()
    if r < 0.85:
        family, addr = "4", _pick(rng, [a.encode() for a in CLIENTS_V4])
    elif r < 0.95:
        family, addr = "6", _pick(rng, [a.encode() for a in CLIENTS_V6])
    elif r < 0.975:
        family, addr = "U", b""
    else:
        family, addr = "L", b"/var/run/client.sock"
    hostname = _pick(rng, (b"[" + addr + b"]", b"unknown", b"mail.pass.fuzz.example", b"bad\x01name", b""))
    cmacros: MacroMap = {"{daemon_name}": b"mx.fuzz.example", "j": b"mx.fuzz.example"}
    if rng.random() < 0.1:
        tags.add("macro-8bit")
        cmacros["{daemon_name}"] = eight_bit(rng, b"smtpd")
    session.connect = Connect(hostname, family, addr, 1024 + index, cmacros)
    starttls = rng.random() < 0.7
    tls_at_helo = starttls and rng.random() < 0.6
    tls_at_mail = starttls and (not tls_at_helo or rng.random() < 0.5)
    if starttls:
        tags.add("starttls")
    # HELO before STARTTLS, and the one after it (with the TLS macros).
    if rng.random() < 0.95:
        session.steps.append(Helo(helo_name(rng, tags), None))
    if tls_at_helo:
        session.steps.append(Helo(helo_name(rng, tags), tls_macros(rng, tags)))
    n_txn = rng.choice((0, 1, 1, 1, 1, 1, 2, 2, 3, 4))
    for t in range(n_txn):
        if t and rng.random() < 0.1:
            session.steps.append(Helo(helo_name(rng, tags), tls_macros(rng, tags) if starttls else None))
        mail_args = [address(rng, tags, slow_ok, null_ok=True)]
        if rng.random() < 0.2:
            mail_args += rng.sample(ESMTP_ARGS, rng.randint(1, 3))
        mmacros = transaction_macros(rng, tags, tls_at_mail)
        n_rcpt = rng.choice((0, 1, 1, 1, 1, 2, 3)) if rng.random() > 0.01 else rng.randint(20, 60)
        rcpts: list[tuple[list[bytes], MacroMap | None]] = []
        for _ in range(n_rcpt):
            rcpt = b"<bob@rcpt.example>" if rng.random() < 0.7 else address(rng, tags, False, null_ok=False)
            rcpts.append(([rcpt], queue_id(rng, tags) if rng.random() < 0.1 else None))
        txn = Transaction(mail_args, mmacros, rcpts, None)
        r = rng.random()
        if n_rcpt == 0:
            tags.add("no-rcpt")
        if r < 0.85:
            txn.message = gen_message(rng, pool, tags, slow_ok)
        else:
            txn.end = rng.choice(("", "abort", "abort", "close"))
            tags.add(f"end-before-data:{txn.end or 'next'}")
        session.steps.append(txn)
    if len([s for s in session.steps if isinstance(s, Transaction)]) > 1:
        tags.add("several-transactions")
    return session


def sessions(seed: str, count: int, pool: Sequence[Signed]) -> list[Session]:
    return [gen_session(seed, i, pool) for i in range(count)]


# -- playing a session like an MTA --------------------------------------------------------------------


@dataclass
class TxnResult:
    number: int  # MAIL FROMs so far on this connection (the event's ``txn``)
    replies: list[tuple[str, Reply]] = field(default_factory=list)
    headers_sent: list[Field] = field(default_factory=list)
    eom: Reply | None = None  # the EOM reply, when end of message was reached

    @property
    def reached_eom(self) -> bool:
        return self.eom is not None


@dataclass
class SessionResult:
    session: Session
    connected: bool = False  # the connect stage was sent
    mails: int = 0  # MAIL FROM commands sent
    replies: list[tuple[str, Reply]] = field(default_factory=list)  # every stage reply
    txns: list[TxnResult] = field(default_factory=list)
    error: str | None = None  # the client could not go on (the milter closed, timed out, ...)


class _Dropped(Exception):
    """The plan drops the connection here."""


def _hang_up(c: MilterClient, how: str, racy: bool, res: SessionResult) -> None:
    """End the connection with QUIT ("quit") or by dropping it ("close"). Unless ``racy``, first
    let the milter read everything sent (libmilter may otherwise lose commands sent just before the
    close: not reproducible from the seed); a milter that then does not close its end is an error."""
    if racy:
        if how == "quit":
            c.quit()
        else:
            c.close()
        return
    closed = c.quit(wait=5.0) if how == "quit" else c.drop(wait=5.0)
    if not closed and res.error is None:
        res.error = f"{how}: the milter did not close the connection within 5 s"


def _play_message(c: MilterClient, m: Message, t: TxnResult, res: SessionResult, racy: bool) -> None:
    def note(stage: str, r: Reply) -> bool:
        t.replies.append((stage, r))
        res.replies.append((stage, r))
        return r.continued

    def stop_here() -> None:
        if m.end == "abort":
            c.abort()
            return
        _hang_up(c, "close", racy, res)
        raise _Dropped

    if not note("data", c.data(m.data_macros)):
        return
    for i, (name, value) in enumerate(m.headers):
        if m.end != "eom" and m.stop_header == i:
            stop_here()
            return
        t.headers_sent.append((name, value))
        if not note("header", c.header_as_mta(name, value)):
            return
    if m.end != "eom" and m.stop_header == len(m.headers):
        stop_here()
        return
    if not note("eoh", c.eoh()):
        return
    limit = m.stop_body if m.end != "eom" and m.stop_header is None else len(m.body)
    for i in range(0, limit, 65535):
        r = c.body(m.body[i : min(i + 65535, limit)])
        if r.cmd == "s":  # SKIP: no more body chunks
            break
        if not note("body", r):
            return
    if limit < len(m.body) or (m.end != "eom" and m.stop_header is None):
        stop_here()
        return
    t.eom = c.eom(m.eom_macros)
    note("eom", t.eom)


def run_session(path: str, s: Session, timeout: float = 8.0, racy: bool = False) -> SessionResult:
    """Play ``s`` against the milter at ``path``; never raises (trouble goes into ``error``).
    ``racy``: hang up at once, as Postfix does, instead of letting the milter read everything first."""
    res = SessionResult(s)
    where = "negotiate"
    try:
        c = MilterClient(path, timeout=timeout, offer_protocol=s.offer_protocol)
    except (OSError, EOFError, AssertionError, ValueError) as exc:
        res.error = f"negotiate: {type(exc).__name__}: {exc}"
        return res
    try:
        if s.connect is not None:
            where = "connect"
            cn = s.connect
            r = c.connect(cn.hostname, cn.address, cn.port, cn.macros, family=cn.family)
            res.connected = True
            res.replies.append(("connect", r))
            if not r.continued:
                _hang_up(c, "quit", racy, res)
                return res
            open_txn = False  # a MAIL FROM was accepted and the transaction has not ended
            for step in s.steps:
                if open_txn:
                    c.abort()  # RSET (or HELO) resets the transaction: Postfix sends SMFIC_ABORT
                    open_txn = False
                if isinstance(step, Helo):
                    where = "helo"
                    res.replies.append(("helo", c.helo(step.name, step.macros)))
                    continue
                where = f"transaction {res.mails + 1}"
                res.mails += 1
                t = TxnResult(res.mails)
                res.txns.append(t)
                r = c.mail_args(step.mail_args, step.mail_macros)
                t.replies.append(("mail", r))
                res.replies.append(("mail", r))
                if not r.continued:
                    continue
                accepted = 0
                for args, macros in step.rcpts:
                    r = c.rcpt_args(args, macros)
                    t.replies.append(("rcpt", r))
                    res.replies.append(("rcpt", r))
                    accepted += r.continued
                if step.message is None or accepted == 0:
                    # No DATA: an MTA never sends the message without an accepted recipient (libmilter
                    # would ignore it, EOM included, and the MTA would wait for a reply forever).
                    if step.end == "abort":
                        c.abort()
                    elif step.end == "close":
                        _hang_up(c, "close", racy, res)
                        return res
                    else:
                        open_txn = True
                    continue
                _play_message(c, step.message, t, res, racy)
        where = "finish"
        _hang_up(c, s.finish, racy, res)
    except _Dropped:
        pass
    except (OSError, EOFError, ValueError) as exc:
        res.error = f"{where}: {type(exc).__name__}: {exc}"
        c.close()
    return res


def describe(s: Session, limit: int = 2000) -> str:
    """A readable summary of a session's plan, for failure messages."""
    lines = [f"session {s.index} (seed {s.seed!r}), tags {sorted(s.tags)}"]
    if s.connect is not None:
        cn = s.connect
        lines.append(
            f"  connect {cn.hostname!r} family={cn.family} {cn.address!r} port={cn.port} {cn.macros}"
        )
    for step in s.steps:
        if isinstance(step, Helo):
            lines.append(f"  helo {step.name[:80]!r} {step.macros}")
            continue
        lines.append(f"  mail {step.mail_args} {step.mail_macros}; rcpts {[a for a, _ in step.rcpts][:5]}")
        m = step.message
        if m is None:
            lines.append(f"    (no message; end {step.end!r})")
            continue
        shown = [(n, v[:100]) for n, v in m.headers if not n.startswith(b"X-Junk-")]
        junk = len(m.headers) - len(shown)
        lines.append(f"    headers ({junk} junk fields not shown): {shown}")
        lines.append(f"    body {len(m.body)} bytes {m.body[:40]!r}; end {m.end}")
    lines.append(f"  {s.finish}")
    text = "\n".join(lines)
    return text if len(text) <= limit else text[:limit] + " ..."
