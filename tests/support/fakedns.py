"""An in-memory stand-in for mailpolicy's resolver, for unit and property tests of the session
(mocks belong in unit tests only; protocol and e2e tests use the real loopback DNS server).

Zone values: ("TXT", bytes | str | list of them), ("A", "192.0.2.1"), ("AAAA", ...), ("MX", (10,
"host")); a name mapped to "timeout" or "servfail" fails for every type. Unknown names: NXDOMAIN;
a known name without the asked type: NODATA."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dns.name

from mailpolicy import dns as mdns


@dataclass(frozen=True)
class _Txt:
    strings: tuple[bytes, ...]


@dataclass(frozen=True)
class _Addr:
    address: str


@dataclass(frozen=True)
class _Mx:
    preference: int
    exchange: dns.name.Name


Records = Sequence[tuple[str, Any]] | str


def _record(rtype: str, value: Any) -> Any:
    if rtype in ("TXT", "SPF"):
        parts = value if isinstance(value, list) else [value]
        return _Txt(tuple(p.encode() if isinstance(p, str) else bytes(p) for p in parts))
    if rtype in ("A", "AAAA"):
        return _Addr(str(value))
    if rtype == "MX":
        return _Mx(int(value[0]), dns.name.from_text(value[1]))
    raise ValueError(rtype)


class FakeResolver(mdns.Resolver):
    def __init__(self, zone: Mapping[str, Records] | None = None):
        self.zone: dict[str, Records] = {k.lower().rstrip("."): v for k, v in (zone or {}).items()}
        self.timeout = 0.1
        self.nameservers = (("127.0.0.1", 53),)
        self.queries: list[tuple[str, str]] = []

    def clear_cache(self) -> None:
        pass

    def query(self, name: str | bytes, rdtype: str, timeout: float | None = None) -> mdns.Answer:
        text = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
        key = text.lower().rstrip(".")
        self.queries.append((key, rdtype))
        got = self.zone.get(key)
        if got is None:
            return mdns.Answer("nxdomain")
        if isinstance(got, str):  # "timeout" / "servfail"
            mdns.note_error(f"{rdtype} {key}: {got}")
            return mdns.Answer(got, error=got)
        records = tuple(_record(t, v) for t, v in got if t == rdtype)
        return mdns.Answer("ok", records) if records else mdns.Answer("nodata")


def install(zone: Mapping[str, Records] | None = None) -> FakeResolver:
    r = FakeResolver(zone)
    mdns.install(r)
    return r
