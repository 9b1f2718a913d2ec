"""Unit tests of the adapter's safety net, with a fake libmilter context (mocks belong here only)."""

from __future__ import annotations

from typing import Any

import Milter
import pytest
from prometheus_client import REGISTRY

from mailpolicy import config
from mailpolicy.adapter import PolicyMilter


class FakeCtx:
    def __init__(self, macros: dict[str, str] | None = None, broken: bool = False):
        self.macros = macros or {}
        self.broken = broken
        self.replies: list[tuple[Any, ...]] = []

    def setpriv(self, priv: object) -> None:
        pass

    def getsymval(self, name: str) -> str | None:
        if self.broken:
            raise RuntimeError("context is broken")
        return self.macros.get(name)

    def setreply(self, *args: Any) -> None:
        self.replies.append(args)


def milter(ctx: FakeCtx, **cfg: Any) -> PolicyMilter:
    PolicyMilter.configure(config.parse(cfg))
    m = PolicyMilter()
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
    assert m.envfrom("<a@example.org>") == rc
    assert errors("mail") == before + 1
    rec = [r for r in caplog.records if r.getMessage() == "callback failed"][-1]
    assert rec.callback == "mail" and rec.conn_id == m.conn.conn_id  # type: ignore[attr-defined]
    assert "context is broken" in str(rec.exc_info[1] if rec.exc_info else "")


def test_no_reply_callbacks_always_continue_on_error() -> None:
    m = milter(FakeCtx(broken=True), milter={"on_error": "tempfail"})
    before = errors("helo")
    assert m.hello("x.example") == Milter.CONTINUE
    assert errors("helo") == before + 1


def test_monitor_never_sets_a_reply() -> None:
    ctx = FakeCtx()
    m = milter(ctx)
    m.connect("client.example", 2, ("203.0.113.1", 2525))
    assert m.envfrom("<a@example.org>") == Milter.CONTINUE
    assert m.envrcpt("<b@example.org>") == Milter.CONTINUE
    assert m.eom() == Milter.CONTINUE
    assert ctx.replies == []
    assert m.conn.outcomes == {"accepted": 1}
