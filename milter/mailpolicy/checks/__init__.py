"""The check registry: every check, by policy name, in evaluation order.

Adding a check: write ``checks/<name>.py`` exposing ``SPEC`` (the contract is
:mod:`mailpolicy.checks.base`), list it in :func:`_registry`, document its keys in
``config/mailpolicy.toml`` and README.md, and add ``tests/mailpolicy/checks/test_<name>.py``.
"""

from __future__ import annotations

from mailpolicy.checks.base import CheckSpec


def _registry() -> dict[str, CheckSpec]:
    from mailpolicy.checks import arc, dmarc, spf, starttls, tls_version

    specs = (starttls.SPEC, tls_version.SPEC, spf.SPEC, dmarc.SPEC, arc.SPEC)
    return {s.name: s for s in specs}


CHECKS: dict[str, CheckSpec] = _registry()
"""Every check, by policy name, in evaluation order."""
