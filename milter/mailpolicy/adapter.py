"""The pymilter adapter: translation only.

Callbacks and macros become plain values for :class:`mailpolicy.session.Session`, and its
responses and header edits become pymilter calls. Also here: protocol negotiation (the macros we
ask for at MAIL FROM, the callbacks we do not need), reading macros defensively (a value that is
not UTF-8 becomes an :class:`~mailpolicy.text.Unreadable` fact instead of an exception), and the
error guard. No rule that decides a transaction lives here."""

from __future__ import annotations

import functools
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import Milter

from mailpolicy import metrics
from mailpolicy.model import Action
from mailpolicy.session import (
    AddHeader,
    DeleteHeader,
    InsertHeader,
    Quarantine,
    Response,
    Session,
    Setup,
)
from mailpolicy.text import Macro, Unreadable
from mailpolicy.tls import TLS_MACROS

log = logging.getLogger("mailpolicy.adapter")

# Requested at MAIL FROM (replaces the MTA's default list for that stage): the TLS macros, so that a
# client sending MAIL right after STARTTLS without a second EHLO is still seen as encrypted, the
# SASL login for the "authenticated" exemption, and the client address in case the connect
# callback could not deliver it.
# The macro lists mailpolicy asks the MTA for; each replaces the MTA's own list for that stage.
# The queue id "i" must be in the MAIL list: Sendmail sends it only there (Postfix from the second
# RCPT on), and with our list replacing Sendmail's it would otherwise never arrive.
HELO_MACROS = " ".join(TLS_MACROS)
MAIL_MACROS = " ".join(("i", *TLS_MACROS, "{auth_type}", "{auth_authen}", "{mail_addr}", "{client_addr}"))
_MAIL_READ = ("i", *TLS_MACROS, "{auth_authen}", "{client_addr}")

F = TypeVar("F", bound=Callable[..., Any])

# pymilter is untyped: give its constants once, here.
CONTINUE: int = Milter.CONTINUE
TEMPFAIL: int = Milter.TEMPFAIL
REJECT: int = Milter.REJECT
NOREPLY: int = Milter.NOREPLY
_RC_OF = {Action.CONTINUE: CONTINUE, Action.REJECT: REJECT, Action.TEMPFAIL: TEMPFAIL}

# One PyThreadState per milter connection (pymilter creates one per SMFICTX), so this is the
# connection whose callback is running on this thread: what sys.excepthook needs to attribute a
# callback argument pymilter could not decode.
_current = threading.local()


def _callback_failed(m: PolicyMilter, name: str) -> None:
    """Log (with its traceback) and count an exception a callback raised."""
    metrics.child(metrics.CALLBACK_ERRORS, name).inc()
    txn = m.session.conn.current
    queue_id = txn.queue_id if txn else None
    extra = {"conn_id": m.session.conn.conn_id, "queue_id": queue_id, "callback": name}
    log.exception("callback failed", extra=extra)


def guarded(name: str, replies: bool = True) -> Callable[[F], F]:
    """Time a callback, and turn any exception into a logged, counted ``continue`` (or tempfail,
    as configured). ``replies=False`` for callbacks negotiated as no-reply: they always continue."""

    def deco(func: F) -> F:
        seconds = metrics.CALLBACK_SECONDS.labels(name)

        @functools.wraps(func)
        def wrapper(self: PolicyMilter, *args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return func(self, *args)
            except Exception:
                _callback_failed(self, name)
                if replies and self.on_error is Action.TEMPFAIL:
                    return TEMPFAIL
                return CONTINUE
            finally:
                seconds.observe(time.perf_counter() - t0)

        return wrapper  # type: ignore[return-value]

    return deco


def streamed(name: str) -> Callable[[F], F]:
    """For the per-field and per-chunk callbacks (header, body): the MTA is told not to wait for
    their reply where it can (``Milter.noreply``'s protocol bit), an exception is logged and
    counted and the callback continues, and nothing is timed (one histogram observation each would
    cost more than the callback). One wrapper, as they run for every header field."""
    nr_mask: int = Milter.OPTIONAL_CALLBACKS[name][0]

    def deco(func: F) -> F:
        @functools.wraps(func)
        def wrapper(self: PolicyMilter, *args: Any) -> Any:
            try:
                func(self, *args)
            except Exception:
                _callback_failed(self, name)
            return NOREPLY if self._protocol & nr_mask else CONTINUE

        wrapper.milter_protocol = nr_mask  # type: ignore[attr-defined]  # read by Milter's negotiate
        return wrapper  # type: ignore[return-value]

    return deco


class PolicyMilter(Milter.Base):  # type: ignore[misc]
    """One instance per SMTP connection: pymilter callbacks in, Session calls out."""

    def __init__(self, setup: Callable[[], Setup]):
        self.session = Session(setup)
        self._leadspc = True
        self.on_error = setup().on_error
        _current.milter = self

    # -- negotiation --------------------------------------------------------------------------
    def negotiate(self, opts: list[int]) -> Any:
        # What Milter.Base.negotiate does, less its loop over @symlist decorators (we use none):
        # the actions offered, and the protocol steps we take (the class's protocol mask).
        _current.milter = self
        try:
            self._actions, offered = opts[0], opts[1]
            opts[1] = offered & ~self.protocol_mask()
            opts[2] = opts[3] = 0
        except Exception:
            return Milter.ALL_OPTS  # (as Base: leave the MTA's offer unchanged)
        # pymilter 1.0.5's setsymlist passes bytes and silently fails on Python 3: call the
        # context directly with a str (see ../shared/postfix-milter-facts.md).
        if self._actions & Milter.SETSYMLIST:
            for stage, names in ((Milter.M_HELO, HELO_MACROS), (Milter.M_ENVFROM, MAIL_MACROS)):
                try:
                    self._ctx.setsymlist(stage, names)
                except Exception:
                    log.warning("MTA refused a macro list; its own list applies", exc_info=True)
        needs_message = self.session.setup().needs_message
        if not needs_message:
            opts[1] |= offered & (Milter.P_NOHDRS | Milter.P_NOBODY | Milter.P_NOEOH)
        else:
            # Header values exactly as received (leading space kept), for DKIM.
            opts[1] |= offered & Milter.P_HDR_LEADSPC
        self._leadspc = bool(opts[1] & Milter.P_HDR_LEADSPC)
        self._protocol = opts[1]
        self.session.negotiate(self._leadspc, not opts[1] & Milter.P_NOHDRS)
        return CONTINUE

    # -- reading ------------------------------------------------------------------------------
    def _macro(self, name: str) -> Macro:
        """A macro's value; one that is not UTF-8 (pymilter decodes strictly) is Unreadable."""
        try:
            value = self._ctx.getsymval(name)  # (Base.getsymval only adds a Python frame)
        except UnicodeDecodeError as exc:
            raw = exc.object if isinstance(exc.object, bytes) else b""
            return Unreadable(raw)
        return value if isinstance(value, str) else None

    def _macros(self, names: tuple[str, ...]) -> dict[str, Macro]:
        """Several macros (as :meth:`_macro`): read in one loop, as there are up to ten per stage."""
        get = self._ctx.getsymval
        out: dict[str, Macro] = {}
        for name in names:
            try:
                value = get(name)
            except UnicodeDecodeError:
                out[name] = self._macro(name)  # (its Unreadable bytes)
                continue
            out[name] = value if isinstance(value, str) else None
        return out

    def _respond(self, r: Response, callback: str) -> int:
        if r.action is Action.CONTINUE:
            return CONTINUE
        if r.reply is not None:
            try:
                self.setreply(r.reply.code, r.reply.xcode, r.reply.text)
            except Exception:
                # libmilter refused the reply (smfi_setreply: text over 980 characters, a CR or LF,
                # ...). The refusal stands: without our text libmilter sends its default reply for
                # REJECT / TEMPFAIL. Were the exception left to the guard, on_error = continue would
                # accept the mail while its event says refused.
                metrics.child(metrics.CALLBACK_ERRORS, callback).inc()
                txn = self.session.conn.current
                log.exception(
                    "could not set the reply %r; refused with libmilter's default %s reply instead",
                    str(r.reply),
                    r.action.value,
                    extra={
                        "conn_id": self.session.conn.conn_id,
                        "queue_id": txn.queue_id if txn else None,
                        "callback": callback,
                    },
                )
        return _RC_OF[r.action]

    def _hvalue(self, value: str) -> str:
        """A value for addheader: with P_HDR_LEADSPC negotiated the MTA writes it verbatim after
        the colon (seen with Postfix 3.7: "Name:value"), so the usual space is ours to add."""
        return " " + value if self._leadspc else value

    # -- callbacks ----------------------------------------------------------------------------
    # connect and HELO are answered (not negotiated as no-reply): the MTA then waits for each
    # before sending more, so a client that leaves right after EHLO cannot make libmilter drop them.
    # libmilter gives up on the commands still buffered when it sees the MTA hang up (poll's
    # POLLHUP), and Postfix hangs up right after QUIT: a no-reply connect or HELO still queued
    # then was lost, and with it the connection's event.
    @guarded("connect", replies=False)
    def connect(self, hostname: Any, family: Any, hostaddr: Any) -> int:
        _current.milter = self
        address: str | None = None
        port: int | None = None
        if family in (socket.AF_INET, socket.AF_INET6) and isinstance(hostaddr, tuple) and hostaddr:
            address = hostaddr[0] if isinstance(hostaddr[0], str) else None
            port = hostaddr[1] if len(hostaddr) > 1 and isinstance(hostaddr[1], int) else None
        self.session.connect(hostname, address, port, self._macro("{daemon_name}"))
        return CONTINUE

    @guarded("helo", replies=False)
    def hello(self, heloname: Any) -> int:
        self.session.helo(heloname, self._macros(TLS_MACROS))
        return CONTINUE

    @guarded("mail")
    def envfrom(self, sender: bytes, *params: bytes) -> int:
        return self._respond(self.session.mail(sender, params, self._macros(_MAIL_READ)), "mail")

    @guarded("rcpt")
    def envrcpt(self, rcpt: bytes, *params: bytes) -> int:
        return self._respond(self.session.rcpt(rcpt, params, self._macros(("i",))), "rcpt")

    @streamed("header")
    def header(self, name: Any, value: Any) -> int:
        self.session.header(name, value if isinstance(value, bytes) else str(value).encode())
        return CONTINUE

    @streamed("body")
    def body(self, chunk: bytes) -> int:
        self.session.body(chunk)
        return CONTINUE

    @guarded("eom")
    def eom(self) -> int:
        result = self.session.eom(self._macros(("i",)))
        for edit in result.edits:
            try:
                if isinstance(edit, DeleteHeader):
                    self.chgheader(edit.name, edit.index, "")
                elif isinstance(edit, InsertHeader):
                    self.addheader(edit.name, self._hvalue(edit.value), edit.index)
                elif isinstance(edit, AddHeader):
                    self.addheader(edit.name, self._hvalue(edit.value))
                elif isinstance(edit, Quarantine):
                    self.quarantine(edit.reason)
            except Exception:  # e.g. the MTA refused the action: keep the decisions
                metrics.child(metrics.CALLBACK_ERRORS, "eom").inc()
                log.exception(
                    "could not apply a header edit",
                    extra={"conn_id": self.session.conn.conn_id, "callback": "eom"},
                )
        return self._respond(result.response, "eom")

    @guarded("abort")
    def abort(self) -> int:
        self.session.abort(self._macro("i"))
        return CONTINUE

    @guarded("close")
    def close(self) -> int:
        try:
            self.session.close()
        finally:
            _current.milter = None
        return CONTINUE


# ---- wiring into pymilter's C module ----------------------------------------------------------


def _priv(ctx: Any, factory: Callable[[], PolicyMilter]) -> PolicyMilter:
    """The connection's object; created here if the MTA did not negotiate (old protocol)."""
    m = ctx.getpriv()
    if m is None:
        m = factory()
        m._setctx(ctx)
    return m  # type: ignore[no-any-return]


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """pymilter reports an exception raised outside our callbacks with PyErr_Print (a traceback on
    stderr). The usual one: a HELO (or connect host name) that is not UTF-8, which pymilter fails
    to turn into text before any Python code runs. It becomes a recorded fact of the connection
    and a JSON diagnostic; anything else becomes a JSON error line."""
    m: PolicyMilter | None = getattr(_current, "milter", None)
    if isinstance(exc, UnicodeDecodeError) and tb is None and isinstance(exc.object, bytes):
        metrics.child(metrics.CALLBACK_ERRORS, "decode").inc()
        if m is not None:
            try:
                m.session.unreadable_argument(exc.object)
            except Exception:
                log.exception("could not record an unreadable argument")
            log.warning(
                "pymilter could not decode a callback argument (not UTF-8); recorded as unreadable",
                extra={"conn_id": m.session.conn.conn_id, "error": repr(exc.object[:80])},
            )
            return
    log.error("unhandled exception", exc_info=(exc_type, exc, tb))


def register(name: str, setup: Callable[[], Setup]) -> None:
    """Register the callbacks with pymilter's C module (before ``opensocket``/``main``)."""
    milter = Milter.milter

    def factory() -> PolicyMilter:
        return PolicyMilter(setup)

    Milter.factory = factory
    sys.excepthook = _excepthook
    # What pymilter answers when it fails before our code runs: in practice a connect host name or
    # HELO that is not UTF-8 (a fact about the client, recorded by _excepthook, not an internal
    # error). Continue, always: a tempfail there would refuse the client even in monitor mode.
    # Errors inside our callbacks are answered by the guard, as milter.on_error says.
    Milter.set_exception_policy(Milter.CONTINUE)
    milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE | Milter.SETSYMLIST)
    milter.set_connect_callback(lambda ctx, *a: _priv(ctx, factory).connect(*a))
    milter.set_helo_callback(lambda ctx, host: _priv(ctx, factory).hello(host))
    milter.set_envfrom_callback(lambda ctx, *a: _priv(ctx, factory).envfrom(*a))
    milter.set_envrcpt_callback(lambda ctx, *a: _priv(ctx, factory).envrcpt(*a))
    milter.set_header_callback(lambda ctx, f, v: _priv(ctx, factory).header(f, v))
    milter.set_eoh_callback(lambda ctx: CONTINUE)
    milter.set_body_callback(lambda ctx, chunk: _priv(ctx, factory).body(chunk))
    milter.set_eom_callback(lambda ctx: _priv(ctx, factory).eom())
    milter.set_abort_callback(lambda ctx: _priv(ctx, factory).abort())
    milter.set_close_callback(Milter.close_callback)
    milter.register(
        name,
        data=lambda ctx: CONTINUE,
        unknown=lambda ctx, cmd: CONTINUE,
        negotiate=Milter.negotiate_callback,
    )
