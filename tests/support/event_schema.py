"""Event lines checked against ``docs/event.schema.json``: valid per the schema, and no property
the schema does not describe (new properties are allowed within a schema version for readers, but
every one the milter writes must be documented there first)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "event.schema.json"


@functools.cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return loaded


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema())
    return jsonschema.Draft202012Validator(schema())


def documented(kind: str) -> set[str]:
    """Every top-level property an event of ``kind`` may carry."""
    defs = schema()["$defs"]
    keys = set(schema()["properties"]) | set(defs["client"]["properties"]) | set(defs[kind]["properties"])
    return keys


def problems(event: dict[str, Any]) -> list[str]:
    """What is wrong with one event line (empty: nothing)."""
    out = [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in _validator().iter_errors(event)
    ]
    kind = event.get("event")
    if kind in ("connection", "transaction"):
        extra = set(event) - documented(kind)
        if extra:
            out.append(f"properties not in the schema: {sorted(extra)}")
    return out


def check_lines(lines: Iterable[str], source: str = "") -> int:
    """Check every event line (lines without an ``event`` key are diagnostics); raise
    AssertionError naming the first bad ones. Returns the number of events checked."""
    bad: list[str] = []
    checked = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        obj = json.loads(line)
        if "event" not in obj:
            continue
        checked += 1
        found = problems(obj)
        if found and len(bad) < 5:
            bad.append(f"{source}:{number}: {'; '.join(found[:3])}")
    assert not bad, "event lines that do not match docs/event.schema.json:\n" + "\n".join(bad)
    return checked


def check_file(path: Path) -> int:
    if not path.exists():
        return 0
    complete = path.read_text(encoding="utf-8").split("\n")[:-1]  # a last partial line is not written yet
    return check_lines(complete, str(path))
