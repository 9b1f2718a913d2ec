"""Shared fixtures: the loopback test DNS server and the milter's resolver pointed at it.

``dns_server`` (session): a :class:`support.dnsserver.DnsServer` on 127.0.0.1 (UDP+TCP, ephemeral
port). ``dns`` (function): the same server, emptied, with ``mailpolicy.dns`` installed on it (no
cache, 0.8 s timeout: a deliberate timeout stays cheap, and an answer delayed by a busy machine is
not taken for one) so in-process SPF/DKIM/DMARC evaluation uses it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailpolicy import dns as mdns
from support.dnsserver import DnsServer


@pytest.fixture(scope="session")
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as srv:
        yield srv


@pytest.fixture
def dns(dns_server: DnsServer) -> Iterator[DnsServer]:
    dns_server.clear()
    mdns.install(mdns.Resolver([mdns.parse_nameserver(dns_server.nameserver)], 0.8, 0))
    yield dns_server
    dns_server.clear()


_TIERS = {"e2e": "e2e", "protocol": "protocol"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test carries its tier: by folder (tests/e2e, tests/protocol), browser for the
    headless-Chromium tests, unit for the rest (``make unit`` runs ``-m unit``)."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        tier = next((_TIERS[p] for p in parts if p in _TIERS), None)
        if tier is None:
            tier = "browser" if "browser" in item.name or "browser" in Path(str(item.fspath)).name else "unit"
        if not any(m.name in ("unit", "protocol", "e2e", "browser") for m in item.iter_markers()):
            item.add_marker(getattr(pytest.mark, tier))
