"""Reading event lines: plain or gzip files and stdin, decoded into typed structs.

Only the fields the report uses are declared; msgspec skips every other field without building
Python objects for it, which is what makes the hot path fast."""

from __future__ import annotations

import gzip
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, cast

import msgspec

GZIP_MAGIC = b"\x1f\x8b"


class PolicyRec(msgspec.Struct, frozen=True):
    """One ``policies.NAME`` decision. ``override`` and ``overridden_action`` are absent from events
    written before the DMARC overrides: the defaults read them as "no override"."""

    mode: str = ""
    result: str = ""
    action: str = "continue"
    applied: bool = False
    exempt: str | None = None
    override: str | None = None
    overridden_action: str | None = None


class DetailsRec(msgspec.Struct):
    override_by: str | None = None  # what vouched for an override: a network, an ARC sealer, a list id


class OverrideRec(msgspec.Struct):
    """What an override's decision says about who vouched for it. Decoded apart from
    :class:`PolicyRec`, and only for transactions with an override: ``override_by`` (often a list id)
    has too many values to be part of the cached decision combinations."""

    override: str | None = None
    details: DetailsRec | None = None


class DkimRec(msgspec.Struct):
    result: str = ""
    aligned: bool = False


class DmarcRec(msgspec.Struct):
    result: str = ""


class ArcRec(msgspec.Struct):
    result: str = ""
    sealers: list[str] = []  # ARC-Seal d= per instance, oldest first


EMPTY = msgspec.Raw(b"")


class Event(msgspec.Struct):
    """One log line. ``event`` is None for diagnostics lines.

    ``policies``, ``dmarc``, ``dkim`` and ``arc`` stay raw JSON (a cheap slice of the line): the
    policy object is decoded once per distinct value (see ``Aggregator``), the authentication
    objects only for the few transactions whose authentication state or path is needed. ``arc``
    and ``list_id`` are absent from events written before ARC validation: such a transaction
    counts as direct mail."""

    event: str | None = None
    schema: int | None = None
    ts: str = ""
    host: str = ""
    client_ip: str | None = None
    client_name: str | None = None
    mail_from: str | None = None
    starttls: bool = False
    tls_version: str | None = None
    tls_cipher: str | None = None
    policies: msgspec.Raw = EMPTY
    outcome: str | None = None
    header_from_domain: str | None = None
    authenticated: bool | None = None
    dmarc: msgspec.Raw = EMPTY
    dkim: msgspec.Raw = EMPTY
    arc: msgspec.Raw = EMPTY
    list_id: str | None = None


DECODER = msgspec.json.Decoder(Event)
POLICIES_DECODER = msgspec.json.Decoder(dict[str, PolicyRec] | None)
OVERRIDES_DECODER = msgspec.json.Decoder(dict[str, OverrideRec] | None)
DMARC_DECODER = msgspec.json.Decoder(DmarcRec | None)
DKIM_DECODER = msgspec.json.Decoder(list[DkimRec] | None)
ARC_DECODER = msgspec.json.Decoder(ArcRec | None)
DecodeError = msgspec.DecodeError  # base class of ValidationError too


def classify_undecodable(line: bytes) -> tuple[str, int | None]:
    """For a line the typed decoder refused: ``("non_event", None)`` for a valid JSON object
    without "event", ``("schema", N)`` for an event of another schema version, else
    ``("malformed", None)``."""
    try:
        obj = json.loads(line)
    except ValueError:
        return "malformed", None
    if not isinstance(obj, dict):
        return "malformed", None
    if "event" not in obj:
        return "non_event", None
    schema = obj.get("schema")
    if isinstance(schema, int) and not isinstance(schema, bool) and schema != 1:
        return "schema", schema
    return "malformed", None


@contextmanager
def open_source(name: str, stdin: IO[bytes] | None = None) -> Iterator[IO[bytes]]:
    """Open ``name`` ("-" is standard input) for binary line reading; gzip is detected by its
    magic bytes, not by the file name, so rotated ``.gz`` files and compressed stdin both work."""
    buffered: io.BufferedReader
    if name == "-":
        raw: Any = stdin if stdin is not None else sys.stdin.buffer
        buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)
        close = False
    else:
        buffered = open(name, "rb")  # noqa: SIM115 - closed below
        close = True
    try:
        head = buffered.peek(2)[:2]
        if head == GZIP_MAGIC:
            # GzipFile buffers by itself; iterating it directly keeps the lines read before a
            # truncated stream's EOFError.
            with gzip.GzipFile(fileobj=buffered, mode="rb") as gz:
                yield cast(IO[bytes], gz)
        else:
            yield buffered
    finally:
        if close:
            buffered.close()
