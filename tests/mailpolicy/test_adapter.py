"""Unit tests of the adapter's translation and safety net, with a fake libmilter context (mocks
belong here only; the rules are tested in test_session.py, the real process in tests/protocol)."""

from __future__ import annotations

import socket
from typing import Any

import Milter
import pytest
from prometheus_client import REGISTRY

from mailpolicy import adapter, config
from mailpolicy.adapter import PolicyMilter
from mailpolicy.session import setup_of


class FakeCtx:
    def __init__(self, macros: dict[str, Any] | None = None, broken: bool = False):
        self.macros = macros or {}
        self.broken = broken
        self.calls: list[tuple[Any, ...]] = []

    def setpriv(self, priv: object) -> None:
        pass

    def getsymval(self, name: str) -> str | None:
        if self.broken:
            raise RuntimeError("context is broken")
        value = self.macros.get(name)
        if isinstance(value, bytes):  # what pymilter's strict "s" decoding does with 8-bit bytes
            value.decode("utf-8")
        return value

    def setreply(self, *args: Any) -> None:
        self.calls.append(("setreply", *args))

    def addheader(self, *args: Any) -> None:
        self.calls.append(("addheader", *args))

    def chgheader(self, *args: Any) -> None:
        self.calls.append(("chgheader", *args))

    def quarantine(self, *args: Any) -> None:
        self.calls.append(("quarantine", *args))


def milter(ctx: FakeCtx, **cfg: Any) -> PolicyMilter:
    m = PolicyMilter(setup_of(config.parse(cfg)))
    m._setctx(ctx)
    return m


def errors(callback: str) -> float:
    return REGISTRY.get_sample_value("mailpolicy_callback_errors_total", {"callback": callback}) or 0.0


@pytest.mark.parametrize("on_error,rc", [("continue", Milter.CONTINUE), ("tempfail", Milter.TEMPFAIL)])
def test_exception_in_callback_is_counted_logged_and_answered(
    on_error: str, rc: int, caplog: pytest.LogCaptureFixture
) -> None:
    m = milter(
        FakeCtx(broken=True),
        milter={"on_error": on_error},
        policies={"require_starttls": {"mode": "enforce"}},
    )
    before = errors("mail")
    assert m.envfrom(b"<a@example.org>") == rc
    assert errors("mail") == before + 1
    rec = [r for r in caplog.records if r.getMessage() == "callback failed"][-1]
    assert rec.callback == "mail" and rec.conn_id == m.session.conn.conn_id  # type: ignore[attr-defined]
    assert "context is broken" in str(rec.exc_info[1] if rec.exc_info else "")


def test_no_reply_callbacks_always_continue_on_error() -> None:
    m = milter(FakeCtx(broken=True), milter={"on_error": "tempfail"})
    before = errors("helo")
    assert m.hello("x.example") == Milter.CONTINUE
    assert errors("helo") == before + 1


def test_header_and_body_callbacks_are_guarded_but_not_timed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One histogram observation per header field and body chunk would cost more than the
    callback: those two are not timed, yet an exception in them is counted, logged, continued."""

    def timed(callback: str) -> float:
        labels = {"callback": callback}
        return REGISTRY.get_sample_value("mailpolicy_callback_duration_seconds_count", labels) or 0.0

    m = milter(FakeCtx(), auth={"enabled": True})
    m.connect("client.example", socket.AF_INET, ("192.0.2.1", 25000))
    m.envfrom(b"<a@example.org>")
    before = {c: (timed(c), errors(c)) for c in ("header", "body", "mail")}

    def boom(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(m.session, "header", boom)
    monkeypatch.setattr(m.session, "body", boom)
    assert m.header("Subject", "x") == Milter.CONTINUE
    assert m.body(b"chunk") == Milter.CONTINUE
    m.envfrom(b"<b@example.org>")
    for c in ("header", "body"):
        assert (timed(c), errors(c)) == (before[c][0], before[c][1] + 1)
    assert timed("mail") == before["mail"][0] + 1
    assert {r.callback for r in caplog.records if r.getMessage() == "callback failed"} >= {"header", "body"}  # type: ignore[attr-defined]


def test_monitor_never_sets_a_reply() -> None:
    ctx = FakeCtx()
    m = milter(ctx, auth={"enabled": False})
    m.connect("client.example", 2, ("203.0.113.1", 2525))
    assert m.envfrom(b"<a@example.org>") == Milter.CONTINUE
    assert m.envrcpt(b"<b@example.org>") == Milter.CONTINUE
    assert m.eom() == Milter.CONTINUE
    assert ctx.calls == []
    assert m.session.conn.outcomes == {"accepted": 1}


def test_refusal_becomes_setreply_and_reject() -> None:
    ctx = FakeCtx()
    m = milter(ctx, auth={"enabled": False}, policies={"require_starttls": {"mode": "enforce"}})
    m.connect("client.example", 2, ("203.0.113.1", 2525))
    assert m.envfrom(b"<a@example.org>") == Milter.REJECT
    assert ctx.calls == [("setreply", "530", "5.7.0", "Must issue a STARTTLS command first")]


def test_unreadable_macros_are_facts_not_exceptions() -> None:
    """Hole: an 8-bit {cert_subject} or {auth_authen} made getsymval raise inside envfrom: no SPF,
    no MAIL-stage policy, and in enforce mode the message passed unchecked."""
    ctx = FakeCtx(
        {
            "{tls_version}": "TLSv1.3",
            "{cipher}": "TLS_AES_256_GCM_SHA384",
            "{cert_subject}": b"Caf\xe9 CA",
            "{auth_authen}": b"j\xf6rg",
        }
    )
    policies = {"require_starttls": {"mode": "enforce"}, "tls_min_version": {"mode": "enforce"}}
    m = milter(
        ctx, auth={"enabled": False}, policies={**policies, "spf": {"mode": "off"}, "dmarc": {"mode": "off"}}
    )
    m.connect("client.example", 2, ("203.0.113.1", 2525))
    assert m.envfrom(b"<a@example.org>") == Milter.CONTINUE
    txn = m.session.conn.current
    assert txn is not None
    assert set(txn.decisions) == {"require_starttls", "tls_min_version"}
    assert txn.tls is not None and txn.tls.cert_subject == "Caf\ufffd CA"
    assert txn.auth_user == "j\ufffdrg"  # a login the MTA vouched for, however it is spelt
    assert {"{cert_subject}", "{auth_authen}"} <= set(txn.unreadable)


def test_eom_edits_become_header_calls() -> None:
    ctx = FakeCtx({"i": "QID"})
    m = milter(
        ctx,
        auth={"authserv_id": "mx.example"},
        dns={"nameservers": ["127.0.0.1:9"]},
        policies={"spf": {"mode": "off"}},
    )
    m._leadspc = True
    m.session.negotiate(True, True)
    m.connect("client.example", 2, ("203.0.113.1", 2525))
    m.session.conn.client_ip = None  # SPF gives "none" without a lookup
    assert m.envfrom(b"<>") == Milter.CONTINUE
    for name, value in (("From", b" a@[192.0.2.1]"), ("Authentication-Results", b" mx.example; dkim=pass")):
        m.header(name, value)
    assert m.eom() == Milter.CONTINUE
    kinds = [c[0] for c in ctx.calls]
    assert kinds == ["chgheader", "addheader"]
    assert ctx.calls[0] == ("chgheader", "Authentication-Results", 1, "")
    assert ctx.calls[1][1] == "Authentication-Results" and ctx.calls[1][2].startswith(" mx.example; ")
    assert ctx.calls[1][3] == 0


def test_excepthook_records_a_helo_pymilter_could_not_decode(caplog: pytest.LogCaptureFixture) -> None:
    """Hole: an 8-bit HELO fails inside pymilter (its C code decodes it strictly) before hello()
    runs: not recorded, a bare traceback on stderr. The hook makes it a fact of the connection."""
    m = milter(FakeCtx(), auth={"enabled": False})
    m.connect("client.example", 2, ("203.0.113.1", 2525))
    adapter._current.milter = m
    try:
        b"mail.\xff.example".decode("utf-8")
    except UnicodeDecodeError as exc:
        adapter._excepthook(UnicodeDecodeError, exc, None)
    assert m.session.conn.helo == ["mail.\ufffd.example"]
    assert "helo" in m.session.conn.unreadable
    assert any("could not decode a callback argument" in r.getMessage() for r in caplog.records)


_TRANSPORT_ONLY = {"auth": {"enabled": False}, "policies": {"spf": {"mode": "off"}, "dmarc": {"mode": "off"}}}


@pytest.mark.parametrize("cfg,message", [({}, True), (_TRANSPORT_ONLY, False)])
def test_negotiate_takes_the_steps_pymilter_would_plus_ours(cfg: dict[str, Any], message: bool) -> None:
    """The adapter's own negotiate (no loop over @symlist decorators) asks for exactly the protocol
    steps Milter.Base.negotiate would, then skips the message callbacks when nothing reads them
    or keeps header values verbatim when DKIM does."""
    offered = 0x1FFFFF  # every step and no-reply bit libmilter 6 knows
    actions = Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE
    base_opts = [actions, offered, 7, 7]
    Milter.Base.negotiate(milter(FakeCtx()), base_opts)
    opts = [actions, offered, 7, 7]
    m = milter(FakeCtx(), **cfg)
    assert m.negotiate(opts) == Milter.CONTINUE
    ours = Milter.P_HDR_LEADSPC if message else Milter.P_NOHDRS | Milter.P_NOBODY | Milter.P_NOEOH
    assert opts == [actions, base_opts[1] | ours, 0, 0]
    assert m._protocol == opts[1] and m._actions == actions
    assert m.session.negotiated.message is message
    assert m.negotiate([actions]) == Milter.ALL_OPTS  # a malformed offer: the MTA's own stays


class RefusingReplyCtx(FakeCtx):
    """A context whose setreply fails as pymilter's does when smfi_setreply refuses the reply."""

    def setreply(self, *args: Any) -> None:
        self.calls.append(("setreply", *args))
        raise Milter.milter.error("cannot set reply")


@pytest.mark.parametrize("action,rc", [("reject", Milter.REJECT), ("tempfail", Milter.TEMPFAIL)])
def test_a_reply_libmilter_refuses_still_refuses(
    action: str, rc: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Hole: smfi_setreply refused a reply (over 980 characters): setreply raised, the guard answered
    on_error = continue, and the mail was accepted while its event said rejected (applied). A
    refusal stays a refusal: REJECT/TEMPFAIL without our text, so libmilter's default reply goes."""
    ctx = RefusingReplyCtx()
    m = milter(
        ctx,
        milter={"on_error": "continue"},
        auth={"enabled": False},
        policies={"require_starttls": {"mode": "enforce", "action": action}, "spf": {"mode": "off"}},
    )
    m.connect("client.example", 2, ("203.0.113.1", 2525))
    before = errors("mail")
    assert m.envfrom(b"<a@example.org>") == rc
    assert ctx.calls and ctx.calls[0][0] == "setreply"
    assert errors("mail") == before + 1
    rec = [r for r in caplog.records if r.getMessage().startswith("could not set the reply")][-1]
    assert rec.levelname == "ERROR"
    assert rec.callback == "mail" and rec.conn_id == m.session.conn.conn_id  # type: ignore[attr-defined]
    assert "cannot set reply" in str(rec.exc_info[1] if rec.exc_info else "")


def test_a_refused_reply_at_rcpt_still_refuses_that_recipient(caplog: pytest.LogCaptureFixture) -> None:
    ctx = RefusingReplyCtx()
    m = milter(
        ctx,
        milter={"on_error": "continue"},
        auth={"enabled": False},
        policies={
            "require_starttls": {"mode": "enforce", "exempt_recipients": ["postmaster@"]},
            "spf": {"mode": "off"},
        },
    )
    m.connect("client.example", 2, ("203.0.113.1", 2525))
    assert m.envfrom(b"<a@example.org>") == Milter.CONTINUE
    before = errors("rcpt")
    assert m.envrcpt(b"<bob@example.org>") == Milter.REJECT
    assert errors("rcpt") == before + 1
    assert m.envrcpt(b"<postmaster@example.org>") == Milter.CONTINUE
    rec = [r for r in caplog.records if r.getMessage().startswith("could not set the reply")][-1]
    assert rec.callback == "rcpt"  # type: ignore[attr-defined]
