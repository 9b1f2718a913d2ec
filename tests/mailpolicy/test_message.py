"""mailpolicy.message: what the message stage collects, and the bound on careful A-R readings."""

from __future__ import annotations

import pytest

from mailpolicy.auth import header as auth_header
from mailpolicy.message import MAX_AR_UNUSUAL, Message

OURS = "mx.test.example"


def test_usual_and_unusual_forged_fields_are_found() -> None:
    m = Message(OURS, [], leadspc=True)
    m.header("Authentication-Results", b" other.example; spf=pass")
    m.header("Authentication-Results", b" MX.test.example; dmarc=pass")  # usual shape
    m.header("Received", b" from a by b")
    m.header("Authentication-Results", b" \x0bmx.test.example; dmarc=pass")  # unusual: VT first
    m.header("Authentication-Results", b" \x0bother.example; dmarc=pass")
    assert m.forged == [2, 3]
    assert (m.ar_count, m.ar_unusual, m.fields) == (4, 2, 5)


def test_past_the_budget_unusual_fields_are_removed_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A header padded with odd A-R values costs at most MAX_AR_UNUSUAL careful readings; each
    further odd one is removed (no reader can take it as ours then), usual foreign ones are kept."""
    careful = 0
    real = auth_header.claims_unusual

    def counting(value: str | bytes, authserv_id: str) -> bool:
        nonlocal careful
        careful += 1
        return real(value, authserv_id)

    monkeypatch.setattr(auth_header, "claims_unusual", counting)  # (the module message.py calls it on)
    m = Message(OURS, [], leadspc=True)
    odd = b" \x0bother.example (not ours); dmarc=pass"
    for _ in range(MAX_AR_UNUSUAL + 10):
        m.header("Authentication-Results", odd)
        m.header("Authentication-Results", b" other.example; spf=pass")  # usual, foreign: kept
    assert careful == MAX_AR_UNUSUAL
    removed = list(range(2 * MAX_AR_UNUSUAL + 1, 2 * (MAX_AR_UNUSUAL + 10), 2))
    assert m.forged == removed and len(removed) == 10
