"""DKIM keys and signed messages for tests: RSA keys via dkimpy's ``dkim.dknewkey`` (openssl),
Ed25519 keys via PyNaCl. Keys are generated once per process and cached."""

from __future__ import annotations

import base64
import functools
import os
import tempfile
from dataclasses import dataclass

import dkim
import nacl.signing
from dkim import dknewkey


@dataclass(frozen=True)
class Key:
    private: bytes  # what dkim.sign() takes
    record: str  # the TXT record to publish at SELECTOR._domainkey.DOMAIN
    algorithm: bytes  # b"rsa-sha256" or b"ed25519-sha256"


@functools.cache
def rsa_key(bits: int = 2048) -> Key:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "key")
        dknewkey.BITS_REQUIRED = bits
        dknewkey.GenRSAKeys(path, verbose=False)
        dknewkey.ExtractRSADnsPublicKey(path, path + ".dns", verbose=False)
        with open(path, "rb") as fh:
            private = fh.read()
        with open(path + ".dns") as fh:
            record = fh.read().strip()
    return Key(private, record, b"rsa-sha256")


@functools.cache
def ed25519_key() -> Key:
    sk = nacl.signing.SigningKey.generate()
    private = base64.b64encode(bytes(sk))
    public = base64.b64encode(bytes(sk.verify_key)).decode()
    return Key(private, f"v=DKIM1; k=ed25519; p={public}", b"ed25519-sha256")


def sign(message: bytes, domain: str, selector: str, key: Key, **kw: object) -> bytes:
    """The message with a DKIM-Signature prepended (CRLF line ends)."""
    sig = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        key.private,
        signature_algorithm=key.algorithm,
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        **kw,
    )
    assert isinstance(sig, bytes)
    return sig + message


def split(message: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """Headers as an MTA sends them to a milter with P_HDR_LEADSPC (value exactly as after the
    colon, continuation lines joined with LF), and the body (CRLF)."""
    head, _, body = message.partition(b"\r\n\r\n")
    fields: list[tuple[str, str]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + "\n" + line.decode("utf-8", "surrogateescape"))
        else:
            name_b, _, value_b = line.partition(b":")
            fields.append((name_b.decode(), value_b.decode("utf-8", "surrogateescape")))
    return fields, body


def message(
    from_: str = "Alice <alice@example.org>",
    to: str = "bob@example.net",
    subject: str = "test",
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"Hello.\r\n\r\nThis is a test.\r\n",
) -> bytes:
    lines = [
        f"From: {from_}",
        f"To: {to}",
        f"Subject: {subject}",
        "Date: Mon, 23 Nov 2026 04:00:00 +0000",
        "Message-ID: <test@example.org>",
    ]
    lines += [f"{n}: {v}" for n, v in extra or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def own_key(name: str, algorithm: str = "rsa", bits: int = 2048) -> Key:
    """A key of its own for signer ``name`` (one per name, algorithm and size, per process), for
    tests where several signers each publish a key and must not share one (a verifier fetching the
    wrong domain's key must not pass by accident). ``algorithm``: ``"rsa"`` or ``"ed25519"``."""
    return _own_key(name, algorithm, bits)


@functools.cache
def _own_key(name: str, algorithm: str, bits: int) -> Key:
    if algorithm == "ed25519":
        return ed25519_key.__wrapped__()
    return rsa_key.__wrapped__(bits)


def spki(n: int, e: int) -> bytes:
    """A DER SubjectPublicKeyInfo for an RSA key (any sizes)."""

    def der(tag: int, body: bytes) -> bytes:
        if len(body) < 128:
            return bytes([tag, len(body)]) + body
        size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
        return bytes([tag, 0x80 | len(size)]) + size + body

    def integer(v: int) -> bytes:
        return der(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))

    rsa = der(0x30, integer(n) + integer(e))
    alg = der(0x30, der(0x06, bytes.fromhex("2a864886f70d010101")) + der(0x05, b""))
    return der(0x30, alg + der(0x03, b"\x00" + rsa))
