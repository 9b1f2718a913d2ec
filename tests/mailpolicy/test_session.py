"""The rules that decide a transaction, driven with plain calls (no pymilter, no process): stages,
exemptions, refusals, header edits, unreadable inputs, bounded header facts, the setup each
transaction runs under. Property tests at the end drive the session with arbitrary bytes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailpolicy import config, envelope, events
from mailpolicy.model import Action
from mailpolicy.session import (
    MAX_AR_REMOVALS,
    AddHeader,
    DeleteHeader,
    EomResponse,
    InsertHeader,
    Quarantine,
    Response,
    Session,
    Setup,
    setup_of,
)
from mailpolicy.text import Unreadable
from support import dkimkeys, event_schema, fakedns
from support.authres_strict import parse_strict

AUTHSERV = "mx.test.example"
ZONE: dict[str, fakedns.Records] = {
    "good.example": [("TXT", "v=spf1 ip4:192.0.2.10 -all"), ("A", "192.0.2.10")],
    "_dmarc.good.example": [("TXT", "v=DMARC1; p=reject")],
    "victim.example": [("TXT", "v=spf1 -all"), ("A", "192.0.2.20")],
    "_dmarc.victim.example": [("TXT", "v=DMARC1; p=reject")],
    "attacker.example": [("TXT", "v=spf1 ip4:198.51.100.7 -all"), ("A", "198.51.100.7")],
    "_dmarc.attacker.example": "timeout",
}


@pytest.fixture
def zone() -> Iterator[fakedns.FakeResolver]:
    z = dict(ZONE)
    z["sel._domainkey.good.example"] = [("TXT", dkimkeys.rsa_key().record)]
    yield fakedns.install(z)


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    monkeypatch.setattr(events, "emit", out.append)
    return out


def cfg(**sections: Any) -> config.Config:
    base: dict[str, Any] = {
        "milter": {"hostname": AUTHSERV},
        "dns": {"nameservers": ["127.0.0.1"]},
        "auth": {"authserv_id": AUTHSERV, "spf_timeout": 1.0},
    }
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    return config.parse(base)


def session(c: config.Config | None = None, **sections: Any) -> Session:
    s = Session(setup_of(c or cfg(**sections)))
    s.negotiate(True, True)
    return s


def connect(s: Session, ip: str = "192.0.2.10", helo: str = "mail.good.example", tls: bool = False) -> None:
    s.connect("client.example", ip, 25000, "smtpd")
    macros = {"{tls_version}": "TLSv1.3", "{cipher}": "TLS_AES_128_GCM_SHA256"} if tls else {}
    s.helo(helo, macros)


def message(from_: str = "Alice <alice@good.example>", extra: list[tuple[str, str]] | None = None) -> bytes:
    return dkimkeys.message(from_=from_, extra=extra)


def send(
    s: Session, mail_from: bytes, msg: bytes, rcpts: tuple[bytes, ...] = (b"<bob@example.net>",)
) -> tuple[Response, list[Response], EomResponse | None]:
    """One transaction; the EOM answer is None when it ended before."""
    mail = s.mail(mail_from, [], {})
    if mail.action is not Action.CONTINUE:
        return mail, [], None
    replies = [s.rcpt(r, [], {"i": "QID"}) for r in rcpts]
    if all(r.action is not Action.CONTINUE for r in replies):
        s.abort()
        return mail, replies, None
    fields, body = dkimkeys.split(msg)
    for name, value in fields:
        s.header(name, value.encode("utf-8", "surrogateescape"))
    s.end_of_headers()
    s.body(body)
    return mail, replies, s.eom({"i": "QID"})


def ar_values(eom: EomResponse) -> list[str]:
    """Our header values, unfolded."""
    return [
        e.value.replace("\n\t", " ")
        for e in eom.edits
        if isinstance(e, InsertHeader) and e.name == "Authentication-Results"
    ]


# ---- examples -----------------------------------------------------------------------------------


def test_monitor_accepts_and_adds_one_header(
    zone: fakedns.FakeResolver, emitted: list[dict[str, Any]]
) -> None:
    s = session()
    connect(s)
    msg = dkimkeys.sign(message(), "good.example", "sel", dkimkeys.rsa_key())
    mail, rcpts, eom = send(s, b"<bounce@good.example>", msg)
    assert mail == Response() and rcpts == [Response()] and eom is not None
    assert eom.response == Response()
    [value] = ar_values(eom)
    assert value.startswith(f"{AUTHSERV}; spf=pass smtp.mailfrom=bounce@good.example; dkim=pass")
    assert "dmarc=pass header.from=good.example" in value.replace("\n\t", " ")
    s.close()
    kinds = [e["event"] for e in emitted]
    assert kinds == ["transaction", "connection"]
    assert emitted[0]["outcome"] == "accepted" and emitted[0]["dmarc"]["result"] == "pass"


def test_enforce_refuses_a_spoof_at_end_of_data_without_edits(zone: fakedns.FakeResolver) -> None:
    s = session(policies={"dmarc": {"mode": "enforce"}})
    connect(s, ip="198.51.100.7", helo="mx.attacker.example")
    _, _, eom = send(s, b"<bounce@attacker.example>", message(from_="CEO <ceo@victim.example>"))
    assert eom is not None and eom.edits == ()
    assert eom.response.action is Action.REJECT and str(eom.response.reply).startswith("550 5.7.1")


def test_a_timeout_at_the_attackers_dmarc_record_does_not_save_the_spoof(
    zone: fakedns.FakeResolver, emitted: list[dict[str, Any]]
) -> None:
    """Hole 1: MAIL FROM in the attacker's domain with a passing SPF and a _dmarc that times out."""
    s = session(policies={"dmarc": {"mode": "enforce"}, "spf": {"mode": "enforce"}})
    connect(s, ip="198.51.100.7", helo="mx.attacker.example")
    mail, _, eom = send(s, b"<bounce@attacker.example>", message(from_="CEO <ceo@victim.example>"))
    assert mail == Response()  # SPF passes for the attacker's own domain
    assert eom is not None and eom.response.action is Action.REJECT
    assert emitted[-1]["dmarc"]["result"] == "fail"
    assert ("_dmarc.attacker.example", "TXT") not in zone.queries


def test_padding_hides_neither_from_nor_forged_header(zone: fakedns.FakeResolver) -> None:
    """Hole 2: only the first 1,000 fields used to be kept: a From after them was never seen
    (permerror, delivered in enforce mode) and a forged A-R after them survived next to ours."""
    pad = [(f"X-Pad-{i}", "x") for i in range(5000)]
    msg = message(
        from_="CEO <ceo@victim.example>", extra=[*pad, ("Authentication-Results", f"{AUTHSERV}; dkim=pass")]
    )
    # The From must come after the padding: move it to the end of the header.
    head, _, body = msg.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    from_line = next(line for line in lines if line.startswith(b"From:"))
    msg = b"\r\n".join([line for line in lines if line is not from_line] + [from_line]) + b"\r\n\r\n" + body
    s = session(policies={"dmarc": {"mode": "monitor"}})
    connect(s, ip="198.51.100.7")
    _, _, eom = send(s, b"<bounce@attacker.example>", msg)
    assert eom is not None
    assert [e for e in eom.edits if isinstance(e, DeleteHeader)] == [
        DeleteHeader("Authentication-Results", 1)
    ]
    assert "dmarc=fail header.from=victim.example" in ar_values(eom)[0].replace("\n\t", " ")
    s2 = session(policies={"dmarc": {"mode": "enforce"}})
    connect(s2, ip="198.51.100.7")
    _, _, eom2 = send(s2, b"<bounce@attacker.example>", msg)
    assert eom2 is not None and eom2.response.action is Action.REJECT


@pytest.mark.parametrize(
    "from_header",
    [None, "ceo@victim.example, <garbage", '"unterminated <ceo@victim.example>', "undisclosed-recipients:;"],
)
def test_no_usable_from_is_refused_in_enforce_mode(
    zone: fakedns.FakeResolver, from_header: str | None
) -> None:
    """Hole 3: a missing or unparseable From walked past an enforcing DMARC policy."""
    msg = message()
    head, _, body = msg.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.startswith(b"From:")]
    if from_header is not None:
        lines.append(b"From: " + from_header.encode())
    msg = b"\r\n".join(lines) + b"\r\n\r\n" + body
    s = session(policies={"dmarc": {"mode": "enforce"}})
    connect(s, ip="198.51.100.7")
    _, _, eom = send(s, b"<bounce@attacker.example>", msg)
    assert eom is not None and eom.response.action is Action.REJECT
    assert "no single author domain" in str(eom.response.reply)


def test_recipient_exemptions_act_per_rcpt(zone: fakedns.FakeResolver, emitted: list[dict[str, Any]]) -> None:
    s = session(
        auth={"enabled": False},
        policies={
            "spf": {"mode": "off"},
            "dmarc": {"mode": "off"},
            "require_starttls": {"mode": "enforce", "exempt_recipients": ["postmaster@"]},
        },
    )
    connect(s)
    mail, rcpts, eom = send(
        s, b"<a@good.example>", message(), (b"<postmaster@x.example>", b"<bob@x.example>")
    )
    assert mail == Response() and rcpts[0] == Response()
    assert rcpts[1].action is Action.REJECT and str(rcpts[1].reply).startswith("530 5.7.0")
    assert eom is not None and eom.response == Response()
    rec = emitted[-1]
    assert (rec["rcpt_count"], rec["rcpt_rejected"], rec["outcome"]) == (2, 1, "accepted")
    # Only exempt recipients: nothing refused, decision "continue" with exemption "recipient".
    emitted.clear()
    _, rcpts, _ = send(s, b"<a@good.example>", message(), (b"<postmaster@y.example>",))
    assert rcpts == [Response()]
    d = emitted[-1]["policies"]["require_starttls"]
    assert (d["action"], d["exempt"], d["applied"]) == ("continue", "recipient", False)
    # Every recipient refused: the transaction is recorded as rejected at RCPT.
    emitted.clear()
    _, rcpts, eom = send(s, b"<a@good.example>", message(), (b"<bob@y.example>",))
    assert eom is None and rcpts[0].action is Action.REJECT
    assert (emitted[-1]["outcome"], emitted[-1]["stage"], emitted[-1]["final_action"]) == (
        "rejected",
        "rcpt",
        "reject",
    )


def test_quarantine_by_header_or_hold(zone: fakedns.FakeResolver) -> None:
    zone.zone["_dmarc.victim.example"] = [("TXT", "v=DMARC1; p=quarantine")]
    for how, edit_type in (("header", AddHeader), ("hold", Quarantine)):
        s = session(policies={"dmarc": {"mode": "enforce", "quarantine": how}})
        connect(s, ip="198.51.100.7")
        _, _, eom = send(s, b"<b@attacker.example>", message(from_="ceo@victim.example"))
        assert eom is not None and eom.response == Response()
        assert [type(e) for e in eom.edits][-1] is edit_type


def test_unreadable_inputs_are_recorded_and_every_policy_still_decides(
    zone: fakedns.FakeResolver, emitted: list[dict[str, Any]]
) -> None:
    """Hole 7: an 8-bit macro or HELO skipped the policies; now it is a recorded fact."""
    s = session(policies={p: {"mode": "enforce"} for p in ("tls_min_version", "spf", "dmarc")})
    s.connect("client.example", "192.0.2.10", 25000, "smtpd")
    s.unreadable_argument(b"mail.\xff.example")  # what the adapter's excepthook reports for a HELO
    macros: dict[str, str | Unreadable | None] = {
        "{tls_version}": "TLSv1.3",
        "{cipher}": "X",
        "{cert_subject}": Unreadable(b"Caf\xe9"),
        "{auth_authen}": Unreadable(b"j\xf6rg"),
    }
    assert s.mail(b"<bounce@good.example>", [], macros) == Response()
    s.rcpt(b"<bob@example.net>", [], {})
    for name, value in dkimkeys.split(message())[0]:
        s.header(name, value.encode())
    s.eom({})
    s.close()
    txn = emitted[0]
    assert set(txn["policies"]) == {"require_starttls", "tls_min_version", "spf", "dmarc"}
    assert {"helo", "{cert_subject}", "{auth_authen}"} <= set(txn["unreadable"])
    assert txn["helo"] == "mail.\ufffd.example" and txn["auth"] == "j\ufffdrg"


def test_each_transaction_runs_under_the_setup_current_at_its_mail(
    zone: fakedns.FakeResolver, emitted: list[dict[str, Any]]
) -> None:
    monitor = Setup.from_config(
        cfg(auth={"enabled": False}, policies={"require_starttls": {"mode": "monitor"}})
    )
    enforce = Setup.from_config(
        cfg(auth={"enabled": False}, policies={"require_starttls": {"mode": "enforce"}})
    )
    current = [monitor]
    s = Session(lambda: current[0])
    s.negotiate(True, True)
    connect(s)
    assert s.mail(b"<a@good.example>", [], {}) == Response()
    current[0] = enforce  # a reload while the transaction is in flight
    assert s.rcpt(b"<b@x.example>", [], {}) == Response()
    assert s.eom({}).response == Response()
    assert s.mail(b"<a@good.example>", [], {}).action is Action.REJECT
    modes = [e["policies"]["require_starttls"]["mode"] for e in emitted]
    assert modes == ["monitor", "enforce"]


def test_message_not_passed_by_the_mta_is_temperror_not_permerror(zone: fakedns.FakeResolver) -> None:
    s = Session(setup_of(cfg(policies={"dmarc": {"mode": "enforce"}})))
    s.negotiate(True, message=False)  # header callbacks negotiated away
    connect(s, ip="198.51.100.7")
    s.mail(b"<b@attacker.example>", [], {})
    s.rcpt(b"<c@example.net>", [], {})
    eom = s.eom({})
    assert eom.response == Response()  # temperror_action = continue
    assert s.conn.current is None


def test_close_without_connect_writes_no_connection_event(emitted: list[dict[str, Any]]) -> None:
    s = session(auth={"enabled": False})
    s.close()
    s.close()
    assert emitted == []


# ---- properties ---------------------------------------------------------------------------------

HOSTILE_VALUES = st.one_of(
    st.binary(max_size=80),
    st.sampled_from(
        [
            b" ceo@victim.example",
            b" ceo@victim.example, <garbage",
            b" a@good.example, b@victim.example",
            f" {AUTHSERV}; dkim=pass".encode(),
            f" (a (b) c) {AUTHSERV}; dkim=pass".encode(),
            f' "{AUTHSERV}"; spf=pass'.encode(),
            f" {AUTHSERV.upper()}.; none".encode(),
            b" v=1; a=rsa-sha256; d=good.example; s=\x01; h=from; bh=AAAA; b=AAAA",
            b" v=1; a=\x01; d=; s=sel; h=from; bh=; b=",
            b' v=1; a=rsa-sha256; d=a b; s=" ;"; h=from:from; bh=AA==; b=AA==',
            b"\xff\xfe\x00\r\n\tfolded",
        ]
    ),
)
FIELD_NAMES = st.sampled_from(
    ["From", "from", "Authentication-Results", "DKIM-Signature", "Subject", "X-Junk"]
)
MACRO = st.one_of(st.none(), st.text(max_size=20), st.binary(max_size=20).map(Unreadable))


@st.composite
def transactions(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "sender": draw(
            st.one_of(st.binary(max_size=40), st.sampled_from([b"<>", b"<a@x,b@y>", b'<"a b"@good.example>']))
        ),
        "macros": draw(
            st.dictionaries(
                st.sampled_from(["{tls_version}", "{cipher}", "{cert_subject}", "{auth_authen}"]), MACRO
            )
        ),
        "rcpts": draw(st.lists(st.binary(max_size=30), max_size=3)),
        "fields": draw(st.lists(st.tuples(FIELD_NAMES, HOSTILE_VALUES), max_size=12)),
        "body": draw(st.binary(max_size=200)),
        "end": draw(st.sampled_from(["eom", "eom", "abort", "none"])),
    }


@st.composite
def sessions(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "helo": draw(st.one_of(st.text(max_size=30), st.binary(max_size=30).map(Unreadable))),
        "ip": draw(st.sampled_from(["192.0.2.10", "198.51.100.7", "::1", None])),
        "txns": draw(st.lists(transactions(), min_size=1, max_size=3)),
    }


def drive(s: Session, spec: dict[str, Any]) -> list[tuple[str, Any]]:
    """Run one generated session; returns (stage, answer) for every answer the session gave."""
    answers: list[tuple[str, Any]] = []
    s.connect("client.example", spec["ip"], 25000, "smtpd")
    s.helo(spec["helo"], {})
    for t in spec["txns"]:
        mail = s.mail(t["sender"], [], t["macros"])
        answers.append(("mail", mail))
        if mail != Response():
            t["end"] = "refused"  # the MTA goes no further with this transaction
            continue
        rcpts = [s.rcpt(r, [], {}) for r in t["rcpts"]]
        answers += [("rcpt", r) for r in rcpts]
        if rcpts and all(r != Response() for r in rcpts):
            t["end"] = "refused"
            s.abort()
            continue
        for name, value in t["fields"]:
            s.header(name, value)
        s.body(t["body"])
        if t["end"] == "eom":
            answers.append(("eom", s.eom({"i": "Q"})))
        elif t["end"] == "abort":
            s.abort()
    s.close()
    return answers


PROPERTY = settings(
    max_examples=int(os.environ.get("MAILPOLICY_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@PROPERTY
@given(sessions())
def test_property_monitor_never_refuses_and_edits_only_our_header(
    zone: fakedns.FakeResolver, emitted: list[dict[str, Any]], spec: dict[str, Any]
) -> None:
    """(Its messages carry far fewer than MAX_AR_REMOVALS forged fields: past that a message is
    refused in every mode, see the test of that below.)"""
    s = session(
        policies={p: {"mode": "monitor"} for p in ("require_starttls", "tls_min_version", "spf", "dmarc")}
    )
    answers = drive(s, spec)
    for stage, answer in answers:
        if stage != "eom":
            assert answer == Response(), (stage, answer)
    eoms = [a for stage, a in answers if stage == "eom"]
    eom_txns = [t for t in spec["txns"] if t["end"] == "eom"]
    assert len(eoms) == len(eom_txns)
    for t, eom in zip(eom_txns, eoms, strict=True):
        assert eom.response == Response()
        assert all(isinstance(e, DeleteHeader | InsertHeader) for e in eom.edits), eom.edits
        assert all(e.name == "Authentication-Results" for e in eom.edits)
        [value] = ar_values(eom)
        assert parse_strict(value).authserv_id == AUTHSERV
        # Every field claiming our authserv-id is deleted, by its index among A-R fields.
        deleted = sorted(e.index for e in eom.edits if isinstance(e, DeleteHeader))
        assert deleted == claimed_indexes(t["fields"])


def claimed_indexes(fields: list[tuple[str, bytes]]) -> list[int]:
    """An independent oracle for RFC 8601's authserv-id: skip blanks and (nested) comments, then
    read a quoted-string or the characters up to a special; compare case-insensitively."""
    out = []
    n = 0
    for name, raw in fields:
        if name.lower() != "authentication-results":
            continue
        n += 1
        text = raw.decode("utf-8", "replace")
        i, depth = 0, 0
        while i < len(text):
            c = text[i]
            if depth:
                if c == "\\":
                    i += 1
                elif c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
            elif c == "(":
                depth = 1
            elif c not in " \t\r\n":
                break
            i += 1
        rest = text[i:]
        if rest.startswith('"'):
            ident = rest[1:].split('"', 1)[0].replace("\\", "")
        else:
            ident = ""
            for c in rest:
                if c in '()<>@,;:\\"/[]?= \t\r\n' or ord(c) < 33 or c == "\x7f":
                    break
                ident += c
        if ident.strip().lower().rstrip(".") == AUTHSERV:
            out.append(n)
    return out


@PROPERTY
@given(sessions())
def test_property_enforce_decides_every_active_policy_for_every_transaction(
    zone: fakedns.FakeResolver, emitted: list[dict[str, Any]], spec: dict[str, Any]
) -> None:
    emitted.clear()  # the fixture lives across Hypothesis examples
    s = session(
        policies={p: {"mode": "enforce"} for p in ("require_starttls", "tls_min_version", "spf", "dmarc")}
    )
    answers = drive(s, spec)
    txns = [e for e in emitted if e["event"] == "transaction"]
    assert len(txns) == len(spec["txns"])
    for rec in txns:
        assert {"require_starttls", "tls_min_version", "spf"} <= set(rec["policies"]), rec["policies"]
        if rec["stage"] == "eom":
            assert "dmarc" in rec["policies"]
    for stage, answer in answers:
        if stage == "eom" and answer.response == Response():
            assert len(ar_values(answer)) == 1
            parse_strict(ar_values(answer)[0])


@PROPERTY
@given(sessions())
def test_property_every_event_line_is_valid_utf8_json(
    zone: fakedns.FakeResolver, emitted: list[dict[str, Any]], spec: dict[str, Any]
) -> None:
    emitted.clear()
    drive(session(), spec)
    assert emitted
    for rec in emitted:
        line = events.encode({"ts": "2026-12-02T00:00:00.000Z", "host": AUTHSERV, "schema": 1, **rec})
        decoded = json.loads(line.decode("utf-8"))
        assert decoded["event"] in ("transaction", "connection")
        assert event_schema.problems(decoded) == []  # docs/event.schema.json
        assert FIELDS[decoded["event"]] <= set(decoded), FIELDS[decoded["event"]] - set(decoded)
        if decoded["event"] == "transaction":
            assert decoded["outcome"] in ("accepted", "rejected", "tempfailed", "quarantined", "aborted")
            for d in decoded["policies"].values():
                assert {"mode", "result", "action", "applied", "exempt"} <= set(d)


# The documented fields (README, "Log lines") every event carries.
FIELDS = {
    "transaction": {
        "conn_id",
        "txn",
        "queue_id",
        "start",
        "client_ip",
        "client_port",
        "client_name",
        "helo",
        "auth",
        "mail_from",
        "rcpt_count",
        "rcpt_rejected",
        "starttls",
        "tls_version",
        "tls_cipher",
        "tls_cipher_bits",
        "tls_cert_subject",
        "tls_cert_issuer",
        "policies",
        "final_action",
        "outcome",
        "stage",
        "unreadable",
    },
    "connection": {
        "conn_id",
        "start",
        "end",
        "duration_s",
        "client_ip",
        "client_port",
        "client_name",
        "daemon",
        "helo",
        "starttls",
        "tls_version",
        "tls_cipher",
        "tls_cipher_bits",
        "tls_cert_subject",
        "tls_cert_issuer",
        "transactions",
        "messages",
        "outcomes",
        "end_stage",
        "unreadable",
    },
}


def test_an_exempt_recipient_does_not_carry_a_refused_message_to_the_others(
    zone: fakedns.FakeResolver, emitted: list[dict[str, Any]]
) -> None:
    """At end of data the message cannot be split: it is exempt only when every recipient it goes
    to is exempt (adding postmaster@ to a spoof used to exempt it for everybody)."""
    exempt = {"mode": "enforce", "exempt_recipients": ["postmaster@"]}
    s = session(policies={"dmarc": exempt})
    connect(s, ip="198.51.100.7")
    spoof = message(from_="ceo@victim.example")
    _, _, eom = send(s, b"<b@attacker.example>", spoof, (b"<postmaster@x.example>", b"<ceo@x.example>"))
    assert eom is not None and eom.response.action is Action.REJECT
    _, _, eom = send(s, b"<b@attacker.example>", spoof, (b"<postmaster@x.example>",))
    assert eom is not None and eom.response == Response()
    assert emitted[-1]["policies"]["dmarc"]["exempt"] == "recipient"
    # Recipients refused at RCPT are not part of the message: only postmaster@ receives it here.
    s = session(policies={"dmarc": exempt, "require_starttls": exempt})
    connect(s, ip="198.51.100.7")
    _, rcpts, eom = send(s, b"<b@attacker.example>", spoof, (b"<postmaster@x.example>", b"<ceo@x.example>"))
    assert [r.action for r in rcpts] == [Action.CONTINUE, Action.REJECT]
    assert eom is not None and eom.response == Response()


def test_a_header_builder_failure_still_gives_one_header(
    zone: fakedns.FakeResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailpolicy.auth import header

    def boom(*a: object) -> str:
        raise ValueError("builder bug")

    monkeypatch.setattr(header, "build", boom)
    s = session()
    connect(s, ip="198.51.100.7")
    _, _, eom = send(s, b"<b@attacker.example>", message(from_="ceo@victim.example"))
    assert eom is not None and ar_values(eom) == [f"{AUTHSERV}; dmarc=fail"]


def test_queue_id_from_mail_macros_as_sendmail_sends_it(emitted: list[dict[str, Any]]) -> None:
    """Sendmail sends the queue id only at MAIL (Postfix from the second RCPT on): a transaction
    refused at MAIL and one that goes on both carry it; a later value (Postfix at EOM) wins."""
    s = session(auth={"enabled": False}, policies={"require_starttls": {"mode": "enforce"}})
    connect(s)
    r = s.mail(b"<a@good.example>", [], {"i": "6B1Ma3VY015101"})
    assert r.action is Action.REJECT
    assert (emitted[-1]["queue_id"], emitted[-1]["stage"]) == ("6B1Ma3VY015101", "mail")
    s.helo("mail.good.example", {"{tls_version}": "TLSv1.3", "{cipher}": "TLS_AES_128_GCM_SHA256"})
    assert s.mail(b"<a@good.example>", [], {"i": "6B1Ma3Vb015101"}) == Response()
    assert s.rcpt(b"<bob@example.net>", [], {}) == Response()
    s.end_of_headers()
    assert s.eom({}).response == Response()
    assert (emitted[-1]["queue_id"], emitted[-1]["outcome"]) == ("6B1Ma3Vb015101", "accepted")
    assert s.mail(b"<a@good.example>", [], {}) == Response()
    s.rcpt(b"<bob@example.net>", [], {})
    s.end_of_headers()
    s.eom({"i": "B3F8020E4D2"})
    assert emitted[-1]["queue_id"] == "B3F8020E4D2"


def test_a_failing_method_makes_what_needs_it_temperror_never_a_fail(
    zone: fakedns.FakeResolver, emitted: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A method that raises gets its ``unavailable`` result, and a method that needs it (DMARC
    needs DKIM) is not computed from the gap: DMARC is temperror, so nothing is refused for it."""
    import dataclasses

    from mailpolicy.auth import methods

    def boom(txn: object) -> object:
        raise RuntimeError("verifier bug")

    monkeypatch.setitem(methods.METHODS, "dkim", dataclasses.replace(methods.METHODS["dkim"], run=boom))
    s = session(policies={"dmarc": {"mode": "enforce"}})
    connect(s)
    msg = dkimkeys.sign(message(), "good.example", "sel", dkimkeys.rsa_key())
    _, _, eom = send(s, b"<bounce@good.example>", msg)
    assert eom is not None and eom.response == Response()
    [value] = ar_values(eom)
    assert "dmarc=temperror" in value and "dkim=" not in value
    rec = emitted[-1]
    assert rec["dkim"] == [] and rec["dmarc"]["result"] == "temperror"
    assert rec["dmarc"]["reason"] == "dkim could not be evaluated"
    assert rec["policies"]["dmarc"]["action"] == "continue"
    parse_strict(value)


def forwarded(modify: bool = True) -> bytes:
    """alice@good.example signs (p=reject); the list adds a footer (the signature breaks) after
    recording ``dkim=pass`` in its AAR, and seals with d=lists.example.org."""
    import dkim as dkimpy

    signed = dkimkeys.sign(message(), "good.example", "sel", dkimkeys.rsa_key())
    ar = (
        b"Authentication-Results: lists.example.org; dkim=pass header.d=good.example;"
        b" dmarc=pass header.from=good.example\r\n"
    )
    body_end = b"\r\n-- \r\nlist footer\r\n" if modify else b""
    changed = ar + b"List-Id: Dev <dev.lists.example.org>\r\n" + signed + body_end
    sets = dkimpy.arc_sign(
        changed, b"sel", b"lists.example.org", dkimkeys.rsa_key().private, b"lists.example.org"
    )
    return b"".join(sets) + changed


def test_a_forwarded_message_passes_arc_and_a_trusted_sealer_overrides_dmarc(
    zone: fakedns.FakeResolver, emitted: list[dict[str, Any]]
) -> None:
    zone.zone["sel._domainkey.lists.example.org"] = [("TXT", dkimkeys.rsa_key().record)]
    # the list's server relays from its own address: SPF for good.example does not pass
    untrusted = session(policies={"dmarc": {"mode": "enforce"}})
    connect(untrusted, ip="203.0.113.5", helo="lists.example.org")
    _, _, eom = send(untrusted, b"<alice@good.example>", forwarded())
    assert eom is not None and eom.response.action is Action.REJECT
    rec = emitted[-1]
    assert rec["arc"]["result"] == "pass" and rec["arc"]["sealers"] == ["lists.example.org"]
    assert rec["dmarc"]["result"] == "fail" and rec["list_id"] == "dev.lists.example.org"
    assert rec["policies"]["dmarc"]["override"] is None

    trusting = session(policies={"dmarc": {"mode": "enforce", "trusted_arc_sealers": ["lists.example.org"]}})
    connect(trusting, ip="203.0.113.5", helo="lists.example.org")
    _, _, eom = send(trusting, b"<alice@good.example>", forwarded())
    assert eom is not None and eom.response == Response()
    [value] = ar_values(eom)
    assert "arc=pass (1 set) header.oldest-pass=0 smtp.remote-ip=203.0.113.5" in value
    assert "dmarc=fail (override: trusted_forwarder) header.from=good.example" in value
    parse_strict(value)
    d = emitted[-1]["policies"]["dmarc"]
    assert (d["action"], d["override"], d["overridden_action"]) == ("continue", "trusted_forwarder", "reject")
    assert d["details"]["override_by"] == "lists.example.org"
    # the same spoof sent directly, no chain: still refused
    connect(trusting, ip="203.0.113.5", helo="lists.example.org")
    _, _, eom = send(trusting, b"<alice@good.example>", message())
    assert eom is not None and eom.response.action is Action.REJECT


def test_a_broken_chain_is_arc_fail_and_the_arc_policy_can_act_on_it(
    zone: fakedns.FakeResolver, emitted: list[dict[str, Any]]
) -> None:
    zone.zone["sel._domainkey.lists.example.org"] = [("TXT", dkimkeys.rsa_key().record)]
    sealed = forwarded()
    broken = sealed.replace(b"list footer", b"list f00ter")  # changed after sealing
    s = session(policies={"arc": {"mode": "enforce", "fail": "reject"}, "dmarc": {"mode": "monitor"}})
    connect(s, ip="203.0.113.5")
    _, _, eom = send(s, b"<alice@good.example>", broken)
    assert eom is not None and eom.response.action is Action.REJECT
    assert str(eom.response.reply) == "550 5.7.29 ARC validation failure"
    assert emitted[-1]["arc"]["result"] == "fail" and emitted[-1]["policies"]["arc"]["applied"]


# ---- envelope addresses are decided on whole -------------------------------------------------


def test_a_long_mail_from_is_checked_whole(zone: fakedns.FakeResolver, emitted: list[dict[str, Any]]) -> None:
    """A5: the MAIL FROM used to be cut to 512 characters before SPF saw it: a long local part cut
    the domain (victim.exam), so victim.example's fail became none and was delivered."""
    s = session(policies={"spf": {"mode": "enforce"}})
    connect(s, ip="198.51.100.7", helo="mx.attacker.example")
    for n in (500, 2000, 4000):
        sender = "a" * n + "@victim.example"
        mail = s.mail(b"<" + sender.encode() + b">", [], {})
        assert mail.action is Action.REJECT, n
        rec = emitted[-1]
        assert rec["mail_from"] == sender
        assert (rec["spf"]["result"], rec["spf"]["domain"]) == ("fail", "victim.example")


def test_an_over_long_mail_from_is_never_decided_as_if_whole(
    zone: fakedns.FakeResolver, emitted: list[dict[str, Any]]
) -> None:
    """Longer than any MTA passes on (envelope.MAX_ADDRESS): kept shortened, and SPF says so. With its
    domain kept, the domain's result stands when the local part cannot matter (no macro)."""

    zone.zone["macro.example"] = [("TXT", "v=spf1 exists:%{l}.ok.macro.example -all")]
    s = session(policies={"spf": {"mode": "enforce", "permerror": "reject"}})
    connect(s, ip="198.51.100.7", helo="victim.example")
    long_local = "a" * (envelope.MAX_ADDRESS + 100)
    mail = s.mail(f"<{long_local}@victim.example>".encode(), [], {})
    rec = emitted[-1]
    assert mail.action is Action.REJECT
    assert (rec["spf"]["result"], rec["spf"]["domain"]) == ("fail", "victim.example")
    assert rec["mail_from"].endswith(envelope.CUT + "@victim.example")
    assert len(rec["mail_from"]) > envelope.MAX_ADDRESS
    for sender, domain in (
        (f"{long_local}@macro.example", "macro.example"),  # the local part it lacks could decide
        (long_local, None),  # not the HELO's (victim.example) result
        ("a@" + long_local + ".victim.example", None),  # no DNS name is that long
    ):
        mail = s.mail(f"<{sender}>".encode(), [], {})
        got = emitted[-1]["spf"]
        assert (got["result"], got["domain"]) == ("permerror", domain)
        assert mail.action is Action.REJECT


def test_an_over_long_recipient_is_never_exempt(
    zone: fakedns.FakeResolver, emitted: list[dict[str, Any]]
) -> None:
    """A recipient cut to 512 characters could match a pattern the real address does not
    (postmaster@ for 'postmaster@xxx...@evil.example'); one kept whole matches as written."""

    over = envelope.MAX_ADDRESS + 10
    exempt = {"mode": "enforce", "exempt_recipients": ["postmaster@", "@example.net"]}
    s = session(policies={"spf": exempt})
    connect(s, ip="198.51.100.7", helo="mx.attacker.example")
    assert s.mail(b"<ceo@victim.example>", [], {}) == Response()  # refused per RCPT
    cases = [
        (b"<postmaster@" + b"x" * over + b"@evil.example>", Action.REJECT),
        (b"<" + b"p" * over + b"@example.net>", Action.REJECT),  # never exempt once shortened
        (b"<" + b"p" * 600 + b"@example.net>", Action.CONTINUE),  # whole: exempt
        (b"<postmaster@" + b"x" * 600 + b".example.org>", Action.CONTINUE),
    ]
    for rcpt, action in cases:
        assert s.rcpt(rcpt, [], {}).action is action, rcpt[:20]
    # At end of data (EOM-stage policies: exempt only when every recipient is).
    d = session(policies={"dmarc": {"mode": "enforce", "exempt_recipients": ["@example.net"]}})
    connect(d, ip="198.51.100.7")
    spoof = message(from_="ceo@victim.example")
    _, _, eom = send(d, b"<b@attacker.example>", spoof, (b"<" + b"p" * 600 + b"@example.net>",))
    assert eom is not None and eom.response == Response()
    _, _, eom = send(d, b"<b@attacker.example>", spoof, (b"<" + b"p" * over + b"@example.net>",))
    assert eom is not None and eom.response.action is Action.REJECT


@pytest.mark.parametrize("forged", [MAX_AR_REMOVALS, MAX_AR_REMOVALS + 1])
def test_more_forged_fields_than_an_mta_can_remove_is_refused_even_in_monitor_mode(
    zone: fakedns.FakeResolver, emitted: list[dict[str, Any]], forged: int
) -> None:
    """Each forged A-R removed is one header edit, and Postfix's cleanup fails a message (451) past
    about 10,000: up to MAX_AR_REMOVALS all are removed; past it the message is refused, in monitor
    mode too, rather than delivered with results under our name that we did not write."""
    extra = [("Authentication-Results", f"{AUTHSERV}; dmarc=pass header.from=good.example")] * forged
    s = session(policies={"spf": {"mode": "monitor"}, "dmarc": {"mode": "monitor"}})
    connect(s, ip="198.51.100.7")
    _, _, eom = send(s, b"<alice@good.example>", message(extra=extra))
    assert eom is not None
    rec = emitted[-1]
    if forged <= MAX_AR_REMOVALS:
        assert eom.response.action is Action.CONTINUE
        assert sum(isinstance(e, DeleteHeader) for e in eom.edits) == forged
        assert rec["outcome"] == "accepted" and rec["authres_removed"] == forged
    else:
        assert eom.response.action is Action.REJECT and eom.edits == ()
        assert eom.response.reply is not None and eom.response.reply.code == "550"
        assert (rec["outcome"], rec["stage"], rec["final_action"]) == ("rejected", "eom", "reject")
