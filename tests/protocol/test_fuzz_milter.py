"""Protocol tier: a bounded, seeded fuzz run through the real ``mailpolicy run`` process.

Two milter processes are started once for the module, both with authentication on, a fixed
authserv-id, events to a log file *and* to standard output, and DNS pointed at a loopback server
with a hostile zone (tests/support/hostile.py): one with every policy in ``monitor`` mode, one with
every policy in ``enforce`` mode. A few thousand generated hostile SMTP sessions are played against
both over the milter protocol, from several client threads at once, and then these invariants are
checked (every violation is collected; the failure names the seed and how to replay):

1. both processes stay up, their stderr has no "Traceback" and no "Logging error";
2. every line of every sink (event log file, captured stdout) is UTF-8 and one JSON object: events
   carry ``event`` in {transaction, connection}, ``ts``, ``host``, ``schema``; other lines are
   diagnostics with ``level``, ``logger``, ``msg``;
3. monitor: every stage reply is continue, and at end of message the only changes are exactly one
   added Authentication-Results field and deletions of Authentication-Results fields;
4. every message accepted at end of message gets exactly one added Authentication-Results field that
   parses with ``authres`` in strict mode, with our authserv-id;
5. every incoming Authentication-Results field claiming our authserv-id (first token after CFWS;
   comments nest) is deleted by index, and no other field is;
6. every transaction event has a decision for every MAIL-stage policy and, when end of message was
   reached, for dmarc; one transaction event per MAIL FROM and one connection event per connection
   that sent a connect.

Environment: MAILPOLICY_FUZZ_SEED (default below), MAILPOLICY_FUZZ_SESSIONS (generated sessions, each
played against both milters), MAILPOLICY_FUZZ_ONLY (comma-separated session indexes to replay),
MAILPOLICY_FUZZ_KEEP=1 (keep the milters' directory: logs, stdout, stderr), MAILPOLICY_FUZZ_REPORT=FILE
(write every violation, by kind, and the plans of the sessions involved, as JSON),
MAILPOLICY_FUZZ_RACY=0 (wait for the milter to close first after QUIT or when dropping a connection;
by default the client hangs up at once, as Postfix does: libmilter then drops commands still
buffered, which is why the milter answers connect and HELO rather than negotiating them no-reply)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import authres
import authres.core
import pytest

from mailpolicy.auth import header as auth_header
from mailpolicy.events import WRITER_DELAY
from mailpolicy.message import MAX_AR_UNUSUAL
from support import hostile
from support.authres_strict import parse_strict
from support.dnsserver import DnsServer
from support.hostile import AUTHSERV_ID, Session, SessionResult
from support.milterclient import INSHEADER, Reply
from support.stack import MilterProcess, make_workdir

pytestmark = pytest.mark.protocol

DEFAULT_SEED = "mailpolicy-fuzz-1"
SEED = os.environ.get("MAILPOLICY_FUZZ_SEED", DEFAULT_SEED)
SESSIONS = int(os.environ.get("MAILPOLICY_FUZZ_SESSIONS", "1000"))
ONLY = [int(x) for x in os.environ.get("MAILPOLICY_FUZZ_ONLY", "").split(",") if x.strip()]
KEEP = os.environ.get("MAILPOLICY_FUZZ_KEEP") == "1"
REPORT = os.environ.get("MAILPOLICY_FUZZ_REPORT", "")
RACY = os.environ.get("MAILPOLICY_FUZZ_RACY", "1") == "1"
THREADS = 6
POLICIES = ("require_starttls", "tls_min_version", "spf", "dmarc")
MAIL_POLICIES = ("require_starttls", "tls_min_version", "spf")
AR = "authentication-results"
SHOWN = 20


class CapturingMilter(MilterProcess):
    """MilterProcess with its standard output captured to a file (``log.stdout = true`` is the
    second sink under test)."""

    def start(self, capture_stdout: bool = True, env: dict[str, str] | None = None) -> CapturingMilter:
        super().start(capture_stdout=True, env=env)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def milter_config(dns: DnsServer, mode: str) -> dict[str, Any]:
    return {
        "milter": {"timeout": 30, "hostname": AUTHSERV_ID},
        "log": {"stdout": True, "level": "info"},
        "dns": {"nameservers": [dns.nameserver], "timeout": 0.2},
        "auth": {"enabled": True, "authserv_id": AUTHSERV_ID, "spf_timeout": 0.5},
        "policies": {name: {"mode": mode} for name in POLICIES},
    }


@pytest.fixture(scope="module")
def fuzz_dns() -> Iterator[DnsServer]:
    with DnsServer() as srv:
        hostile.load_zone(srv)
        yield srv


@pytest.fixture(scope="module")
def milters(fuzz_dns: DnsServer) -> Iterator[dict[str, CapturingMilter]]:
    workdir = make_workdir("mailpolicy-fuzz-")
    procs: dict[str, CapturingMilter] = {}
    try:
        for mode in ("monitor", "enforce"):
            (workdir / mode).mkdir()
            procs[mode] = CapturingMilter(workdir / mode, milter_config(fuzz_dns, mode)).start()
        yield procs
    finally:
        for p in procs.values():
            p.stop()
        if KEEP:
            print(f"\nfuzz: milter directories kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# -- the harness's own reading of RFC 8601 / RFC 5322 --------------------------------------------------

_TOKEN = frozenset(range(0x21, 0x7F)) - frozenset(b'()<>@,;:\\"/[]?=')


def claimed_authserv_id(value: bytes) -> bytes | None:
    """The authserv-id an Authentication-Results value claims: the first ``value`` (RFC 2045 token
    or quoted-string, quoted-pairs undone) after CFWS, comments nesting as in RFC 5322; None when
    there is none (empty, unterminated comment or quoted-string)."""
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c in b" \t\r\n":
            i += 1
            continue
        if c != ord("("):
            break
        depth = 0
        while True:
            if i >= n:
                return None  # unterminated comment
            c = value[i]
            if c == ord("\\"):
                i += 2
                continue
            i += 1
            if c == ord("("):
                depth += 1
            elif c == ord(")"):
                depth -= 1
                if depth == 0:
                    break
    if i >= n:
        return None
    if value[i] == ord('"'):
        out = bytearray()
        i += 1
        while i < n:
            c = value[i]
            if c == ord("\\") and i + 1 < n:
                out.append(value[i + 1])
                i += 2
            elif c == ord('"'):
                return bytes(out) or None
            elif c in b"\r\n":
                i += 1  # folding inside the quoted-string: the line break is not content
            else:
                out.append(c)
                i += 1
        return None
    j = i
    while j < n and value[j] in _TOKEN:
        j += 1
    return value[i:j] or None


def claims_ours(value: bytes) -> bool:
    """Case-insensitive; a trailing dot (an absolute domain name) is the same name."""
    ident = claimed_authserv_id(value)
    ours = AUTHSERV_ID.encode()
    return ident is not None and ident.lower() in (ours, ours + b".")


def liberally_ours(ars: list[bytes]) -> set[int]:
    """The A-R fields (1-based) mailpolicy may remove beyond what the strict oracle calls ours: those
    some lenient reader takes as ours (auth.header.claims: white space such as VT before the id,
    comments closed flat, ...), and the odd-shaped ones past message.MAX_AR_UNUSUAL, removed unread.
    "Forged kept" stays judged by the strict, independent oracle above."""
    out, unusual = set(), 0
    for i, value in enumerate(ars, 1):
        if auth_header.claims_usual(value, AUTHSERV_ID) is None:
            unusual += 1
            if unusual > MAX_AR_UNUSUAL or auth_header.claims(value, AUTHSERV_ID):
                out.add(i)
    return out


@pytest.mark.parametrize(("value", "ours"), hostile.AR_FIXED)
def test_harness_authserv_id_parser(value: bytes, ours: bool) -> None:
    """The oracle for invariant 5 agrees with the hand-written variants."""
    assert claims_ours(value) is ours


strict_parse = parse_strict


def test_harness_strict_parser_accepts_a_header_and_refuses_junk() -> None:
    h = strict_parse(f"{AUTHSERV_ID}; spf=pass smtp.mailfrom=a@pass.fuzz.example; dmarc=none")
    assert h.authserv_id == AUTHSERV_ID
    for bad in (
        f"{AUTHSERV_ID}; spf=pass smtp.mailfrom=a,b@x",
        f"{AUTHSERV_ID}; spf=pass smtp.mailfrom=a@[1.2.3.4]",
    ):
        with pytest.raises(authres.core.SyntaxError):
            strict_parse(bad)


# -- violations ------------------------------------------------------------------------------------------


class Violations:
    def __init__(self) -> None:
        self.by_kind: dict[str, list[str]] = defaultdict(list)
        self.sessions: dict[str, set[int]] = defaultdict(set)

    def add(self, kind: str, message: str, session: Session | None = None) -> None:
        self.by_kind[kind].append(message if session is None else f"session {session.index}: {message}")
        if session is not None:
            self.sessions[kind].add(session.index)

    def __bool__(self) -> bool:
        return bool(self.by_kind)

    def summary(self, header: str, plans: dict[int, Session]) -> str:
        lines = [header, "", "violations by kind (count, sessions):"]
        for kind in sorted(self.by_kind):
            lines.append(f"  {len(self.by_kind[kind]):6d}  {len(self.sessions[kind]):5d}  {kind}")
        # The first ~20, round-robin over the kinds so that every kind shows an example.
        shown: list[str] = []
        queues = {k: list(v) for k, v in sorted(self.by_kind.items())}
        while len(shown) < SHOWN and any(queues.values()):
            for kind, q in queues.items():
                if q and len(shown) < SHOWN:
                    shown.append(f"[{kind}] {q.pop(0)}")
        lines += ["", f"first {len(shown)}:"] + [f"  {s[:700]}" for s in shown]
        examples = sorted({min(v) for v in self.sessions.values() if v})[:4]
        if examples:
            lines += ["", "plans of a few failing sessions:"]
            lines += [hostile.describe(plans[i], 1500) for i in examples]
            lines.append(
                f"replay: MAILPOLICY_FUZZ_SEED={SEED!r} MAILPOLICY_FUZZ_ONLY={','.join(map(str, examples))} "
                "pytest tests/protocol/test_fuzz_milter.py"
            )
        return "\n".join(lines)


# -- checks ------------------------------------------------------------------------------------------------


def check_process(name: str, m: CapturingMilter, v: Violations) -> None:
    kind = "1 process"
    if not m.alive():
        rc = m.proc.returncode if m.proc is not None else None
        v.add(kind, f"{name}: the milter process exited (rc {rc})")
    text = m.stderr_text()
    for needle in ("Traceback", "Logging error"):
        at = text.find(needle)
        if at >= 0:
            first = text[max(0, at - 100) : at + 600]
            v.add(kind, f"{name}: stderr has {text.count(needle)} x {needle!r}; first: {first!r}")
    # Beyond the letter of invariant 1: anything else on stderr (pymilter prints an exception it
    # could not hand to the milter, e.g. undecodable callback arguments, without a traceback).
    errors = Counter(m.group(0)[:160] for m in re.finditer(r"(?m)^\w+(?:Error|Exception|Warning): .*$", text))
    for line, n in errors.most_common(5):
        v.add("1 stderr output", f"{name}: {n} x {line!r}")
    if text and not errors and "Traceback" not in text and "Logging error" not in text:
        v.add("1 stderr output", f"{name}: {text[:600]!r}")


def read_sink(name: str, sink: str, path: Path, v: Violations) -> list[dict[str, Any]]:
    kind = "2 sink"
    data = path.read_bytes() if path.exists() else b""
    lines = data.split(b"\n")
    if lines[-1]:
        v.add(kind, f"{name} {sink}: last line has no newline: {lines[-1][:200]!r}")
    out: list[dict[str, Any]] = []
    for no, raw in enumerate(lines[:-1], 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            v.add(kind, f"{name} {sink} line {no}: not UTF-8 ({exc.reason} at {exc.start}): {raw[:300]!r}")
            continue
        try:
            obj = json.loads(text)
        except ValueError as exc:
            v.add(kind, f"{name} {sink} line {no}: not JSON ({exc}): {text[:300]!r}")
            continue
        if not isinstance(obj, dict):
            v.add(kind, f"{name} {sink} line {no}: not a JSON object: {text[:300]!r}")
            continue
        if "event" in obj:
            missing = [k for k in ("ts", "host", "schema") if k not in obj]
            if obj["event"] not in ("transaction", "connection") or missing:
                v.add(kind, f"{name} {sink} line {no}: bad event (missing {missing}): {text[:300]!r}")
                continue
        elif any(k not in obj for k in ("level", "logger", "msg")):
            v.add(kind, f"{name} {sink} line {no}: neither an event nor a diagnostic: {text[:300]!r}")
            continue
        out.append(obj)
    return out


def _ar_added(actions: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    return [
        str(a["value"]) for cmd, a in actions if cmd in ("h", "i") and str(a.get("name", "")).lower() == AR
    ]


def check_monitor_replies(res: SessionResult, v: Violations) -> None:
    kind = "3 monitor"
    s = res.session
    for stage, r in res.replies:
        if r.cmd != "c":
            v.add(kind, f"{stage} reply {r.cmd!r} {r.text or ''}", s)
    for t in res.txns:
        if t.eom is None:
            continue
        for cmd, a in t.eom.actions:
            name = str(a.get("name", "")).lower()
            if cmd in ("h", "i") and name == AR:
                continue
            if cmd == "m" and name == AR and a.get("value") == "":
                continue
            v.add(kind, f"txn {t.number}: modification {cmd!r} {a}", s)


def unfold(value: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", value)


_QUOTED_PVALUE = re.compile(r'=\s*"(?:[^"\\]|\\.)*"')


def syntax_kind(text: str) -> str:
    """Name the kind of an A-R syntax violation. ``authres`` refuses a quoted-string pvalue that is
    followed by another property (``header.b="a=b" header.a=rsa-sha256``), which RFC 8601 allows:
    when the value parses with such pvalues made tokens, say so (still a violation: consumers that
    use ``authres`` cannot read the header)."""
    try:
        strict_parse(_QUOTED_PVALUE.sub("=x", text))
    except Exception:
        return "4 A-R syntax"
    return "4 A-R syntax (only quoted pvalues: an authres limitation, valid RFC 8601)"


def check_eom(res: SessionResult, v: Violations) -> None:
    s = res.session
    for t in res.txns:
        if t.eom is None or t.eom.cmd not in ("c", "a"):
            continue
        acts = t.eom.actions
        added = _ar_added(acts)
        if len(added) != 1:
            v.add("4 A-R added", f"txn {t.number}: {len(added)} Authentication-Results added: {acts[:3]}", s)
        for value in added:
            text = unfold(value)
            if "\n" in text or "\r" in text:
                v.add("4 A-R syntax", f"txn {t.number}: line break not followed by WSP: {value!r}", s)
                continue
            try:
                hdr = strict_parse(text)
            except Exception as exc:
                v.add(syntax_kind(text), f"txn {t.number}: {type(exc).__name__}: {exc}: {text!r}", s)
                continue
            if hdr.authserv_id != AUTHSERV_ID:
                v.add("4 A-R authserv-id", f"txn {t.number}: authserv-id {hdr.authserv_id!r}: {text!r}", s)
        # 5: forged fields deleted by index, nothing else deleted.
        ars = [value for name, value in t.headers_sent if name.lower() == AR.encode()]
        expected = {i for i, value in enumerate(ars, 1) if claims_ours(value)}
        deleted = [int(a["index"]) for cmd, a in acts if cmd == "m" and str(a.get("name", "")).lower() == AR]
        others = [(cmd, a) for cmd, a in acts if cmd == "m" and str(a.get("name", "")).lower() != AR]
        for cmd, a in others:
            v.add("5 A-R removal", f"txn {t.number}: other header changed: {cmd!r} {a}", s)
        if len(deleted) != len(set(deleted)):
            v.add("5 A-R removal", f"txn {t.number}: an index deleted twice: {deleted}", s)
        for i in sorted(expected - set(deleted)):
            v.add(
                "5 A-R forged kept" + ("" if added else " (no A-R written either)"),
                f"txn {t.number}: A-R #{i} of {len(ars)} claims our authserv-id but was not deleted: "
                f"{ars[i - 1][:200]!r}",
                s,
            )
        for i in sorted(set(deleted) - expected - liberally_ours(ars)):
            what = repr(ars[i - 1][:200]) if 0 < i <= len(ars) else "(no such field)"
            v.add("5 A-R wrong deletion", f"txn {t.number}: A-R #{i} of {len(ars)} deleted: {what}", s)


def check_events(
    name: str, results: Sequence[SessionResult], events: Sequence[dict[str, Any]], v: Violations
) -> None:
    kind = f"6 events ({name})"
    by_port: dict[int, Session] = {}
    for r in results:
        if r.session.port is not None:
            by_port[r.session.port] = r.session
    txn_ev: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    conn_ev: dict[int, list[dict[str, Any]]] = defaultdict(list)
    n_txn = n_conn = 0
    for ev in events:
        port = ev.get("client_port")
        if ev["event"] == "transaction":
            n_txn += 1
            if isinstance(port, int) and port in by_port:
                txn_ev[(port, int(ev.get("txn") or 0))].append(ev)
        else:
            n_conn += 1
            if isinstance(port, int) and port in by_port:
                conn_ev[port].append(ev)
    mails = sum(r.mails for r in results)
    connects = sum(r.connected for r in results)
    if n_txn != mails:
        v.add(kind, f"{n_txn} transaction events for {mails} MAIL FROM commands sent")
    if n_conn != connects:
        v.add(kind, f"{n_conn} connection events for {connects} connections that sent a connect")
    reached: dict[tuple[int, int], bool] = {}
    for r in results:
        port = r.session.port
        if port is None:
            continue
        if r.connected and len(conn_ev[port]) != 1:
            v.add(kind, f"{len(conn_ev[port])} connection events (client_port {port})", r.session)
        for t in r.txns:
            reached[(port, t.number)] = t.reached_eom
            got = txn_ev.get((port, t.number), [])
            if len(got) != 1:
                replies = " ".join(f"{st}:{rp.cmd}" for st, rp in t.replies[:8])
                v.add(
                    kind,
                    f"txn {t.number}: {len(got)} transaction events (client replies {replies})",
                    r.session,
                )
    for ev in events:
        if ev["event"] != "transaction":
            continue
        port = ev.get("client_port")
        key = (port, int(ev.get("txn") or 0)) if isinstance(port, int) else None
        s = by_port.get(port) if isinstance(port, int) else None
        at_eom = reached.get(key, ev.get("stage") == "eom") if key else ev.get("stage") == "eom"
        pols = ev.get("policies") or {}
        want = MAIL_POLICIES + (("dmarc",) if at_eom else ())
        missing = [p for p in want if p not in pols]
        if missing:
            v.add(
                kind,
                f"txn {ev.get('txn')} (stage {ev.get('stage')}, outcome {ev.get('outcome')}): "
                f"no decision for {missing}; policies {sorted(pols)}",
                s,
            )


def active_connections(m: CapturingMilter, timeout: float = 3.0) -> float:
    """``mailpolicy_connections_active`` once it is 0, or its value after ``timeout`` seconds. Every
    client waited for the milter to close its end, so every close callback has run (or is about to)."""
    value = -1.0
    deadline = time.monotonic() + timeout
    while m.alive():
        try:
            value = m.metric("mailpolicy_connections_active")
        except OSError:
            return value
        if value == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return value


def written(m: CapturingMilter, timeout: float = 5.0) -> None:
    """Wait until the writer thread has written what the last callbacks queued: events reach the
    sinks in batches up to events.WRITER_DELAY after their callback, one sink after the other, so
    both files are read once their sizes have held still for several writer periods."""
    paths = (m.log_file, m.stdout_path)
    last: tuple[int, ...] = ()
    still = 0
    deadline = time.monotonic() + timeout
    while still < 4 and time.monotonic() < deadline:
        sizes = tuple(p.stat().st_size if p.exists() else -1 for p in paths)
        still = still + 1 if sizes == last else 0
        last = sizes
        time.sleep(WRITER_DELAY)


def test_harness_checks_flag_synthetic_violations() -> None:
    """The EOM checks (invariants 3-5) catch what they should, and accept a correct answer."""
    s = Session(0, "synthetic", 0, None, [], "quit")
    forged = (b"Authentication-Results", b" (a (b) c) mx.fuzz.example; dkim=pass")
    foreign = (b"authentication-results", b" other.example; dkim=pass")
    good = (INSHEADER, {"index": 0, "name": "Authentication-Results", "value": f" {AUTHSERV_ID}; none"})

    def run(actions: list[tuple[str, dict[str, Any]]], cmd: str = "c") -> dict[str, list[str]]:
        t = hostile.TxnResult(1, headers_sent=[foreign, forged], eom=Reply(cmd, actions=actions))
        res = SessionResult(s, connected=True, mails=1, replies=[("eom", t.eom)] if t.eom else [], txns=[t])
        v = Violations()
        check_monitor_replies(res, v)
        check_eom(res, v)
        return dict(v.by_kind)

    delete_2 = ("m", {"index": 2, "name": "Authentication-Results", "value": ""})
    assert run([delete_2, good]) == {}
    assert set(run([good])) == {"5 A-R forged kept"}
    assert set(run([("m", {"index": 1, "name": "Authentication-Results", "value": ""}), good])) == {
        "5 A-R forged kept",
        "5 A-R wrong deletion",
    }
    assert set(run([delete_2])) == {"4 A-R added"}
    bad = (
        INSHEADER,
        {
            "index": 0,
            "name": "Authentication-Results",
            "value": f" {AUTHSERV_ID}; spf=pass smtp.mailfrom=a,b@x",
        },
    )
    assert set(run([delete_2, bad])) == {"4 A-R syntax"}
    assert set(run([delete_2, good, ("q", {"reason": "x"})])) == {"3 monitor"}
    assert set(run([], cmd="r")) == {"3 monitor"}


# -- the run -----------------------------------------------------------------------------------------------


def test_fuzz_hostile_sessions(milters: dict[str, CapturingMilter]) -> None:
    t0 = time.monotonic()
    pool = hostile.signed_pool()
    indexes = ONLY or list(range(SESSIONS))
    plans = {i: hostile.gen_session(SEED, i, pool) for i in indexes}
    jobs = [(name, plans[i]) for i in indexes for name in ("monitor", "enforce")]

    def play(job: tuple[str, Session]) -> tuple[str, SessionResult]:
        name, s = job
        m = milters[name]
        if not m.alive():
            res = SessionResult(s)
            res.error = "milter process not running"
            return name, res
        return name, hostile.run_session(m.socket, s, racy=RACY)

    t_play = time.monotonic()
    with ThreadPoolExecutor(max_workers=THREADS) as pool_ex:
        played = list(pool_ex.map(play, jobs))
    play_s = time.monotonic() - t_play
    results: dict[str, list[SessionResult]] = {"monitor": [], "enforce": []}
    for name, res in played:
        results[name].append(res)

    v = Violations()
    active = {name: active_connections(m) for name, m in milters.items()}
    for m in milters.values():
        written(m)
    stats: list[str] = []
    for name, m in milters.items():
        check_process(name, m, v)
        if active[name] != 0:
            v.add(
                "1 connections_active",
                f"{name}: mailpolicy_connections_active is {active[name]:g} after every client hung up "
                "(a close callback that failed, or never ran)",
            )
        events = read_sink(name, "events.log", m.log_file, v)
        stdout = read_sink(name, "stdout", m.stdout_path, v)
        n_file = sum("event" in e for e in events)
        n_out = sum("event" in e for e in stdout)
        if n_file != n_out:
            v.add("2 sink", f"{name}: {n_file} events in the log file, {n_out} on stdout")
        for res in results[name]:
            if res.error:
                v.add(f"0 client ({name})", res.error, res.session)
            if name == "monitor":
                check_monitor_replies(res, v)
            check_eom(res, v)
        evs = [e for e in events if "event" in e]
        check_events(name, results[name], evs, v)
        txns = [e for e in evs if e["event"] == "transaction"]
        outcomes = Counter(str(e.get("outcome")) for e in txns)
        errors = Counter(str(e.get("msg"))[:60] for e in events if e.get("level") in ("error", "warning"))
        mails = sum(r.mails for r in results[name])
        eoms = sum(t.reached_eom for r in results[name] for t in r.txns)
        stats.append(
            f"{name}: {len(results[name])} sessions, {mails} MAIL FROMs, {eoms} reached EOM; "
            f"events: {len(txns)} transaction {dict(outcomes)}; diagnostics warning/error: {dict(errors)}"
        )
    elapsed = time.monotonic() - t0
    mails_total = sum(r.mails for rs in results.values() for r in rs)
    header = (
        f"fuzz seed {SEED!r}: {len(indexes)} sessions x 2 milters, {mails_total} transactions, "
        f"{THREADS} threads, played in {play_s:.1f} s, {elapsed:.1f} s in all\n" + "\n".join(stats)
    )
    print("\n" + header)
    if REPORT:
        involved = sorted(set().union(*v.sessions.values())) if v.sessions else []
        doc = {
            "seed": SEED,
            "header": header,
            "violations": v.by_kind,
            "sessions": {k: sorted(x) for k, x in v.sessions.items()},
            "plans": {i: hostile.describe(plans[i], 100_000) for i in involved},
        }
        Path(REPORT).write_text(json.dumps(doc, indent=1))
    if v:
        pytest.fail(v.summary(header, plans), pytrace=False)
