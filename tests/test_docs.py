"""Docs are part of the product: every config key is in the annotated reference and in README.md,
and every metric the milter registers is documented in README.md."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from prometheus_client import REGISTRY

import mailpolicy.adapter  # noqa: F401  (registers every metric the milter uses)
from mailpolicy import config
from mailpolicy.checks import CHECKS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SECTIONS = {
    "milter": config.MILTER_KEYS,
    "log": config.LOG_KEYS,
    "metrics": config.METRICS_KEYS,
    "dns": config.DNS_KEYS,
    "auth": config.AUTH_KEYS,
}


def schema_keys() -> set[str]:
    keys = {f"{s}.{k}" for s, opts in SECTIONS.items() for k in opts}
    for name, spec in CHECKS.items():
        keys |= {f"policies.{name}.{k}" for k in (*config.POLICY_KEYS, *spec.options)}
    return keys


def test_reference_config_lists_every_key() -> None:
    data = tomllib.loads((ROOT / "config" / "mailpolicy.toml").read_text())
    listed = {f"{s}.{k}" for s, body in data.items() if s != "policies" for k in body}
    listed |= {f"policies.{p}.{k}" for p, body in data["policies"].items() for k in body}
    assert listed == schema_keys()


def test_readme_documents_every_key() -> None:
    missing = []
    for key in sorted(schema_keys()):
        name = key.rpartition(".")[2]
        if f"`{key}`" in README or f"`{name}`" in README:
            continue
        missing.append(key)
    assert missing == []


def test_readme_documents_every_metric() -> None:
    names = {m.name for m in REGISTRY.collect() if m.name.startswith("mailpolicy_")}
    assert len(names) >= 15
    documented = set(re.findall(r"`(mailpolicy_[a-z_]+)`", README))
    missing = sorted(
        n
        for n in names
        if n not in documented and f"{n}_total" not in documented and f"{n}_info" not in documented
    )
    assert missing == []
