"""The thin pymilter adapter: callbacks collect facts into Connection/Transaction, call the checks
of their stage through :mod:`mailpolicy.policy`, apply enforce decisions, and write one event per
transaction and per connection. Nothing else lives here."""

from __future__ import annotations

import functools
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import Milter

from mailpolicy import dns, events, metrics, policy
from mailpolicy.auth import AuthResults, DmarcResult
from mailpolicy.auth import dkim as auth_dkim
from mailpolicy.auth import dmarc as auth_dmarc
from mailpolicy.auth import header as auth_header
from mailpolicy.auth import spf as auth_spf
from mailpolicy.checks import CHECKS, CheckSpec, Stage
from mailpolicy.config import Config
from mailpolicy.model import Action, Decision, PolicyConfig
from mailpolicy.state import Connection, Transaction, parse_ip
from mailpolicy.tls import TLS_MACROS, clean, from_macros

log = logging.getLogger("mailpolicy.adapter")

# Requested at MAIL FROM (replaces the MTA's default list for that stage): the TLS macros, so that a
# client sending MAIL right after STARTTLS without a second EHLO is still seen as encrypted, and the
# SASL login for the "authenticated" exemption.
MAIL_MACROS = " ".join((*TLS_MACROS, "{auth_type}", "{auth_authen}", "{mail_addr}"))

_OUTCOME_OF = {Action.REJECT: "rejected", Action.TEMPFAIL: "tempfailed", Action.QUARANTINE: "quarantined"}


F = TypeVar("F", bound=Callable[..., Any])

# pymilter is untyped: give its constants and decorator types once, here.
CONTINUE: int = Milter.CONTINUE
TEMPFAIL: int = Milter.TEMPFAIL
REJECT: int = Milter.REJECT


_RC_OF = {Action.REJECT: REJECT, Action.TEMPFAIL: TEMPFAIL}


def noreply(func: F) -> F:
    """Milter.noreply: tell the MTA not to wait for this callback's reply (it always continues)."""
    wrapped: F = Milter.noreply(func)
    return wrapped


def guarded(name: str, replies: bool = True) -> Callable[[F], F]:
    """Time a callback, and turn any exception into a logged, counted ``continue`` (or tempfail,
    as configured). ``replies=False`` for callbacks negotiated as no-reply: they always continue."""

    def deco(func: F) -> F:
        @functools.wraps(func)
        def wrapper(self: PolicyMilter, *args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return func(self, *args)
            except Exception:
                metrics.child(metrics.CALLBACK_ERRORS, name).inc()
                txn = self.conn.current
                log.exception(
                    "callback failed",
                    extra={
                        "conn_id": self.conn.conn_id,
                        "queue_id": txn.queue_id if txn else None,
                        "callback": name,
                    },
                )
                if replies and self.config.on_error_action is Action.TEMPFAIL:
                    return TEMPFAIL
                return CONTINUE
            finally:
                if name != "close":
                    self.conn.last_stage = name
                metrics.child(metrics.CALLBACK_SECONDS, name).observe(time.perf_counter() - t0)

        return wrapper  # type: ignore[return-value]

    return deco


class PolicyMilter(Milter.Base):  # type: ignore[misc]
    """One instance per SMTP connection (libmilter thread)."""

    config: ClassVar[Config]
    needs_message: ClassVar[bool] = False
    # Derived from the config once, in configure(): the active checks of each stage, in config order.
    auth_active: ClassVar[bool] = False
    mail_checks: ClassVar[tuple[tuple[CheckSpec, PolicyConfig], ...]] = ()
    eom_checks: ClassVar[tuple[tuple[CheckSpec, PolicyConfig], ...]] = ()

    @classmethod
    def configure(cls, config: Config) -> None:
        cls.config = config
        active = [(CHECKS[p.name], p) for p in config.active()]
        cls.auth_active = config.auth_active
        cls.mail_checks = tuple((spec, p) for spec, p in active if spec.stage is Stage.MAIL)
        cls.eom_checks = tuple((spec, p) for spec, p in active if spec.stage is Stage.EOM)
        cls.needs_message = cls.auth_active or bool(cls.eom_checks)

    def __init__(self) -> None:
        self.conn = Connection()
        self._leadspc = False
        metrics.CONNECTIONS_ACTIVE.inc()

    # -- negotiation --------------------------------------------------------------------------
    def negotiate(self, opts: list[int]) -> Any:
        offered = opts[1]
        rc = Milter.Base.negotiate(self, opts)
        # pymilter 1.0.5's setsymlist passes bytes and silently fails on Python 3: call the
        # context directly with a str (see ../shared/postfix-milter-facts.md).
        if self._actions & Milter.SETSYMLIST:
            try:
                self._ctx.setsymlist(Milter.M_ENVFROM, MAIL_MACROS)
            except Exception:
                log.warning("MTA refused the MAIL macro list; TLS facts come from HELO only", exc_info=True)
        if not self.needs_message:
            opts[1] |= offered & (Milter.P_NOHDRS | Milter.P_NOBODY | Milter.P_NOEOH)
        else:
            # Header values exactly as received (leading space kept), for DKIM.
            opts[1] |= offered & Milter.P_HDR_LEADSPC
        self._leadspc = bool(opts[1] & Milter.P_HDR_LEADSPC)
        self._protocol = opts[1]
        return rc

    # -- helpers ------------------------------------------------------------------------------
    def _macro(self, name: str) -> Any:
        return self.getsymval(name)

    def _refresh_tls(self) -> None:
        tls = from_macros(self._macro)
        if tls is not None:
            self.conn.tls = tls

    def _refuse(self, txn: Transaction, d: Decision, stage: str) -> int:
        """Apply an enforce decision at MAIL or EOM: set the reply and end the transaction."""
        assert d.reply is not None or d.action is Action.QUARANTINE
        d.applied = True
        if d.reply is not None:
            self.setreply(d.reply.code, d.reply.xcode, d.reply.text)
        txn.final_action = d.action.value
        self._finish(txn, _OUTCOME_OF[d.action], stage)
        return _RC_OF[d.action]

    def _finish(self, txn: Transaction, outcome: str, stage: str) -> None:
        if self.conn.current is not txn:
            return
        rcpt_exempt: Counter[str] = txn.extra.pop("_rcpt_exempt", Counter())
        if txn.auth is not None:
            txn.extra.update(txn.auth.record())
        txn.body = bytearray()
        for d in txn.decisions.values():
            policy.settle_recipients(d, len(txn.recipients), rcpt_exempt[d.policy])
            policy.count(d)
        if txn.queue_id is None:
            txn.queue_id = clean(self._macro("i"), 32)
        if outcome == "aborted" and txn.recipients and txn.rcpt_rejected == len(txn.recipients):
            # Every recipient was refused by an enforced policy: the transaction was refused.
            applied = policy.strongest(d for d in txn.decisions.values() if d.applied)
            if applied is not None:
                txn.final_action = applied.action.value
                outcome, stage = _OUTCOME_OF[applied.action], "rcpt"
        txn.outcome, txn.stage = outcome, stage
        self.conn.outcomes[outcome] += 1
        self.conn.current = None
        metrics.child(metrics.TRANSACTIONS, outcome).inc()
        if stage == "eom":
            metrics.child(metrics.MESSAGES, txn.final_action).inc()
        events.emit(txn.record())

    # -- callbacks ----------------------------------------------------------------------------
    @noreply
    @guarded("connect", replies=False)
    def connect(self, hostname: Any, family: Any, hostaddr: Any) -> int:
        c = self.conn
        c.seen_connect = True
        c.client_name = clean(hostname)
        if family in (socket.AF_INET, socket.AF_INET6) and isinstance(hostaddr, tuple):
            c.client_ip = parse_ip(hostaddr[0])
            c.client_ip_text = str(c.client_ip) if c.client_ip else clean(hostaddr[0], 64)
            port = hostaddr[1] if len(hostaddr) > 1 else None
            c.client_port = port if isinstance(port, int) else None
        c.daemon = clean(self._macro("{daemon_name}"), 64)
        return CONTINUE

    @noreply
    @guarded("helo", replies=False)
    def hello(self, heloname: Any) -> int:
        if len(self.conn.helo) < 20:
            self.conn.helo.append(clean(heloname) or "")
        self._refresh_tls()
        return CONTINUE

    @guarded("mail")
    def envfrom(self, mailfrom: Any, *params: Any) -> int:
        c = self.conn
        if c.current is not None:
            self._finish(c.current, "aborted", c.last_stage)
        txn = c.begin()
        txn.mail_from = (clean(mailfrom) or "").strip("<>")
        self._refresh_tls()
        txn.tls = c.tls
        txn.auth_user = clean(self._macro("{auth_authen}"))
        if self.auth_active:
            self._check_spf(txn)
        for spec, cfg in self.mail_checks:
            txn.decisions[cfg.name] = policy.evaluate(spec, cfg, txn)
        # Refuse at MAIL unless a recipient exemption means we must look at each RCPT first.
        now = policy.strongest(
            d for d in txn.decisions.values() if not self.config.policies[d.policy].exempt.recipients
        )
        if now is not None and now.action in _RC_OF:
            return self._refuse(txn, now, "mail")
        return CONTINUE

    @guarded("rcpt")
    def envrcpt(self, to: Any, *params: Any) -> int:
        txn = self.conn.current
        if txn is None:
            return CONTINUE
        rcpt = clean(to) or ""
        txn.recipients.append(rcpt)
        if len(txn.recipients) > 1 and txn.queue_id is None:
            txn.queue_id = clean(self._macro("i"), 32)
        for d in txn.decisions.values():
            if d.action is Action.CONTINUE:
                continue
            exempt = self.config.policies[d.policy].exempt
            if exempt.recipients and exempt.recipient_exempt(rcpt):
                txn.extra.setdefault("_rcpt_exempt", Counter())[d.policy] += 1
            elif policy.enforceable(d) and d.action in _RC_OF:
                assert d.reply is not None
                d.applied = True
                txn.rcpt_rejected += 1
                self.setreply(d.reply.code, d.reply.xcode, d.reply.text)
                return _RC_OF[d.action]
        return CONTINUE

    @noreply
    @guarded("header", replies=False)
    def header(self, name: Any, value: Any) -> int:
        txn = self.conn.current
        if txn is not None and len(txn.headers) < 1000:
            txn.headers.append((str(name), str(value)))
        return CONTINUE

    @noreply
    @guarded("body", replies=False)
    def body(self, chunk: bytes) -> int:
        txn = self.conn.current
        if txn is not None and txn.auth is not None and not txn.body_truncated:
            if len(txn.body) + len(chunk) > self.config.auth.max_message_bytes:
                txn.body_truncated = True
            else:
                txn.body += chunk
        return CONTINUE

    # -- authentication (logic in mailpolicy.auth) ---------------------------------------------
    def _check_spf(self, txn: Transaction) -> None:
        c = self.conn
        txn.auth = AuthResults()
        with dns.collect_errors(txn.auth.dns_errors):
            txn.auth.spf = auth_spf.evaluate(
                c.client_ip_text if c.client_ip is not None else None,
                txn.mail_from or "",
                c.helo[-1] if c.helo else None,
                self.config.auth.spf_timeout,
            )
        metrics.child(metrics.AUTH_RESULTS, "spf", txn.auth.spf.result).inc()

    def _check_message(self, txn: Transaction) -> None:
        """DKIM and DMARC at end of message."""
        a = txn.auth
        if a is None:
            return
        cfg = self.config.auth
        try:
            with dns.collect_errors(a.dns_errors):
                message = auth_dkim.message_bytes(txn.headers, txn.body, self._leadspc)
                a.dkim = auth_dkim.verify(
                    message,
                    cfg.dkim_max_signatures,
                    cfg.dkim_min_key_bits,
                    self.config.dns.timeout,
                    truncated=txn.body_truncated,
                )
                froms = [v for n, v in txn.headers if n.strip().lower() == "from"]
                a.dmarc, a.header_from_domain = auth_dmarc.evaluate(froms, a.spf, a.dkim)
        except Exception:  # the auth modules never raise by design; never lose the message if they do
            metrics.child(metrics.CHECK_ERRORS, "auth").inc()
            log.exception(
                "authentication failed; dmarc is temperror",
                extra={"conn_id": self.conn.conn_id, "queue_id": txn.queue_id, "check": "auth"},
            )
            a.dmarc = DmarcResult("temperror", reason="internal error")
        for d in a.dkim:
            metrics.child(metrics.AUTH_RESULTS, "dkim", d.result).inc()
        metrics.child(metrics.AUTH_RESULTS, "dmarc", a.dmarc.result).inc()

    def _hvalue(self, value: str) -> str:
        """A value for addheader: with P_HDR_LEADSPC negotiated the MTA writes it verbatim after
        the colon (seen with Postfix 3.7: "Name:value"), so the usual space is ours to add."""
        return " " + value if self._leadspc else value

    def _write_header(self, txn: Transaction) -> None:
        """Remove A-R headers claiming our authserv-id, then add ours (only header changes)."""
        if txn.auth is None or not self.config.auth.enabled:
            return
        authserv_id = self.config.auth.authserv_id
        try:
            # Highest index first: deleting one never renumbers the ones still to delete.
            for idx in reversed(auth_header.forged_indexes(txn.headers, authserv_id)):
                self.chgheader(auth_header.NAME, idx, "")
                metrics.AR_REMOVED.inc()
            value = auth_header.fold(auth_header.build(authserv_id, txn.auth))
            self.addheader(auth_header.NAME, self._hvalue(value), 0)
        except Exception:  # e.g. the MTA refused the header actions: keep the decisions
            metrics.child(metrics.CALLBACK_ERRORS, "eom").inc()
            log.exception(
                "could not write the Authentication-Results header",
                extra={"conn_id": self.conn.conn_id, "queue_id": txn.queue_id, "callback": "eom"},
            )

    @guarded("eom")
    def eom(self) -> int:
        c = self.conn
        txn = c.current
        if txn is None:
            return CONTINUE
        txn.queue_id = clean(self._macro("i"), 32) or txn.queue_id
        c.messages += 1
        self._check_message(txn)
        at_eom = []
        for spec, cfg in self.eom_checks:
            txn.decisions[cfg.name] = d = policy.evaluate(spec, cfg, txn)
            at_eom.append(d)
        # MAIL-stage decisions were applied at MAIL or per RCPT already; only EOM checks act here.
        now = policy.strongest(at_eom)
        if now is not None and now.action in _RC_OF:
            return self._refuse(txn, now, "eom")
        self._write_header(txn)
        if now is not None and now.action is Action.QUARANTINE:
            now.applied = True
            opts = self.config.policies[now.policy].options
            if opts.get("quarantine") == "header":
                name, value = opts["quarantine_header"]
                self.addheader(name, self._hvalue(value))
            else:
                self.quarantine(f"mailpolicy {now.policy}: {now.result}")
            txn.final_action = Action.QUARANTINE.value
            self._finish(txn, "quarantined", "eom")
            return CONTINUE
        self._finish(txn, "accepted", "eom")
        return CONTINUE

    @guarded("abort")
    def abort(self) -> int:
        if self.conn.current is not None:
            self._finish(self.conn.current, "aborted", self.conn.last_stage)
        return CONTINUE

    @guarded("close")
    def close(self) -> int:
        c = self.conn
        if c.current is not None:
            self._finish(c.current, "aborted", c.last_stage)
        metrics.CONNECTIONS_ACTIVE.dec()
        if not c.seen_connect:
            # The MTA opened and closed the milter connection without an SMTP client (Postfix
            # does this around XCLIENT and for clients that leave before the greeting).
            log.debug("milter connection closed before connect", extra={"conn_id": c.conn_id})
            return CONTINUE
        metrics.child(
            metrics.CONNECTIONS, "true" if c.tls else "false", c.tls.version if c.tls else "none"
        ).inc()
        events.emit(c.record(time.time()))
        return CONTINUE
