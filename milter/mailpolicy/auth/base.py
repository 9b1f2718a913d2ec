"""The authentication-method contract: what a method module declares (:class:`MethodSpec`).

A method (SPF, DKIM, ARC, DMARC, ...) computes one result per transaction at its stage and says
how that result is shown: its clauses in our Authentication-Results header, its field in the
transaction event, the result words counted in ``mailpolicy_auth_results_total``. The session
decides which methods run (every registered one with ``auth.enabled``, otherwise those the active
checks need, with what they need in turn) and runs them in registry order
(:mod:`mailpolicy.auth.methods`); it knows no method by name."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mailpolicy.model import Stage

if TYPE_CHECKING:
    from mailpolicy.state import Transaction


class Feed(Protocol):
    """A method's view of the message as it streams past: every header field (name, and the value
    after the colon with CRLF line ends and a final CRLF), then every body chunk."""

    def header(self, name: bytes, value: bytes) -> None: ...

    def body(self, chunk: bytes) -> None: ...


@dataclass(frozen=True)
class MethodSpec:
    name: str
    """The RFC 8601 method name; also its key in the event and in ``AuthResults.results``."""
    stage: Stage
    run: Callable[[Transaction], Any]
    """The method's result for the transaction, at its stage, once the methods it ``needs`` ran
    (their results are in ``txn.auth.results``). Never raises by design; the session turns an
    exception into ``unavailable("internal error")``."""
    results: tuple[str, ...]
    """Every result word it can give (the metric's label values, exported at zero)."""
    words: Callable[[Any], Iterable[str]]
    """The result words of one result (DKIM gives one per signature)."""
    clauses: Callable[[Any, str | None], list[str]]
    """Its ``method=result ...`` parts of our Authentication-Results header; the second argument
    is a note from a policy about this method's result (an override), written as a comment."""
    record: Callable[[Any], Any]
    """Its field in the transaction event."""
    unavailable: Callable[[str], Any]
    """The result when it could not run (the MTA passed no headers, an internal error), with why."""
    needs: tuple[str, ...] = ()
    """Methods whose results it reads (they come before it in the registry)."""
    feed: Callable[[Transaction], Feed] | None = None
    """For methods that read the message: the per-transaction state, created at MAIL FROM."""
    empty: Any = None
    """Its event field when it did not run."""
