"""The authentication-method registry: every method, in the order it runs (a method comes after
the methods it ``needs``) and writes its clauses in our Authentication-Results header.

Adding a method: write ``auth/<name>.py`` exposing ``METHOD`` (the contract is
:mod:`mailpolicy.auth.base`), list it in :func:`_registry`, document its event field, metric words
and header clause in README.md, and add its tests."""

from __future__ import annotations

from mailpolicy.auth.base import MethodSpec


def _registry() -> dict[str, MethodSpec]:
    from mailpolicy.auth import arc, dkim, dmarc, spf

    specs = (spf.METHOD, dkim.METHOD, arc.METHOD, dmarc.METHOD)
    seen: set[str] = set()
    for s in specs:
        missing = [n for n in s.needs if n not in seen]
        if missing:
            raise RuntimeError(f"method {s.name} needs {', '.join(missing)} registered before it")
        seen.add(s.name)
    return {s.name: s for s in specs}


METHODS: dict[str, MethodSpec] = _registry()
"""Every method, by name, in running order."""


def closure(names: set[str]) -> set[str]:
    """``names`` and every method they need, transitively."""
    out: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in out or name not in METHODS:
            continue
        out.add(name)
        todo.extend(METHODS[name].needs)
    return out
