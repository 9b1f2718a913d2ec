"""Every rule that decides a transaction's fate, in one module with no pymilter import.

A :class:`Session` is one SMTP connection seen through the milter protocol. It takes plain values
(``connect``, ``helo``, ``mail``, ``rcpt``, ``header``, ``end_of_headers``, ``body``, ``eom``,
``abort``, ``close``) and returns :class:`Response` values (and, at end of message, the header
edits). The adapter only translates pymilter callbacks and macros into these calls and the results
back into pymilter calls; the rules are tested here with plain calls.

The rules:
- **Stages.** MAIL-stage checks run at MAIL FROM, EOM-stage checks at end of message; each
  transaction runs under the :class:`Setup` (configuration) current when its MAIL FROM arrived.
- **Enforce never skips.** Every active policy records a decision for every transaction that
  reaches its stage. An input that cannot be read (a macro that is not UTF-8, a HELO pymilter
  could not pass on) is recorded in ``unreadable`` and the checks still run on what is known.
- **Monitor never touches mail.** Only :func:`mailpolicy.policy.enforceable` decisions refuse,
  tempfail or quarantine; the only other edits are ours: forged Authentication-Results removed,
  one Authentication-Results header added. The one exception, in every mode: a message with more
  forged Authentication-Results fields than an MTA can remove (:data:`MAX_AR_REMOVALS`) is refused.
- **Where refusals happen.** A MAIL-stage policy refuses at MAIL FROM, or, when it has
  ``exempt_recipients``, at each RCPT that is not exempt (a transaction whose recipients are all
  exempt is not refused). EOM-stage policies act at end of data, where the message cannot be split:
  it is exempt only when every recipient it goes to is exempt, so adding ``postmaster@`` to a spoof
  does not carry it to the other recipients. The strongest enforceable action wins.
- **One record per transaction and per connection**, written when it ends (EOM, abort, next MAIL,
  close), so that its outcome and ``applied`` flags are final.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mailpolicy import dns, envelope, events, metrics, policy
from mailpolicy.auth import AuthResults
from mailpolicy.auth import header as auth_header
from mailpolicy.auth.base import MethodSpec
from mailpolicy.auth.methods import METHODS, closure
from mailpolicy.checks import CHECKS
from mailpolicy.checks.base import CheckSpec
from mailpolicy.config import Config
from mailpolicy.message import Message
from mailpolicy.model import Action, Decision, PolicyConfig, Reply, Stage
from mailpolicy.state import Connection, Transaction, parse_ip
from mailpolicy.text import Macro, Unreadable, clean, macro_text
from mailpolicy.tls import TLS_MACROS, from_macros

log = logging.getLogger("mailpolicy.session")

_OUTCOME_OF = {Action.REJECT: "rejected", Action.TEMPFAIL: "tempfailed", Action.QUARANTINE: "quarantined"}
_REFUSALS = (Action.REJECT, Action.TEMPFAIL)
MAX_HELOS = 20
MAX_AR_REMOVALS = 1000
"""Forged A-R fields removed from one message at most: each removal is one header edit, which
Postfix's cleanup pays for by rescanning the queue file, and past about 10,000 it fails the message
(451) in any mode. A message with more is refused (the only refusal in monitor mode)."""
_TOO_MANY_AR = Reply("550", "5.7.1", "Too many Authentication-Results header fields claiming this server")


# ---- what the session returns --------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    """The reply to one stage: continue, or refuse (reject / tempfail) with an SMTP reply."""

    action: Action = Action.CONTINUE
    reply: Reply | None = None


CONTINUE = Response()


@dataclass(frozen=True)
class DeleteHeader:
    name: str
    index: int  # 1-based among the fields of that name, as the MTA counts them


@dataclass(frozen=True)
class InsertHeader:
    name: str
    value: str  # without the blank after the colon; folded with LF + TAB
    index: int = 0  # 0: above every other field


@dataclass(frozen=True)
class AddHeader:
    name: str
    value: str


@dataclass(frozen=True)
class Quarantine:
    reason: str


Edit = DeleteHeader | InsertHeader | AddHeader | Quarantine


@dataclass(frozen=True)
class EomResponse:
    response: Response = CONTINUE
    edits: tuple[Edit, ...] = ()


# ---- configuration as the session uses it --------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """A configuration compiled for the session: the active checks of each stage, in config order,
    and the authentication methods to run (every one with ``auth.enabled``, otherwise those the
    active checks need, with what they need), in registry order."""

    config: Config
    mail_checks: tuple[tuple[CheckSpec, PolicyConfig], ...] = ()
    eom_checks: tuple[tuple[CheckSpec, PolicyConfig], ...] = ()
    mail_methods: tuple[MethodSpec, ...] = ()
    eom_methods: tuple[MethodSpec, ...] = ()
    config_hash: str = ""  # of the configuration file, recorded in every transaction event
    on_error: Action = Action.CONTINUE  # the reply when a callback raises (milter.on_error)

    @classmethod
    def from_config(cls, config: Config, config_hash: str = "") -> Setup:
        active = [(CHECKS[p.name], p) for p in config.active()]
        wanted = set(METHODS) if config.auth.enabled else {n for s, p in active for n in s.needs(p.options)}
        methods = [m for name, m in METHODS.items() if name in closure(wanted)]
        return cls(
            config=config,
            mail_checks=tuple((s, p) for s, p in active if s.stage is Stage.MAIL),
            eom_checks=tuple((s, p) for s, p in active if s.stage is Stage.EOM),
            mail_methods=tuple(m for m in methods if m.stage is Stage.MAIL),
            eom_methods=tuple(m for m in methods if m.stage is Stage.EOM),
            config_hash=config_hash,
            on_error=config.on_error_action,
        )

    @property
    def auth_active(self) -> bool:
        """Whether any authentication method runs."""
        return bool(self.mail_methods or self.eom_methods)

    @property
    def needs_message(self) -> bool:
        """Whether header and body callbacks are needed (authentication or an EOM check)."""
        return self.auth_active or bool(self.eom_checks)


Macros = Mapping[str, Macro]
"""Macro values the adapter read for a stage (``{tls_version}``, ``i``, ...)."""


@dataclass
class _Negotiated:
    leadspc: bool = True  # header values arrive exactly as sent (P_HDR_LEADSPC)
    message: bool = True  # header and body callbacks are delivered


@dataclass
class Session:
    """One SMTP connection. ``setup`` gives the configuration for each new transaction."""

    setup: Callable[[], Setup]
    conn: Connection = field(default_factory=Connection)
    negotiated: _Negotiated = field(default_factory=_Negotiated)

    def __post_init__(self) -> None:
        metrics.CONNECTIONS_ACTIVE.inc()
        self._closed = False

    # -- negotiation -------------------------------------------------------------------------
    def negotiate(self, leadspc: bool, message: bool) -> None:
        self.negotiated = _Negotiated(leadspc, message)

    # -- connection stages -------------------------------------------------------------------
    def connect(self, hostname: Macro, address: str | None, port: int | None, daemon: Macro) -> None:
        c = self.conn
        c.seen_connect = True
        c.last_stage = "connect"
        self._note(c.unreadable, "client_name", hostname)
        self._note(c.unreadable, "{daemon_name}", daemon)
        c.client_name = macro_text(hostname)
        c.daemon = macro_text(daemon, 64)
        if address is not None:
            c.client_ip = parse_ip(address)
            c.client_ip_text = str(c.client_ip) if c.client_ip else clean(address, 64)
        c.client_port = port

    def helo(self, name: Macro, macros: Macros) -> None:
        c = self.conn
        c.last_stage = "helo"
        self._note(c.unreadable, "helo", name)
        if len(c.helo) < MAX_HELOS:
            c.helo.append(macro_text(name) or "")
        self._refresh_tls(macros, c.unreadable)

    def unreadable_argument(self, raw: bytes) -> None:
        """pymilter could not decode a callback argument (it passes connect's host name, HELO and
        unknown commands as UTF-8 text): record it as a fact of the stage it belongs to."""
        c = self.conn
        if not c.seen_connect:
            self.connect(Unreadable(raw), None, None, None)
        elif c.current is None:
            self.helo(Unreadable(raw), {})
        else:
            c.current.unreadable.append("header field name")
            metrics.child(metrics.UNREADABLE_INPUTS, "header_name").inc()

    # -- transaction stages ------------------------------------------------------------------
    def mail(self, sender: bytes | str, params: Sequence[bytes | str], macros: Macros) -> Response:
        c = self.conn
        if c.current is not None:
            self._finish(c.current, "aborted", c.last_stage)
        c.last_stage = "mail"
        setup = self.setup()
        c.transactions += 1
        txn = Transaction(conn=c, index=c.transactions, setup=setup)
        c.current = txn
        txn.mail_from = _sender(sender)
        txn.queue_id = macro_text(macros.get("i"), 32)  # Sendmail sends it here, Postfix later
        if c.client_ip is None:  # connect gave no usable address: the MTA's {client_addr}
            addr = macros.get("{client_addr}")
            if isinstance(addr, str) and parse_ip(addr) is not None:
                c.client_ip = parse_ip(addr)
                c.client_ip_text = str(c.client_ip)
        self._refresh_tls(macros, txn.unreadable)
        txn.tls = c.tls
        login = macros.get("{auth_authen}")
        self._note(txn.unreadable, "{auth_authen}", login)
        # An unreadable login is still a login: the MTA only sends it after a successful AUTH.
        txn.auth_user = macro_text(login)
        if setup.auth_active:
            txn.auth = AuthResults()
            for method in setup.mail_methods:
                self._run_method(txn, method)
        if setup.needs_message:
            feeds = []
            a = txn.auth
            for method in setup.eom_methods if a is not None else ():
                if method.feed is not None and a is not None:
                    a.feeds[method.name] = feed = method.feed(txn)
                    feeds.append(feed)
            txn.message = Message(setup.config.auth.authserv_id, feeds, self.negotiated.leadspc)
        for spec, cfg in setup.mail_checks:
            txn.decisions[cfg.name] = policy.evaluate(spec, cfg, txn)
        # Refuse at MAIL unless a recipient exemption means each RCPT must be looked at first.
        now = policy.strongest(
            d for d in txn.decisions.values() if not setup.config.policies[d.policy].exempt.recipients
        )
        if now is not None and now.action in _REFUSALS:
            return self._refuse(txn, now, "mail")
        return CONTINUE

    def rcpt(self, rcpt: bytes | str, params: Sequence[bytes | str], macros: Macros) -> Response:
        txn = self.conn.current
        self.conn.last_stage = "rcpt"
        if txn is None:
            return CONTINUE
        address = _recipient(rcpt)
        whole = len(address) <= envelope.MAX_ADDRESS  # a shortened recipient is never exempt
        txn.recipients.append(address)
        txn.queue_id = txn.queue_id or macro_text(macros.get("i"), 32)
        # The per-recipient rule: a MAIL-stage decision deferred because of exempt_recipients.
        refuse: list[Decision] = []
        for d in txn.decisions.values():
            if d.action is Action.CONTINUE:
                continue
            exempt = txn.setup.config.policies[d.policy].exempt
            if exempt.recipients and whole and exempt.recipient_exempt(address):
                txn.rcpt_exempt[d.policy] = txn.rcpt_exempt.get(d.policy, 0) + 1
            elif policy.enforceable(d) and d.action in _REFUSALS:
                refuse.append(d)
        now = policy.strongest(refuse)
        if now is None:
            return CONTINUE
        assert now.reply is not None
        now.applied = True
        txn.rcpt_rejected += 1
        txn.refused_rcpts.add(len(txn.recipients) - 1)
        return Response(now.action, now.reply)

    def header(self, name: str | bytes, value: bytes) -> None:
        txn = self.conn.current
        self.conn.last_stage = "header"
        if txn is not None and txn.message is not None:
            txn.message.header(name, value)

    def end_of_headers(self) -> None:
        self.conn.last_stage = "eoh"

    def body(self, chunk: bytes) -> None:
        txn = self.conn.current
        self.conn.last_stage = "body"
        if txn is not None and txn.message is not None:
            txn.message.body(chunk)

    def eom(self, macros: Macros) -> EomResponse:
        c = self.conn
        c.last_stage = "eom"
        txn = c.current
        if txn is None:
            return EomResponse()
        txn.queue_id = macro_text(macros.get("i"), 32) or txn.queue_id
        c.messages += 1
        if txn.auth is not None:
            self._check_message(txn)
        at_eom = []
        for spec, cfg in txn.setup.eom_checks:
            txn.decisions[cfg.name] = d = policy.evaluate(spec, cfg, txn)
            at_eom.append(d)
        # MAIL-stage decisions were applied at MAIL or per RCPT already; only EOM checks act here.
        now = policy.strongest(at_eom)
        if now is not None and now.action in _REFUSALS:
            return EomResponse(self._refuse(txn, now, "eom"))
        forged = len(txn.message.forged) if txn.message is not None else 0
        if forged > MAX_AR_REMOVALS and txn.auth is not None and txn.setup.config.auth.enabled:
            return EomResponse(self._refuse_unremovable(txn, forged))
        edits: list[Edit] = list(self._header_edits(txn))
        if now is not None and now.action is Action.QUARANTINE:
            now.applied = True
            if now.quarantine_header is not None:
                edits.append(AddHeader(*now.quarantine_header))
            else:
                edits.append(Quarantine(f"mailpolicy {now.policy}: {now.result}"))
            txn.final_action = Action.QUARANTINE.value
            self._finish(txn, "quarantined", "eom")
        else:
            self._finish(txn, "accepted", "eom")
        return EomResponse(CONTINUE, tuple(edits))

    def abort(self, queue_id: Macro = None) -> None:
        txn = self.conn.current
        if txn is not None:
            txn.queue_id = txn.queue_id or macro_text(queue_id, 32)
            self._finish(txn, "aborted", self.conn.last_stage)
        self.conn.last_stage = "abort"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        c = self.conn
        if c.current is not None:
            self._finish(c.current, "aborted", c.last_stage)
        metrics.CONNECTIONS_ACTIVE.dec()
        if not c.seen_connect:
            # The MTA opened and closed the milter connection without an SMTP client (Postfix
            # does this around XCLIENT and for clients that leave before the greeting).
            log.debug("milter connection closed before connect", extra={"conn_id": c.conn_id})
            return
        metrics.child(
            metrics.CONNECTIONS, "true" if c.tls else "false", c.tls.version if c.tls else "none"
        ).inc()
        events.emit(events.connection_record(c, time.time()))

    # -- rules ---------------------------------------------------------------------------------
    @staticmethod
    def _note(into: list[str], name: str, value: Macro) -> None:
        if isinstance(value, Unreadable) and name not in into:
            into.append(name)
            metrics.child(metrics.UNREADABLE_INPUTS, metrics.unreadable_label(name)).inc()

    def _refresh_tls(self, macros: Macros, unreadable: list[str]) -> None:
        for name in TLS_MACROS:
            value = macros.get(name)
            if isinstance(value, Unreadable):
                self._note(unreadable, name, value)
        tls = from_macros(lambda name: macro_text(macros.get(name)))
        if tls is not None:
            self.conn.tls = tls

    def _refuse(self, txn: Transaction, d: Decision, stage: str) -> Response:
        """Apply an enforce decision at MAIL or EOM: the reply, and the transaction ends."""
        assert d.reply is not None
        d.applied = True
        txn.final_action = d.action.value
        self._finish(txn, _OUTCOME_OF[d.action], stage)
        return Response(d.action, d.reply)

    def _refuse_unremovable(self, txn: Transaction, forged: int) -> Response:
        """More forged A-R fields than the MTA can remove: the one refusal in every mode, since the
        message cannot be delivered without authentication results under our name that we did not
        write (no legitimate message carries more than a few: each hop of ours replaces the last)."""
        metrics.child(metrics.CHECK_ERRORS, "header").inc()
        log.error(
            "%d Authentication-Results fields claim our authserv-id, more than the %d an MTA can remove "
            "from one message: refused (in every mode)",
            forged,
            MAX_AR_REMOVALS,
            extra={"conn_id": self.conn.conn_id, "queue_id": txn.queue_id, "check": "header"},
        )
        txn.final_action = Action.REJECT.value
        self._finish(txn, "rejected", "eom")
        return Response(Action.REJECT, _TOO_MANY_AR)

    def _header_edits(self, txn: Transaction) -> Iterable[Edit]:
        """Remove A-R fields claiming our authserv-id (highest index first: deleting one never
        renumbers those still to delete), then add ours at the top."""
        cfg = txn.setup.config.auth
        if txn.auth is None or not cfg.enabled:
            return
        m = txn.message
        for idx in reversed(m.forged if m is not None else []):
            metrics.AR_REMOVED.inc()
            yield DeleteHeader(auth_header.NAME, idx)
        # A policy's override of a method's result is noted on that method's clauses.
        notes = {
            spec.annotates: f"override: {d.override}"
            for d in txn.decisions.values()
            if d.override and (spec := CHECKS[d.policy]).annotates
        }
        try:
            value = auth_header.fold(auth_header.build(cfg.authserv_id, txn.auth, notes))
        except Exception:  # never by design; still, every accepted message carries our header
            metrics.child(metrics.CHECK_ERRORS, "header").inc()
            log.exception(
                "could not build the Authentication-Results header; writing the DMARC result only",
                extra={"conn_id": self.conn.conn_id, "queue_id": txn.queue_id, "check": "header"},
            )
            dmarc = txn.auth.dmarc
            value = f"{cfg.authserv_id}; " + (f"dmarc={dmarc.result}" if dmarc is not None else "none")
        yield InsertHeader(auth_header.NAME, value, 0)

    def _run_method(self, txn: Transaction, method: MethodSpec) -> None:
        """One authentication method. A method whose input is missing (a method it needs could not
        run) or that raises gets its ``unavailable`` result (a temperror), logged with the queue
        id and counted: never a result computed from partial input, never a lost message."""
        a = txn.auth
        assert a is not None
        missing = next((n for n in method.needs if n in a.unavailable), None)
        try:
            with dns.collect_errors(a.dns_errors):
                if missing is not None:
                    result = method.unavailable(f"{missing} could not be evaluated")
                    a.unavailable.add(method.name)
                else:
                    result = method.run(txn)
        except Exception:  # the methods never raise by design; never lose the message if one does
            metrics.child(metrics.CHECK_ERRORS, "auth").inc()
            log.exception(
                "authentication method failed; its result is unavailable",
                extra={"conn_id": self.conn.conn_id, "queue_id": txn.queue_id, "check": method.name},
            )
            result = method.unavailable("internal error")
            a.unavailable.add(method.name)
        self._record_method(txn, method, result)

    @staticmethod
    def _record_method(txn: Transaction, method: MethodSpec, result: object) -> None:
        assert txn.auth is not None
        txn.auth.results[method.name] = result
        for word in method.words(result):
            metrics.child(metrics.AUTH_RESULTS, method.name, word).inc()

    def _check_message(self, txn: Transaction) -> None:
        """The end-of-message methods (DKIM, ARC, DMARC), in registry order."""
        a = txn.auth
        assert a is not None
        if txn.message is None or not self.negotiated.message:
            txn.unreadable.append("message headers")
            for method in txn.setup.eom_methods:
                self._record_method(
                    txn, method, method.unavailable("the MTA did not pass the message headers")
                )
                a.unavailable.add(method.name)
            return
        for method in txn.setup.eom_methods:
            self._run_method(txn, method)

    def _finish(self, txn: Transaction, outcome: str, stage: str) -> None:
        c = self.conn
        if c.current is not txn:
            return
        for d in txn.decisions.values():
            policy.settle_recipients(d, len(txn.recipients), txn.rcpt_exempt.get(d.policy, 0))
            policy.count(d)
        if outcome == "aborted" and txn.recipients and txn.rcpt_rejected == len(txn.recipients):
            # Every recipient was refused by an enforced policy: the transaction was refused.
            applied = policy.strongest(d for d in txn.decisions.values() if d.applied)
            if applied is not None:
                txn.final_action = applied.action.value
                outcome, stage = _OUTCOME_OF[applied.action], "rcpt"
        txn.outcome, txn.stage = outcome, stage
        c.outcomes[outcome] = c.outcomes.get(outcome, 0) + 1
        c.current = None
        metrics.child(metrics.TRANSACTIONS, outcome).inc()
        if stage == "eom":
            metrics.child(metrics.MESSAGES, txn.final_action).inc()
        events.emit(events.transaction_record(txn))


def _address(value: bytes | str) -> str:
    """An envelope address as text: without the angle brackets, valid Unicode (undecodable bytes
    shown as U+FFFD), control characters as ``?``. Nothing else is changed, nothing is cut: the
    brackets and the domain (after the last "@") are only found on the whole value, whose size the
    milter protocol bounds (1 MiB, see server.py)."""
    text = clean(value, sys.maxsize) or ""
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text


def _sender(value: bytes | str) -> str:
    """The MAIL FROM as events and SPF see it: whole up to ``envelope.MAX_ADDRESS`` characters (far
    beyond what Postfix or Sendmail pass on). A longer one is kept shortened, for display only, as
    ``envelope.shortened`` says: the local part cut, the domain whole when it can be a DNS name; its
    length tells SPF that it is not the address sent, and SPF never decides on it as if it were
    (auth/spf.py: the domain's result only where the local part cannot matter, else permerror)."""
    return envelope.shortened(_address(value))


def _recipient(value: bytes | str) -> str:
    """A RCPT TO as events and recipient exemptions see it: whole up to ``envelope.MAX_ADDRESS``
    characters. A longer one is kept shortened for display, in a form that no exemption pattern
    matches (a blank in both its local part and its domain), and the session never exempts it
    either: an exemption is never decided on an address that is not the one sent."""
    return envelope.shortened(_address(value), keep_domain=False)


def setup_of(config: Config) -> Callable[[], Setup]:
    """A fixed setup provider (tests, and until reload exists)."""
    s = Setup.from_config(config)
    return lambda: s
