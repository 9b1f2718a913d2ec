"""docs/event.schema.json: a valid JSON Schema (2020-12) that README's "Log lines" agrees with.
Every protocol and end-to-end test checks the events the real milter wrote against it when it
stops (tests/support/stack.py), and the session property test checks generated ones."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema

from support import event_schema

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_schema_is_a_valid_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(event_schema.schema())


def test_every_property_in_the_schema_is_in_the_readme() -> None:
    section = README[README.index("## Log lines") : README.index("## Metrics")]
    named = set(re.findall(r"`([a-z_]+)`", section))
    for kind in ("connection", "transaction"):
        missing = event_schema.documented(kind) - named
        assert not missing, (kind, sorted(missing))


def test_a_wrong_line_is_refused() -> None:
    good = {
        "ts": "2026-12-02T00:00:00.000Z",
        "host": "mx",
        "schema": 1,
        "event": "connection",
        "conn_id": "a1",
        "start": "2026-12-02T00:00:00.000Z",
        "end": "2026-12-02T00:00:01.000Z",
        "duration_s": 1.0,
        "client_ip": "192.0.2.1",
        "client_port": 25000,
        "client_name": "[192.0.2.1]",
        "daemon": "smtpd",
        "helo": ["x.example"],
        "starttls": False,
        "tls_version": None,
        "tls_cipher": None,
        "tls_cipher_bits": None,
        "tls_cert_subject": None,
        "tls_cert_issuer": None,
        "transactions": 0,
        "messages": 0,
        "outcomes": {},
        "end_stage": "helo",
        "unreadable": [],
    }
    assert event_schema.problems(good) == []
    assert event_schema.problems({**good, "schema": 2})
    assert event_schema.problems({**good, "client_port": "25000"})
    assert event_schema.problems({**good, "surprise": 1}) == ["properties not in the schema: ['surprise']"]
    no_end = dict(good)
    del no_end["end"]
    assert event_schema.problems(no_end)
