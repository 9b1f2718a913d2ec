"""Reading event lines: plain or gzip files and stdin, in the shapes admins have them, decoded into
typed structs.

Only the fields the report uses are declared; msgspec skips every other field without building
Python objects for it, which is what makes the hot path fast.

Input formats (:data:`FORMATS`), detected per source from its first non-blank line (see
:func:`detect_format`) unless one is forced:

- ``lines``: one JSON object per line, the event file and ``journalctl -o cat``. The source itself
  is handed to the aggregator: detection costs nothing per line.
- ``syslog``: syslog lines (``journalctl -o short`` and its variants, rsyslog's ``/var/log/mail.log``
  or ``/var/log/syslog``, RFC 3164 or RFC 5424, with or without a ``<PRI>``). A line is mailpolicy's
  only when the syslog tag right after the time stamp and host is mailpolicy's (``mailpolicy[PID]:``,
  ``mailpolicy:``; :data:`DEFAULT_IDENT`, or the names given to :class:`InputLog`): its message is
  the event line. Other programs' lines are not events (counted as non-event lines, whatever JSON
  their message holds: Postfix logs a bad SMTP argument verbatim); journalctl's ``-- Boot ... --``
  markers count as blank lines.
- ``journal-json``: ``journalctl -o json`` (and ``-o json-seq``): the event line is ``MESSAGE``, a
  string, or an array of byte values when it is not valid UTF-8.
- ``journal-export``: ``journalctl -o export``: ``KEY=value`` lines, a blank line after each entry,
  binary fields as ``KEY``, newline, 64-bit little-endian length, data, newline.

Journal input gives the aggregator one line per journal entry (an entry without ``MESSAGE`` is a
blank line), so "line N" in the report is entry N. A ``<N>`` syslog priority at the start of
``MESSAGE`` (journald strips it into ``PRIORITY`` unless the unit says ``SyslogLevelPrefix=no``) is
cut off. A message journalctl left out (``MESSAGE`` null: over 4096 bytes with ``-o json`` without
``--all``; ``[... blob data]`` in ``-o short``) is counted in :attr:`SourceInput.omitted`.

What the reader saw (the format of each source, omitted messages, and with tracking on the hosts,
policy names and time span of the events before any filter) is kept in an :class:`InputLog` made
current with :func:`recording`; :func:`open_source` looks it up, so the aggregator's
``open_source(name, stdin)`` calls need no other argument."""

from __future__ import annotations

import gzip
import io
import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from itertools import chain
from typing import IO, Annotated, Any, Protocol, cast

import msgspec

GZIP_MAGIC = b"\x1f\x8b"
Count = Annotated[int, msgspec.Meta(ge=0)]  # a negative count makes the line malformed


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


class ResultRec(msgspec.Struct):
    """An authentication object of which only the result word is read (spf, dmarc)."""

    result: str = ""


DmarcRec = ResultRec


class ArcRec(msgspec.Struct):
    result: str = ""
    sealers: list[str] = []  # ARC-Seal d= per instance, oldest first


EMPTY = msgspec.Raw(b"")


class Event(msgspec.Struct, gc=False):
    """One log line. ``event`` is None for diagnostics lines.

    ``policies``, ``spf``, ``dmarc``, ``dkim`` and ``arc`` stay raw JSON (a cheap slice of the line): the
    policy object is decoded once per distinct value (see ``Aggregator``), the authentication
    objects only for the few transactions whose authentication state or path is needed. ``arc``
    and ``list_id`` are absent from events written before ARC validation: such a transaction
    counts as direct mail.

    The fields are declared in the order the milter writes them (``events.py``, the
    authentication methods in running order): msgspec looks a key up starting from the field
    after the last one it matched, so that each key is found at the first try.
    Not tracked by the garbage collector (``gc=False``): an event holds no container that could
    make a cycle, and millions of them are made and dropped."""

    ts: str = ""
    host: str = ""
    schema: int | None = None
    event: str | None = None
    client_ip: str | None = None
    client_name: str | None = None
    mail_from: str | None = None
    # recipients seen, and of those refused one by one at RCPT by an enforce-mode policy; events
    # written before the milter logged recipients count as one recipient
    rcpt_count: Count = 1
    rcpt_rejected: Count = 0
    starttls: bool = False
    tls_version: str | None = None
    tls_cipher: str | None = None
    policies: msgspec.Raw = EMPTY
    outcome: str | None = None
    header_from_domain: str | None = None
    spf: msgspec.Raw = EMPTY
    dkim: msgspec.Raw = EMPTY
    arc: msgspec.Raw = EMPTY
    dmarc: msgspec.Raw = EMPTY
    authenticated: bool | None = None
    list_id: str | None = None


DECODER = msgspec.json.Decoder(Event)
POLICIES_DECODER = msgspec.json.Decoder(dict[str, PolicyRec] | None)
OVERRIDES_DECODER = msgspec.json.Decoder(dict[str, OverrideRec] | None)
DMARC_DECODER = RESULT_DECODER = msgspec.json.Decoder(ResultRec | None)
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


# ---- input formats ------------------------------------------------------------------------------

AUTO = "auto"
LINES, SYSLOG, JOURNAL_JSON, JOURNAL_EXPORT = "lines", "syslog", "journal-json", "journal-export"
FORMATS = (LINES, SYSLOG, JOURNAL_JSON, JOURNAL_EXPORT)
"""The input formats :func:`open_source` reads; ``auto`` detects one per source."""

OTHER_COMPRESSION = {b"\xfd7zXZ\x00": "xz", b"BZh": "bzip2", b"\x28\xb5\x2f\xfd": "zstd"}
MAX_SNIFF_LINES = 1000  # blank lines read at most, before the first non-blank one, to detect the format
MAX_LINE = 1 << 24  # a first line read whole for detection is cut here
EXPORT_CHUNK = 1 << 20
READ_BUFFER = 1 << 18
"""Buffer of a file read for lines: with the default 8 KiB, event lines of 1-2 KiB often straddle the
buffer's end, and ``readline`` takes its slow path for one line in a few (over twice the cost)."""
MAX_EXPORT_FIELD = 1 << 26  # a binary field longer than this is taken for damage, not data
MAX_SEEN = 1000  # distinct hosts and policy names kept for the --host / --policy check


DEFAULT_IDENT = "mailpolicy"
"""The syslog identifier of the milter: what journald and rsyslog name ``/usr/local/bin/mailpolicy``
(the unit sets no ``SyslogIdentifier=``)."""


class UnsupportedInput(OSError):
    """A source this reader cannot read: another compression, ``journalctl -o json-pretty``, a
    journal export stream that is damaged. An :class:`OSError`, so that the aggregator records it
    as the source's error and keeps what was read before it."""


@dataclass
class SourceInput:
    """What reading one source found besides its lines: the format read, and the journal messages
    journalctl left out (``MESSAGE`` null with ``-o json`` without ``--all``, ``[... blob data]``
    with ``-o short``): events that cannot be in the report."""

    name: str
    format: str | None = None  # None: the source could not be opened
    omitted: int = 0


@dataclass
class Seen:
    """Hosts, policy names and time span of the events read, before any filter (``--host``,
    ``--policy``, ``--since``, ``--until``): what a name that matched nothing is compared with.
    Bounded: at most :data:`MAX_SEEN` names of each kind (``capped`` says some were left out)."""

    track_policies: bool = False  # policy names are recorded too (a decode of each transaction)
    events: int = 0
    hosts: set[str] = field(default_factory=set)
    policies: set[str] = field(default_factory=set)
    first: str = ""
    last: str = ""
    capped: bool = False


class InputLog:
    """How to read the sources (``input_format``: ``auto`` or one of :data:`FORMATS`) and what
    reading them found: one :class:`SourceInput` per :func:`open_source` call, in order, and with
    ``track`` the hosts and time span of the events in :attr:`seen` (a few slices of each line),
    with ``track_policies`` their policy names too (a second decode of each transaction)."""

    def __init__(
        self,
        input_format: str = AUTO,
        track: bool = False,
        track_policies: bool = False,
        syslog_idents: Sequence[str] = (DEFAULT_IDENT,),
    ) -> None:
        if input_format != AUTO and input_format not in FORMATS:
            raise ValueError(f"unknown input format {input_format!r}: auto, {', '.join(FORMATS)}")
        self.input_format = input_format
        self.syslog_idents = syslog_idents
        self.idents = ident_tags(syslog_idents)
        self.sources: list[SourceInput] = []
        self.seen: Seen | None = Seen(track_policies) if track or track_policies else None


_CURRENT: ContextVar[InputLog | None] = ContextVar("mailpolicy_report_input", default=None)


@contextmanager
def recording(log: InputLog) -> Iterator[InputLog]:
    """Make ``log`` the one :func:`open_source` reads its format from and records into."""
    token = _CURRENT.set(log)
    try:
        yield log
    finally:
        _CURRENT.reset(token)


class Stream(Protocol):
    """What the readers need of a source: :class:`io.BufferedReader` and :class:`gzip.GzipFile`."""

    def peek(self, size: int, /) -> bytes: ...

    def readline(self, size: int | None = -1, /) -> bytes: ...

    def read1(self, size: int = -1, /) -> bytes: ...

    def __iter__(self) -> Iterator[bytes]: ...


@contextmanager
def open_source(name: str, stdin: IO[bytes] | None = None) -> Iterator[IO[bytes]]:
    """Open ``name`` ("-" is standard input) and give its event lines; gzip is detected by its
    magic bytes, not by the file name, so rotated ``.gz`` files and compressed stdin both work.

    What is given is iterated for lines and nothing else: for ``lines`` input it is the file
    itself, for the other formats (see the module) an iterator of event lines."""
    log = _CURRENT.get()
    info = SourceInput("<stdin>" if name == "-" else name)
    if log is not None:
        log.sources.append(info)
    forced = log.input_format if log is not None else AUTO
    seen = log.seen if log is not None else None
    idents = log.idents if log is not None else DEFAULT_TAGS
    buffered: io.BufferedReader
    if name == "-":
        raw: Any = stdin if stdin is not None else sys.stdin.buffer
        buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw, READ_BUFFER)
        close = False
    else:
        buffered = io.BufferedReader(io.FileIO(name), READ_BUFFER)  # closed below
        close = True
    try:
        head = buffered.peek(8)[:8]
        if head[:2] == GZIP_MAGIC:
            # GzipFile buffers by itself; iterating it directly keeps the lines read before a
            # truncated stream's EOFError.
            with gzip.GzipFile(fileobj=buffered, mode="rb") as gz:
                yield event_lines(gz, info, forced, seen, idents)
        else:
            for magic, kind in OTHER_COMPRESSION.items():
                if head.startswith(magic):
                    raise UnsupportedInput(f"compressed with {kind}: only gzip is read (decompress it first)")
            yield event_lines(buffered, info, forced, seen, idents)
    finally:
        if close:
            buffered.close()


def event_lines(
    fh: Stream,
    info: SourceInput,
    forced: str = AUTO,
    seen: Seen | None = None,
    idents: frozenset[bytes] | None = None,
) -> IO[bytes]:
    """The event lines of ``fh`` in the format ``forced`` (or the one detected), recorded in
    ``info``; typed as the file the aggregator iterates. ``idents``: the syslog tags of mailpolicy
    (:func:`ident_tags`)."""
    prefix: list[bytes] = []
    fmt = forced
    if fmt == AUTO:
        fmt, prefix = sniff(fh)
    info.format = fmt
    lines: Iterable[bytes]
    if fmt == JOURNAL_EXPORT:
        lines = journal_export(fh, b"".join(prefix), info)
    else:
        src: Iterable[bytes] = chain(prefix, fh) if prefix else fh
        if fmt == JOURNAL_JSON:
            lines = journal_json(src, info)
        elif fmt == SYSLOG:
            lines = syslog_lines(src, info, DEFAULT_TAGS if idents is None else idents)
        else:
            lines = src
    if seen is not None:
        lines = track(lines, seen, DEFAULT_TAGS if idents is None else idents)
    return cast(IO[bytes], lines)


# ---- detection ----------------------------------------------------------------------------------

_EXPORT_FIELD = re.compile(rb"[A-Z_][A-Z0-9_]*=")
_OWN_LINE = b'{"ts":'  # how every line the milter writes starts
_JOURNAL_KEYS = (b'"__CURSOR":', b'"__REALTIME_TIMESTAMP":', b'"MESSAGE":')
_SPACE = b" \t\r\n"


def detect_format(data: bytes, complete: bool = False) -> str | None:
    """The format of a source whose first bytes are ``data``, or None when they do not tell (all
    blank, or a first line that is not complete yet; ``complete``: ``data`` is all there is of it).

    The milter's own lines (``{"ts":``: a journal field name is never lower case) are ``lines``,
    whatever their values hold; other JSON whose first line has a journal key (``"__CURSOR":``,
    ``"__REALTIME_TIMESTAMP":``, ``"MESSAGE":``, never keys of an event, unescaped) is
    ``journal-json``, other JSON ``lines``; a first line that starts ``KEY=`` (``__CURSOR=``)
    ``journal-export``; a syslog line (:func:`syslog_split`: time stamp, host, tag, of any program)
    or a journalctl marker (``-- Boot ... --``) ``syslog``; anything else ``lines`` (``journalctl
    -u mailpolicy -o cat`` after a restart starts with systemd's ``Started ...``; a ``<6>`` priority
    journald did not strip is cut off when the line is read)."""
    s = data.lstrip(_SPACE)
    if not s:
        return None
    if s[:1] == b"\x1e":  # -o json-seq: RFC 7464 record separator before each object
        return JOURNAL_JSON
    if s.startswith(_OWN_LINE):
        return LINES
    nl = s.find(b"\n")
    first = s if nl < 0 else s[:nl]
    if s[:1] == b"{":
        if any(key in first for key in _JOURNAL_KEYS):
            return JOURNAL_JSON
        if nl < 0 and not complete:
            return None
        if first.rstrip() == b"{":
            raise UnsupportedInput("journalctl -o json-pretty is not read: use -o json, -o export or -o cat")
        return LINES
    if nl < 0 and not complete:
        return None
    if _EXPORT_FIELD.match(first):
        return JOURNAL_EXPORT
    if _SYSLOG.match(first) or is_marker(first.strip()):
        return SYSLOG
    return LINES


def sniff(fh: Stream) -> tuple[str, list[bytes]]:
    """Detect the format of ``fh`` from its first non-blank line, and the lines read for that
    (empty when the buffered bytes were enough: the usual case, nothing is consumed)."""
    fmt = detect_format(fh.peek(1 << 16))
    if fmt is not None:
        return fmt, []
    prefix: list[bytes] = []
    while len(prefix) < MAX_SNIFF_LINES:
        line = fh.readline(MAX_LINE)
        if not line:
            break
        prefix.append(line)
        fmt = detect_format(line, complete=True)
        if fmt is not None:
            return fmt, prefix
    return LINES, prefix


# ---- converters -------------------------------------------------------------------------------


def strip_priority(msg: bytes) -> bytes:
    """``msg`` without a leading ``<N>`` syslog priority."""
    if msg[:1] == b"<":
        end = msg.find(b">", 1, 5)
        if end > 1 and msg[1:end].isdigit():
            return msg[end + 1 :]
    return msg


class JournalEntry(msgspec.Struct):
    """A ``journalctl -o json`` line: only ``MESSAGE`` is decoded. Unset: the entry has none; None:
    journalctl left it out (over 4096 bytes without ``--all``); a list: byte values (not valid
    UTF-8), or several values of the field."""

    MESSAGE: str | list[Any] | msgspec.UnsetType | None = msgspec.UNSET


JOURNAL_DECODER = msgspec.json.Decoder(JournalEntry)


def message_bytes(value: str | list[Any]) -> bytes | None:
    """A journal JSON ``MESSAGE`` value as bytes: a string, an array of byte values, or (a field
    given several times) an array of those, of which the first counts."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if not value:
        return b""
    if isinstance(value[0], int):
        try:
            return bytes(value)
        except (ValueError, TypeError):
            return None
    first = value[0]
    return message_bytes(first) if isinstance(first, str | list) else None


def journal_json(lines: Iterable[bytes], info: SourceInput) -> Iterator[bytes]:
    """Event lines from ``journalctl -o json`` (or ``json-seq``) lines. A line that is not a journal
    entry is passed on as it is (the aggregator counts it: blank, malformed...)."""
    decode = JOURNAL_DECODER.decode
    for line in lines:
        if line[:1] == b"\x1e":
            line = line[1:]
        try:
            msg = decode(line).MESSAGE
        except DecodeError:
            yield line
            continue
        if type(msg) is str:
            yield strip_priority(msg.encode("utf-8", "surrogatepass"))
        elif msg is msgspec.UNSET:
            yield b""
        elif msg is None:
            info.omitted += 1
            yield b""
        else:
            data = message_bytes(cast(list[Any], msg))
            # an array that is no message: its JSON, which the aggregator counts as malformed
            yield msgspec.json.encode(msg) if data is None else strip_priority(data)


def _text_entries(region: bytes) -> Iterator[bytes]:
    """The messages of export entries that have only text fields (``region`` holds whole entries,
    a blank line between them, none after the last): no text value holds a newline, so a blank
    line ends an entry and ``MESSAGE=`` starts a line. Found with ``find`` and ``count`` rather than
    by splitting, which is several times slower; an entry without ``MESSAGE`` gives ``b""``, a
    second ``MESSAGE`` in an entry is ignored."""
    n = len(region)
    find, count = region.find, region.count
    have = False  # the current entry gave its message
    prev = 0  # the bytes since the last message (or the start) are looked at for entry ends
    if region.startswith(b"MESSAGE="):
        end = find(b"\n", 8)
        end = n if end < 0 else end
        yield strip_priority(region[8:end])
        have, prev = True, end
    while True:
        i = find(b"\nMESSAGE=", prev)
        # blank lines up to this MESSAGE line (its newline included: it may end a blank line),
        # and the end of the region, end entries
        ends = count(b"\n\n", prev, n if i < 0 else i + 1) + (i < 0)
        if ends:
            if not have:
                yield b""
            for _ in range(ends - 1):
                yield b""
            have = False
        if i < 0:
            return
        end = find(b"\n", i + 9)
        end = n if end < 0 else end
        if not have:
            yield strip_priority(region[i + 9 : end])
            have = True
        prev = end


def _walk_entry(buf: bytes, pos: int, eof: bool) -> tuple[bytes | None, int] | None:
    """One export entry starting at ``pos``, field by field (binary fields included): its
    ``MESSAGE`` (None: none) and where the next entry starts; None when ``buf`` ends inside it and
    more is to come. At ``eof`` a cut-off entry ends where the data does."""
    msg: bytes | None = None
    p, n = pos, len(buf)
    while True:
        nl = buf.find(b"\n", p)
        if nl < 0:
            if not eof:
                return None
            nl = n  # a last line without its newline
        if nl == p:  # the blank line after the entry
            return msg, min(p + 1, n)
        eq = buf.find(b"=", p, nl)
        if eq >= 0:
            if msg is None and eq - p == 7 and buf.startswith(b"MESSAGE", p):
                msg = buf[eq + 1 : nl]
            p = nl + 1
        else:  # binary field: NAME \n le64 length, data \n
            if nl + 9 > n:
                return (msg, n) if eof else None
            size = int.from_bytes(buf[nl + 1 : nl + 9], "little")
            if size > MAX_EXPORT_FIELD:
                raise UnsupportedInput(
                    f"journal export: a field of {size} bytes (not the export format, or damaged)"
                )
            stop = nl + 9 + size
            if stop >= n and not eof:
                return None
            if msg is None and buf[p:nl] == b"MESSAGE":
                msg = buf[nl + 9 : stop]
            p = stop + 1
        if p >= n:  # the data ends after a field: the entry may go on, unless it is all there is
            return (msg, n) if eof else None


def journal_export(fh: Stream, head: bytes, info: SourceInput) -> Iterator[bytes]:
    """Event lines from ``journalctl -o export``; ``head``: bytes already read from ``fh``.

    Text fields never hold a NUL byte and a binary field's length always does (its high bytes are
    zero), so the bytes before the first NUL are text entries only, split fast; the entry with a
    binary field is walked field by field (:func:`_walk_entry`)."""
    buf, eof = head, False
    while not eof:
        data = fh.read1(EXPORT_CHUNK)
        if data:
            buf = buf + data if buf else data
        else:
            eof = True
        pos, n = 0, len(buf)
        while pos < n:
            while pos < n and buf[pos] == 10:  # blank lines between entries
                pos += 1
            if pos >= n:
                break
            nul = buf.find(b"\x00", pos)
            # A binary field's header newline and length bytes can look like a blank line: they lie
            # within 9 bytes before the field's first NUL, or in the last 9 bytes of buf while the
            # length is not all read yet. Only a blank line before those ends a text entry.
            limit = nul - 8 if nul >= 0 else (n if eof else n - 8)
            end = buf.rfind(b"\n\n", pos, limit) if limit > pos else -1
            if end >= 0:
                yield from _text_entries(buf[pos:end])
                pos = end + 2
                continue
            if nul < 0 and not eof:
                break  # the rest is an entry still being read
            walked = _walk_entry(buf, pos, eof)
            if walked is None:
                break
            msg, pos = walked
            yield b"" if msg is None else strip_priority(msg)
        buf = buf[pos:]


_BLOB = re.compile(rb"\[[0-9.]+[BKMGTPE] blob data\]")  # [82B blob data], [4.9K blob data]

# A syslog line, anchored at its start: an optional <PRI>, then either
# - RFC 3164 and journalctl -o short*: a time stamp, the host, the tag ``NAME[PID]:`` or ``NAME:``
#   (journalctl -o with-unit writes the unit, ``NAME.service[PID]:``), a space, the message;
# - RFC 5424: ``1 TIMESTAMP HOST APP-NAME PROCID MSGID STRUCTURED-DATA MSG``.
# The time stamps: ``Nov 20 00:00:01`` (RFC 3164, -o short, with ``.123456`` -o short-precise),
# ISO 8601 (rsyslog's file format, -o short-iso, -o short-iso-precise), ``Fri 2026-11-20 00:00:01
# CET`` (-o short-full, -o with-unit), ``[ 12.345678]`` (-o short-monotonic, with ``<  0.1>``
# -o short-delta), ``1795000000.123456`` (-o short-unix). Every field before the message is one
# token without spaces: the tag is found at its place, never in a message.
_TS = (
    rb"(?:[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    rb"|[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]+)?"
    rb"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
    rb"|[A-Z][a-z]{2} [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)? [^ ]+"
    rb"|\[ *[0-9]+\.[0-9]+(?: <[ 0-9.]+>)?\]"
    rb"|[0-9]+\.[0-9]+)"
)
_SD = rb'(?:-|(?:\[(?:[^\]"\\]|"(?:[^"\\]|\\.)*")*\])+)'  # RFC 5424 STRUCTURED-DATA
_SYSLOG = re.compile(
    rb"(?:<[0-9]{1,3}>)?(?:"
    + _TS
    + rb" [^ ]+ (?P<tag>[^ \[\]:]+)(?:\[[0-9]*\])?:"
    + rb"|1 [^ ]+ [^ ]+ (?P<app>[^ ]+) [^ ]+ [^ ]+ "
    + _SD
    + rb"(?= |\r?\n|$))(?: |(?=\r?\n|$))"
)
_BOM = b"\xef\xbb\xbf"  # may start an RFC 5424 MSG
MINE, OTHER, NOT_SYSLOG = 0, 1, 2
NOT_AN_EVENT = b"{}"
"""What a syslog line of another program becomes: a JSON object without "event", counted as a
non-event line (as the milter's diagnostics are)."""
NOT_SYSLOG_LINE = b"\x00not a syslog line\x00"
"""Put before a line of syslog input that is no syslog line (nor blank, a marker, a continuation):
the aggregator counts it as malformed, with its own words, and never reads it as an event."""


def ident_tags(names: Iterable[str]) -> frozenset[bytes]:
    """The syslog tags that are mailpolicy's, from its identifiers: ``NAME`` and ``NAME.service``
    (journalctl -o with-unit)."""
    out: set[bytes] = set()
    for name in names:
        raw = name.encode("utf-8", "surrogateescape")
        out |= {raw, raw + b".service"}
    return frozenset(out)


DEFAULT_TAGS = ident_tags([DEFAULT_IDENT])


def current_idents() -> frozenset[bytes]:
    """The syslog tags of mailpolicy for the input being read (see :func:`recording`)."""
    log = _CURRENT.get()
    return log.idents if log is not None else DEFAULT_TAGS


def is_marker(s: bytes) -> bool:
    """A journalctl marker line (``-- Boot ... --``, ``-- No entries --``), stripped."""
    return s.startswith(b"-- ") and s.endswith(b" --")


def syslog_split(line: bytes, idents: frozenset[bytes] = DEFAULT_TAGS) -> tuple[int, bytes]:
    """``(MINE, message)`` for a syslog line whose tag is one of ``idents`` (the message without a
    ``<N>`` priority or a BOM at its start), ``(OTHER, b"")`` for another program's syslog line,
    ``(NOT_SYSLOG, line)`` for a line that is no syslog line."""
    m = _SYSLOG.match(line)
    if m is None:
        return NOT_SYSLOG, line
    if (m["tag"] or m["app"]) not in idents:
        return OTHER, b""
    msg = line[m.end() :]
    if msg[:3] == _BOM:
        msg = msg[3:]
    return MINE, strip_priority(msg)


def event_json(line: bytes, idents: frozenset[bytes] = DEFAULT_TAGS) -> bytes | None:
    """The JSON object of a line the typed decoder refused, for a second try: the line without a
    ``<N>`` priority journald did not strip, or the message of one of mailpolicy's syslog lines
    (``--input-format lines`` given syslog lines); None for anything else, another program's
    syslog line first (never the JSON found inside its message)."""
    if line[:1] == b"{":
        return line
    bare = strip_priority(line)
    if bare[:1] == b"{":
        return bare
    kind, msg = syslog_split(line, idents)
    return msg if kind == MINE else None


def syslog_lines(
    lines: Iterable[bytes], info: SourceInput, idents: frozenset[bytes] = DEFAULT_TAGS
) -> Iterator[bytes]:
    """Event lines from syslog lines (see :func:`syslog_split`): the message of each of
    mailpolicy's lines. An empty message (``... mailpolicy[42]:``) and journalctl's ``-- ... --``
    lines are blank; a message shown as ``[... blob data]`` (not valid UTF-8, or not printable) is
    omitted; another program's line, and a line that continues a message (journalctl indents
    them), is no event; any other line is malformed."""
    split = syslog_split
    for line in lines:
        kind, msg = split(line, idents)
        if kind == MINE:
            if msg[:1] == b"{":
                yield msg
                continue
            s = msg.strip()
            if not s:
                yield b""
            elif _BLOB.fullmatch(s):
                info.omitted += 1
                yield b""
            else:
                yield msg  # mailpolicy's, but no JSON (a traceback): malformed
        elif kind == OTHER:
            yield NOT_AN_EVENT
        else:
            s = line.strip()
            if not s or is_marker(s):
                yield b""
            elif line[:1] in b" \t":
                yield NOT_AN_EVENT
            else:
                yield NOT_SYSLOG_LINE + line


# ---- names seen, for the --host / --policy check -----------------------------------------------


class Names(msgspec.Struct):
    event: str | None = None
    ts: str = ""
    host: str | None = None
    policies: dict[str, msgspec.Raw] | None = None


class PolicyNames(msgspec.Struct):
    policies: dict[str, msgspec.Raw] | None = None


NAMES_DECODER = msgspec.json.Decoder(Names)
POLICY_NAMES_DECODER = msgspec.json.Decoder(PolicyNames)
_TS_KEY, _HOST_KEY, _SCHEMA_KEY = b'{"ts":"', b'","host":"', b',"schema":'
_TXN_KEY = b'"event":"transaction"'


def track(lines: Iterable[bytes], seen: Seen, idents: frozenset[bytes] = DEFAULT_TAGS) -> Iterator[bytes]:
    """Pass the lines on, recording in ``seen`` the host and time of every event, and with
    ``seen.track_policies`` the policy names of every transaction.

    The milter writes ``{"ts":"<24 characters>","host":"...","schema":N,"event":...`` (diagnostics
    have no ``schema``): such a line is read by slicing; any other is decoded (slower)."""
    known: set[bytes] = set()  # the hosts in seen.hosts, as written
    policies = seen.policies
    with_policies = seen.track_policies
    first, last = seen.first.encode(), seen.last.encode()
    events = 0
    try:
        for line in lines:
            yield line
            names: dict[str, msgspec.Raw] | None = None
            fast = line.startswith(_TS_KEY) and line.startswith(_HOST_KEY, 31)
            end = line.find(b'"', 41) if fast else -1
            if end > 0 and b"\\" not in line[41:end]:
                if not line.startswith(_SCHEMA_KEY, end + 1):
                    continue  # a diagnostics line
                ts, host = line[7:31], line[41:end]
                if with_policies and line.find(_TXN_KEY, end, end + 40) > 0:
                    try:
                        names = POLICY_NAMES_DECODER.decode(line).policies
                    except DecodeError:
                        continue
            else:
                payload = event_json(line, idents)
                if payload is None:
                    continue
                try:
                    rec = NAMES_DECODER.decode(payload)
                except DecodeError:
                    continue
                if rec.event is None:
                    continue
                ts, host, names = rec.ts.encode(), (rec.host or "").encode(), rec.policies
            events += 1
            if len(ts) == 24 and ts[-1:] == b"Z":  # canonical UTC: compares as text
                if not first or ts < first:
                    first = ts
                if ts > last:
                    last = ts
            if host not in known:
                if len(seen.hosts) < MAX_SEEN:
                    known.add(host)
                    seen.hosts.add(host.decode("utf-8", "replace"))
                else:
                    seen.capped = True
            if names and not policies.issuperset(names):
                for name in names:
                    if len(policies) < MAX_SEEN:
                        policies.add(name)
                    else:
                        seen.capped = True
    finally:
        seen.events += events
        seen.first, seen.last = first.decode("utf-8", "replace"), last.decode("utf-8", "replace")


# ---- logrotate sets -----------------------------------------------------------------------------

_ROTATED = re.compile(r"(?P<base>.+?)(?:-(?P<date>\d(?:[\d_.-]*\d)?)|\.(?P<num>\d+))(?:\.gz)?")


def rotation_key(name: str) -> tuple[str, tuple[int, ...]]:
    """``(base, order)`` of a file name: ``base`` is the live file of its logrotate set, ``order``
    sorts the set oldest first. ``FILE-DATE[.gz]`` (dateext, any dateformat made of digits)
    sorts by its numbers, ``FILE.N[.gz]`` by N downwards (``.1`` is the newest), FILE itself last."""
    m = _ROTATED.fullmatch(name)
    if m is None:
        return name, (2,)
    if m["date"] is not None:
        return m["base"], (1, *(int(x) for x in re.findall(r"\d+", m["date"])))
    return m["base"], (0, -int(m["num"]))


def reading_order(names: Sequence[str]) -> list[str]:
    """``names`` in the order to read them: the files of one logrotate set (see
    :func:`rotation_key`) oldest first, the live file last, where the set's first file was given;
    everything else as given. The shell sorts ``events.log*`` with the live file first and
    ``.10`` before ``.2``: the events would not be read in time order."""
    groups: dict[tuple[int, str], list[tuple[tuple[int, ...], int, str]]] = {}
    for i, name in enumerate(names):
        if name == "-":  # standard input is a set of its own, wherever it is
            groups[(i, name)] = [((2,), i, name)]
            continue
        base, key = rotation_key(name)
        groups.setdefault((-1, base), []).append((key, i, name))
    return [name for group in groups.values() for _, _, name in sorted(group)]


def rescan(
    names: Iterable[str],
    input_format: str = AUTO,
    policies: bool = False,
    syslog_idents: Sequence[str] = (DEFAULT_IDENT,),
) -> Seen:
    """The hosts, time span and (with ``policies``) policy names of the events in the files
    ``names`` (standard input, which cannot be read twice, is left out), read once more: what
    explains a filter that matched nothing, when reading them the first time did not record it."""
    log = InputLog(input_format, track=True, track_policies=policies, syslog_idents=syslog_idents)
    with recording(log):
        for name in names:
            if name == "-":
                continue
            try:
                with open_source(name) as fh:
                    for _ in fh:
                        pass
            except (OSError, EOFError):
                pass  # said already, by the reading that made the report
    assert log.seen is not None
    return log.seen
