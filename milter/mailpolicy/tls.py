"""Parse the TLS macros an MTA sends ({tls_version}, {cipher}, {cipher_bits}, {cert_subject},
{cert_issuer}, {verify}) into a defined record. Garbage never raises: it becomes ``"unknown"`` or
None.

The certificate fields mean the same under both MTAs: a *verified* client certificate, else None.
Postfix sends {cert_subject}/{cert_issuer} only for a verified certificate (the CN) and no {verify}.
Sendmail sends them for any certificate the client shows, as the full DN in OpenSSL's slash form,
xtext-encoded (``+20`` is a space), and says in {verify} whether it verified (``OK``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

TLS_MACROS = ("{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}", "{verify}")
UNKNOWN = "unknown"
_VERSION_RE = re.compile(r"^(TLS|SSL)v?([0-9])(?:\.([0-9]))?$", re.IGNORECASE)
_MAX_LEN = 256
_XTEXT_RE = re.compile(r"\+([0-9A-Fa-f]{2})")


def clean(value: object, limit: int = _MAX_LEN) -> str | None:
    """A macro value as printable text of bounded length, or None when absent/empty."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip()
    if not text.isprintable():  # the usual case skips the per-character walk
        text = "".join(c if c.isprintable() else "?" for c in text)
    return text[:limit] or None


def normalize_version(raw: str | None) -> str | None:
    """``"TLSv1.2"`` -> ``"TLSv1.2"``, ``"tls1.0"`` -> ``"TLSv1"``, junk -> ``"unknown"``,
    absent -> None."""
    raw = clean(raw, 32)
    if raw is None:
        return None
    m = _VERSION_RE.match(raw)
    if not m:
        return UNKNOWN
    proto, major, minor = m.group(1).upper(), m.group(2), m.group(3)
    if proto == "SSL":
        return f"SSLv{major}" if minor in (None, "0") else UNKNOWN
    if major != "1":
        return UNKNOWN
    return "TLSv1" if minor in (None, "0") else f"TLSv1.{minor}"


def version_key(version: str) -> tuple[int, int] | None:
    """Orderable key for a normalized version; None for ``"unknown"``."""
    m = _VERSION_RE.match(version)
    if not m:
        return None
    major, minor = int(m.group(2)), int(m.group(3) or 0)
    if m.group(1).upper() == "SSL":
        return (0, major)
    return (major, minor)


@dataclass(frozen=True)
class TlsInfo:
    version: str
    cipher: str | None
    bits: int | None
    cert_subject: str | None
    cert_issuer: str | None

    def record(self) -> dict[str, object]:
        return {
            "tls_version": self.version,
            "tls_cipher": self.cipher,
            "tls_cipher_bits": self.bits,
            "tls_cert_subject": self.cert_subject,
            "tls_cert_issuer": self.cert_issuer,
        }


PLAINTEXT_RECORD: dict[str, object] = {
    "tls_version": None,
    "tls_cipher": None,
    "tls_cipher_bits": None,
    "tls_cert_subject": None,
    "tls_cert_issuer": None,
}


def _bits(raw: str | None) -> int | None:
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 5:  # ("²".isdigit())
        return None
    return int(raw)


def xtext_decode(text: str) -> str:
    """RFC 3461 xtext (``+HH`` is the byte 0xHH), as Sendmail encodes certificate DNs; bytes that
    are not UTF-8 become U+FFFD. Anything that is not a valid ``+HH`` stays as it is."""
    if "+" not in text:
        return text
    out = bytearray()
    pos = 0
    for m in _XTEXT_RE.finditer(text):
        out += text[pos : m.start()].encode("utf-8", "replace")
        out.append(int(m.group(1), 16))
        pos = m.end()
    out += text[pos:].encode("utf-8", "replace")
    return out.decode("utf-8", "replace")


def from_macros(get: Callable[[str], object]) -> TlsInfo | None:
    """TLS facts from macro values, or None when the macros say the session is plaintext."""
    version = normalize_version(clean(get("{tls_version}")))
    cipher = clean(get("{cipher}"), 128)
    if version is None and cipher is None:
        return None
    subject = clean(get("{cert_subject}"), 4 * _MAX_LEN)
    issuer = clean(get("{cert_issuer}"), 4 * _MAX_LEN)
    verify = clean(get("{verify}"), 32)
    if verify is not None:  # Sendmail: a certificate counts only if it verified; DNs are xtext
        if verify != "OK":
            subject = issuer = None
        subject = clean(xtext_decode(subject)) if subject else None
        issuer = clean(xtext_decode(issuer)) if issuer else None
    return TlsInfo(
        version=version or UNKNOWN,
        cipher=cipher,
        bits=_bits(clean(get("{cipher_bits}"), 16)),
        cert_subject=clean(subject),
        cert_issuer=clean(issuer),
    )
