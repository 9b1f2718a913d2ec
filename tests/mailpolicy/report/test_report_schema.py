"""docs/report.schema.json: a valid JSON Schema (2020-12) that README's "JSON output" agrees with,
and that the ``mailpolicy report --format json`` document matches for inputs exercising every
optional shape: a realistic month on four hosts, bench-like random traffic, empty input, input
all filtered out, malformed lines and newer-schema events (and every input format, an unreadable
input), --policy and the other filters, look-alike senders, exemption and trusted-sealer
suggestions. The schema closes every object with fixed keys, so a key the report writes and the
schema does not describe fails here; a coverage check makes sure every part of the schema (each
key, list item, map value and each type a key may have, null included) was met by at least one
document."""

from __future__ import annotations

import copy
import functools
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mailpolicy import report
from support import report_events as r

ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = ROOT / "docs" / "report.schema.json"
README = (ROOT / "README.md").read_text(encoding="utf-8")

Doc = dict[str, Any]


@functools.cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


def problems(doc: Doc) -> list[str]:
    """What in ``doc`` does not match the schema (empty: nothing)."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator().iter_errors(doc)
    ]


def readme_section() -> str:
    """README's "JSON output" section."""
    start = README.index("### JSON output (`--format json`")
    return README[start : README.index("\n### ", start + 1)]


def readme_block() -> str:
    """The ```text block of README's "JSON output" section: every key of the document."""
    section = readme_section()
    start = section.index("```text\n") + len("```text\n")
    return section[start : section.index("```", start)]


# ---- the documents ---------------------------------------------------------------------------


def run(argv: list[str], out: Path, stdin: bytes | None = None, status: int = 0) -> Doc:
    """``mailpolicy report --format json -o out *argv``: the document, as the command writes it."""
    feed = io.BytesIO(stdin) if stdin is not None else None
    assert report.main(["--format", "json", "-o", str(out), *argv], stdin=feed) == status
    doc: Doc = json.loads(out.read_text(encoding="utf-8"))
    return doc


def event(ev: dict[str, Any]) -> bytes:
    return json.dumps(ev, separators=(",", ":")).encode()


def messy_lines() -> bytes:
    """Good events between every kind of line the report counts and skips: more than five
    malformed ones (the examples are capped), events of other schemas and of an unknown type,
    diagnostics, blank lines, a syslog prefix."""
    good = r.txn(policies={"spf": r.would_reject()}, header_from="example.net", dmarc="fail")
    bad_policies = {**good, "policies": {"spf": "reject"}}
    bad_count = {**good, "rcpt_count": -1}
    return b"\n".join(
        [
            event(good),
            event(r.conn()),
            b"garbage",
            event(good)[:60],  # truncated
            b'{"ts":"2026-11-20T00:00:01.000Z","host":"mx1","event":"transaction"}',  # no schema
            event({**good, "ts": "yesterday"}),
            event(bad_policies),
            event(bad_count),
            b"\xff\xfe not UTF-8 \xc3",
            event({**good, "schema": 2}),
            event({**r.conn(), "schema": 2}),
            event({**good, "schema": 0}),
            event({"ts": r.ts(0, 5), "host": "mx1", "schema": 1, "event": "reload"}),
            b'{"ts":"2026-11-20T00:00:02.000Z","host":"mx1","level":"warning","msg":"DNS timeout"}',
            b"",
            b"   ",
            b"Nov 20 00:00:03 mx1 mailpolicy[7]: " + event(r.conn(seconds=3)),  # read in any format
            event(r.txn(host="mx2", seconds=9, tls=None, policies={"require_starttls": r.would_reject()})),
        ]
    )


def syslog() -> bytes:
    """``/var/log/mail.log``: a prefix before each event."""
    return b"Nov 20 00:00:40 mx1 mailpolicy[7]: " + event(r.conn(seconds=40)) + b"\n"


def journal_json() -> bytes:
    """``journalctl -o json``: an event, a message journalctl left out (null), an entry without
    MESSAGE."""
    entries: list[dict[str, Any]] = [
        {"__CURSOR": "s=1", "MESSAGE": event(r.txn(seconds=20)).decode()},
        {"__CURSOR": "s=2", "MESSAGE": None},
        {"__CURSOR": "s=3", "PRIORITY": "6"},
    ]
    return b"".join(json.dumps(e).encode() + b"\n" for e in entries)


def journal_export() -> bytes:
    return b"__CURSOR=s=9\nPRIORITY=6\nMESSAGE=" + event(r.conn(seconds=30)) + b"\n\n"


LOOKALIKES = {"paypa1.com": 3, "xn--pypal-4ve.com": 2, "paypal.com.secure-login.example": 1}
ORDINARY = ["gmail.com", "python.org", "news.paypal.com", "bank-example.com"]


def lookalike_events() -> list[dict[str, Any]]:
    """test_report_lookalike's senders: three look-alikes (one with a Cyrillic letter, one from a
    client without an address) among ordinary ones and our own subdomain."""
    events = []
    i = 0
    for domain, count in LOOKALIKES.items():
        for _ in range(count):
            i += 1
            ip = None if i == 1 else f"198.51.100.{i}"
            events.append(
                r.txn(seconds=i, header_from=domain, dmarc="none", ip=ip, name=None, conn_id=f"c{i}")
            )
    for domain in ORDINARY:
        i += 1
        events.append(r.txn(seconds=i, header_from=domain, dmarc="pass", authenticated=True, conn_id=f"c{i}"))
    events.append(r.txn(seconds=i + 1, mail_from="bounce@example.net"))  # no From domain
    return events


def suggestion_events() -> list[dict[str, Any]]:
    """test_report_paths' shapes in one log: DMARC failures forwarded with a valid ARC chain (one
    and two sealers), list mail, direct mail, an enforce-mode refusal, overrides and an exemption;
    authenticated mail refused from two networks (exemption suggestions), old TLS with a
    require_starttls exemption (kept in the floor simulation), a client without an address."""
    rej = {"dmarc": r.would_reject(), "spf": r.decision("monitor", "pass")}
    lists, dev = "lists.example.org", "dev.lists.example.org"
    ev: list[dict[str, Any]] = []
    for author in ("bank.example", "bank.example", "shop.example"):
        ev.append(r.txn(policies=rej, header_from=author, dmarc="fail", arc=r.arc_chain(lists), list_id=dev))
    ev += [
        r.txn(
            policies=rej,
            header_from="bank.example",
            dmarc="fail",
            arc=r.arc_chain("origin.example", "fwd.example.net"),
        )
    ] * 2
    ev += [r.txn(policies=rej, header_from="bank.example", dmarc="fail", arc=r.arc_chain(), list_id=dev)] * 2
    ev.append(
        r.txn(policies=rej, header_from="bank.example", dmarc="fail", ip=None, rcpts=3, rcpt_rejected=1)
    )
    ev.append(
        r.txn(
            policies={"dmarc": r.decision("enforce", "fail", "reject", applied=True)},
            header_from="bank.example",
            dmarc="fail",
            arc=r.arc_chain(lists),
            outcome="rejected",
            final_action="reject",
        )
    )
    ev += [
        r.txn(
            policies={"dmarc": r.dmarc_override("trusted_forwarder", "trusted.example")},
            header_from="bank.example",
            dmarc="fail",
            arc=r.arc_chain("trusted.example"),
        )
    ] * 2
    ev.append(
        r.txn(
            policies={"dmarc": r.dmarc_override("mailing_list", dev)}, header_from="bank.example", list_id=dev
        )
    )
    exempt = r.decision(
        "monitor", "fail", "continue", exempt="network", override="local_policy", overridden_action="reject"
    )
    ev.append(r.txn(policies={"dmarc": exempt}, header_from="bank.example", dmarc="fail"))
    ev += [
        r.txn(
            policies=rej,
            ip="203.0.113.7",
            name="out.partner.example",
            header_from="partner.example",
            authenticated=True,
        )
    ] * 2
    starttls = {"require_starttls": r.would_reject(), "tls_min_version": r.decision("monitor", "none")}
    ev.append(
        r.txn(tls=None, ip="198.51.100.3", name="[198.51.100.3]", policies=starttls, authenticated=True)
    )
    old = {
        "require_starttls": r.decision("monitor", "pass", exempt="network"),
        "tls_min_version": r.would_reject(),
    }
    ev.append(r.txn(tls="TLSv1", ip="192.0.2.44", policies=old, header_from="legacy.example", dmarc="none"))
    ev.append(r.txn(tls="TLSv1.1", ip="192.0.2.45", policies=old))
    ev.append(r.txn(tls="TLSv1.2", cipher=None, policies={"spf": r.decision("monitor", "pass")}))
    ev += [r.conn(tls="TLSv1", ip="192.0.2.44"), r.conn(tls=None, ip="198.51.100.3"), r.conn(ip=None)]
    return ev


def bad_timestamp_log() -> bytes:
    """Events whose ``ts`` has the canonical length and final Z but is not the canonical time."""
    return r.lines(
        [{**r.txn(), "ts": "2026-11-20 10:00:00.000Z"}, {**r.conn(), "ts": "not a time, but 24 charZ"}]
    )


Builder = Callable[[Path], Doc]


def scenarios(month_log: Path, random_log: Path) -> dict[str, Builder]:
    def month(d: Path) -> Doc:
        return run([str(month_log)], d / "r.json")

    def month_filtered(d: Path) -> Doc:
        argv = ["--policy", "dmarc", "--policy", "arc", "--host", "mx2.example.org"]
        argv += ["--since", "2026-11-25", "--until", "2026-12-05T12:00:00+01:00", "--top", "3"]
        return run([*argv, str(month_log)], d / "r.json")

    def random(d: Path) -> Doc:
        return run([str(random_log)], d / "r.json")

    def policy_spf(d: Path) -> Doc:
        return run(["--policy", "spf", str(random_log)], d / "r.json")

    def empty(d: Path) -> Doc:
        return run(["-"], d / "r.json", stdin=b"")

    def all_filtered_out(d: Path) -> Doc:
        return run(["--since", "2027-01-01", str(random_log)], d / "r.json")

    def malformed(d: Path) -> Doc:
        (d / "messy.log").write_bytes(messy_lines())
        (d / "mail.log").write_bytes(syslog())
        (d / "journal.json").write_bytes(journal_json())
        (d / "journal.export").write_bytes(journal_export())
        names = ["messy.log", "mail.log", "journal.json", "journal.export", "missing.log"]
        # status 1: a source could not be read, journalctl left a message out
        return run([str(d / n) for n in names], d / "r.json", status=1)

    def lookalikes(d: Path) -> Doc:
        (d / "events.log").write_bytes(r.lines(lookalike_events()))
        argv = ["--our-domain", "paypal.com", "--our-domain", "bank.example", str(d / "events.log")]
        return run(argv, d / "r.json")

    def suggestions(d: Path) -> Doc:
        (d / "events.log").write_bytes(r.lines(suggestion_events()))
        return run([str(d / "events.log")], d / "r.json")

    return {
        "month": month,
        "month_filtered": month_filtered,
        "random": random,
        "policy_spf": policy_spf,
        "empty": empty,
        "all_filtered_out": all_filtered_out,
        "malformed": malformed,
        "lookalikes": lookalikes,
        "suggestions": suggestions,
    }


NAMES = list(scenarios(Path(), Path()))


@pytest.fixture(scope="module")
def month_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("month") / "events.log"
    path.write_bytes(r.month(30_000, policies=6))  # half the default size; arc and dnsbl policies too
    return path


@pytest.fixture(scope="module")
def random_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("random") / "events.log"
    path.write_bytes(b"".join(r.generate(10_000, seed=1, hosts=4, days=14)))  # as bench/report_bench.py
    return path


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory, month_log: Path, random_log: Path) -> dict[str, Doc]:
    return {
        name: build(tmp_path_factory.mktemp(name)) for name, build in scenarios(month_log, random_log).items()
    }


# ---- the schema itself -----------------------------------------------------------------------


def test_the_schema_is_a_valid_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_schema_states_the_compatibility_rule() -> None:
    """The rule as README's "JSON output" states it, word for word."""
    section = " ".join(readme_section().split()).replace("`", "")
    rule = (
        "New keys may be added within report_schema 1; a key is never removed or changes meaning"
        " without a new report_schema"
    )
    assert rule in section
    assert rule in schema()["description"]


def subschemas(node: Any, pointer: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object in ``node`` with its JSON pointer."""
    if isinstance(node, dict):
        if pointer.rsplit("/", 1)[-1] not in ("properties", "$defs"):
            yield pointer, node
        for key, value in node.items():
            if key not in ("enum", "const", "required"):
                yield from subschemas(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from subschemas(value, f"{pointer}/{i}")


def test_every_object_is_closed_or_a_map() -> None:
    """An object with fixed keys refuses any other key (additionalProperties false, or
    unevaluatedProperties false where it adds keys to SPLIT); a map keyed by data says what its
    values are. Only SPLIT itself is left open, for the objects that extend it."""
    for pointer, node in subschemas(schema()):
        if pointer == "/$defs/split":
            assert "additionalProperties" not in node and "unevaluatedProperties" not in node
            continue
        if "properties" in node:
            closed = node.get("additionalProperties") is False or node.get("unevaluatedProperties") is False
            assert closed, pointer
        elif node.get("type") == "object":
            assert isinstance(node.get("additionalProperties"), dict), pointer


def test_every_top_level_key_of_the_readme_is_in_the_schema_and_back() -> None:
    block = readme_block()
    named = re.findall(r"^([a-z_]+)(?:\s|$)", block, re.MULTILINE)
    assert named[:2] == ["report_schema", "generated"]
    assert set(named) == set(schema()["properties"])
    assert set(schema()["required"]) == set(schema()["properties"])


def test_every_key_in_the_schema_is_named_in_the_readme() -> None:
    words = set(re.findall(r"[a-z_][a-z0-9_]*", readme_block()))
    keys = {key for _, node in subschemas(schema()) for key in node.get("properties", {})}
    assert keys - words == set()


# ---- real documents --------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_the_document_matches_the_schema(documents: dict[str, Doc], name: str) -> None:
    assert problems(documents[name]) == []


def test_the_scenarios_have_the_shapes_they_are_for(documents: dict[str, Doc]) -> None:
    d = documents
    assert [p["name"] for p in d["month"]["policies"]] == [
        "require_starttls",
        "tls_min_version",
        "spf",
        "dmarc",
        "arc",
        "dnsbl",
    ]
    assert len({h["host"] for h in d["month"]["hosts"]}) == 4 and len(d["month"]["combined"]["daily"]) == 30
    dmarc = d["month"]["policies"][3]
    assert dmarc["overrides_by"] and dmarc["affected"]["paths"]["forwarded_arc"]["sealers"]
    assert [p["name"] for p in d["month_filtered"]["policies"]] == ["dmarc", "arc"]
    assert d["month_filtered"]["filters"]["until"] == "2026-12-05T11:00:00.000Z"
    assert [p["name"] for p in d["policy_spf"]["policies"]] == ["spf"]
    assert d["empty"]["input"]["sources"][0]["name"] == "<stdin>" and d["empty"]["input"]["lines"] == 0
    gone = d["all_filtered_out"]["input"]
    assert (
        gone["events"] == 0 and gone["filtered_out"] > 0 and d["all_filtered_out"]["period"]["first"] is None
    )
    inp = d["malformed"]["input"]
    assert inp["malformed_lines"] > len(inp["malformed_examples"]) == 5
    assert inp["unsupported_schema"] == {"0": 1, "2": 2} and inp["unknown_event_types"] == {"reload": 1}
    assert [s["format"] for s in inp["sources"]] == [
        "lines",
        "syslog",
        "journal-json",
        "journal-export",
        None,
    ]
    assert inp["sources"][2]["omitted"] == 1 and inp["sources"][4]["error"]
    assert {x["domain"] for x in d["lookalikes"]["lookalikes"]["domains"]} == set(LOOKALIKES)
    assert d["suggestions"]["suggestions"] and d["suggestions"]["sealer_suggestions"][1]["earlier_sealers"]


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def resolve(ref: str) -> dict[str, Any]:
    node: Any = schema()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def places(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every place a value can have in the document (``/combined/affected/top_clients/[]/ip``,
    ``[]`` a list item, ``*`` a map value), with each subschema that describes it: its own and the
    ones it refers to ($ref is inlined, so a definition used in two places is two places)."""
    yield path, node
    if "$ref" in node:
        yield from places(resolve(node["$ref"]), path)
    for key, sub in node.get("properties", {}).items():
        yield from places(sub, f"{path}/{key}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from places(node["additionalProperties"], f"{path}/*")
    if isinstance(node.get("items"), dict):
        yield from places(node["items"], f"{path}/[]")


def visit(node: dict[str, Any], value: Any, path: str, met: dict[str, set[str]]) -> None:
    """Record the type of ``value`` at its place (see :func:`places`), and go down the document
    and the schema together (this schema's keywords only: $ref, properties, additionalProperties,
    items)."""
    met.setdefault(path, set()).add(json_type(value))
    if "$ref" in node:
        visit(resolve(node["$ref"]), value, path, met)
    if isinstance(value, dict):
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                visit(props[key], item, f"{path}/{key}", met)
            elif isinstance(extra, dict):
                visit(extra, item, f"{path}/*", met)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            visit(node["items"], item, f"{path}/[]", met)


def declared_types(node: dict[str, Any]) -> set[str]:
    """The JSON types a subschema allows when it allows more than one."""
    types = node.get("type")
    if isinstance(types, list):
        return set(types)
    if "enum" in node and None in node["enum"]:
        return {"null", *(json_type(v) for v in node["enum"] if v is not None)}
    return set()


def test_the_documents_meet_every_part_of_the_schema(documents: dict[str, Doc]) -> None:
    """Every key, list item and map value of the schema, in every place it is used, was in some
    document (so each was checked against a real value: no list or map was always empty), and every
    type a key may have (null included) was seen."""
    met: dict[str, set[str]] = {}
    for doc in documents.values():
        visit(schema(), doc, "", met)
    unmet: set[str] = set()
    untyped: list[str] = []
    for path, node in places(schema()):
        if path not in met:
            unmet.add(path)
            continue
        seen = met[path] | ({"number"} if "integer" in met[path] else set())
        if declared_types(node) - seen:
            untyped.append(f"{path}: {sorted(declared_types(node) - seen)}")
    assert sorted(unmet) == [] and untyped == []
    assert len(met) > 400  # the walk went everywhere


# ---- what the schema refuses -----------------------------------------------------------------


def without(path: list[str | int]) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        *parents, key = path
        node: Any = doc
        for part in parents:
            node = node[part]
        del node[key]

    return change


def setting(path: list[str | int], value: Any) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        *parents, key = path
        node: Any = doc
        for part in parents:
            node = node[part]
        node[key] = value

    return change


DIRECT: list[str | int] = ["combined", "affected", "paths", "direct"]
MUTATIONS: dict[str, Callable[[Doc], None]] = {
    "top-level key removed": without(["totals"]),
    "nested key removed": without([*DIRECT, "recipients"]),
    "SPLIT key removed": without(["combined", "affected", "top_clients", 0, "unknown_recipients"]),
    "source key removed": without(["input", "sources", 0, "format"]),
    "count as a string": setting(["totals", "transactions"], "3"),
    "negative count": setting(["hosts", 0, "refused"], -1),
    "float count": setting(["combined", "lost"], 1.5),
    "share above 1": setting(["combined", "lost_share"], 1.2),
    "time not RFC 3339": setting(["generated"], "yesterday"),
    "date with a time": setting(["combined", "daily", 0, "date"], r.ts()),
    "map value not a count": setting(["totals", "outcomes", "accepted"], "many"),
    "other report_schema": setting(["report_schema"], 2),
    "unknown format": setting(["input", "sources", 0, "format"], "csv"),
    "undocumented top-level key": setting(["surprise"], 1),
    "undocumented nested key": setting([*DIRECT, "surprise"], 1),
    "undocumented key next to SPLIT": setting(
        ["combined", "affected", "top_sender_domains", 0, "surprise"], 1
    ),
    "undocumented key in SPLIT alone": setting(["tls", "floor_simulation", 0, "transactions", "surprise"], 1),
    "undocumented key in AFFECTED": setting(["policies", 0, "affected", "surprise"], 1),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_a_wrong_document_is_refused(documents: dict[str, Doc], mutation: str) -> None:
    doc = copy.deepcopy(documents["suggestions"])
    assert problems(doc) == []
    MUTATIONS[mutation](doc)
    assert problems(doc)


def test_event_times_that_are_not_canonical_are_not_copied_into_the_report(tmp_path: Path) -> None:
    (tmp_path / "events.log").write_bytes(bad_timestamp_log())
    doc = run([str(tmp_path / "events.log")], tmp_path / "r.json")
    assert problems(doc) == []
