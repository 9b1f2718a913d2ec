"""The command line: formats, exit status, stdin, and the ``mailpolicy report`` subcommand."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailpolicy import cli, report
from support.report_events import conn, decision, lines, txn, would_reject

TOP_LEVEL = {
    "lookalikes",
    "report_schema",
    "generated",
    "mailpolicy_version",
    "event_schema",
    "filters",
    "period",
    "input",
    "hosts",
    "totals",
    "policies",
    "combined",
    "tls",
    "suggestions",
    "sealer_suggestions",
    "suggestions_toml",
}


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "events.log"
    events = [
        txn(
            tls=None,
            ip="192.0.2.1",
            policies={"require_starttls": would_reject()},
            authenticated=True,
            header_from="partner.example",
        ),
        txn(policies={"require_starttls": decision("monitor", "pass")}),
        conn(),
        conn(tls=None, ip="192.0.2.1"),
    ]
    path.write_bytes(lines(events) + b"garbage\n")
    return path


def test_json_format_is_the_documented_schema(log: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert report.main(["--format", "json", "--output", str(out), str(log)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc) == TOP_LEVEL
    assert doc["report_schema"] == report.REPORT_SCHEMA == 1
    assert doc["input"]["malformed_lines"] == 1
    p = doc["policies"][0]
    assert set(p) == {
        "name",
        "transactions",
        "modes",
        "results",
        "exempt",
        "would_reject",
        "would_tempfail",
        "would_quarantine",
        "would_refuse",
        "would_refuse_share",
        "would_refuse_recipients",
        "would_refuse_aborted",
        "would_refuse_aborted_recipients",
        "rejected",
        "tempfailed",
        "quarantined",
        "refused",
        "refused_share",
        "refused_recipients",
        "recipients",
        "affected",
        "overrides",
        "overrides_by",
        "daily",
    }
    assert set(p["affected"]["paths"]) == {"forwarded_arc", "mailing_list", "direct"}
    assert p["would_refuse_share"] == 0.5
    assert doc["combined"]["lost"] == 1
    assert doc["suggestions"][0]["network"] == "192.0.2.0/24"


def test_text_format_sections(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The answer first (the combined scenario and the per-policy table), then the details in this
    order, with the input last (its problems are named at the top)."""
    assert report.main([str(log)]) == 0
    text = capsys.readouterr().out
    order = [
        "If every monitor-mode policy were enforced (require_starttls):",
        "  1 message / 1 recipient lost (50.0% of messages, 50.0% of recipients),",
        "  policy ",
        "== Combined scenario",
        "== Suggestions ==",
        "== Policy require_starttls ==",
        "== TLS ==",
        "== Hosts ==",
        "== Input ==",
    ]
    at = [text.index(part) for part in order]
    assert at == sorted(at), order
    assert 'exempt_networks = [\n    "192.0.2.0/24",' in text
    assert (
        text.splitlines()[2] == "WARNING, incomplete input (see Input at the end): 1 malformed line skipped"
    )
    assert "1 malformed" in text[text.index("== Input ==") :]


def test_cli_subcommand_and_stdin(
    log: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["report", "--format", "json", str(log)]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["transactions"] == 2
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(log.read_bytes()))))
    assert cli.main(["report", "--format", "json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["input"]["sources"][0]["name"] == "<stdin>"
    assert doc["totals"]["connections"] == 2


def test_command_reads_a_pipe(log: Path) -> None:
    """``... | mailpolicy report -`` as a real process (the console script when installed)."""
    script = Path(sys.executable).with_name("mailpolicy")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "mailpolicy"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "milter")}
    res = subprocess.run(
        [*cmd, "report", "--format", "json", "-"],
        input=log.read_bytes(),
        capture_output=True,
        check=False,
        timeout=60,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["combined"]["lost"] == 1


def test_exit_status_and_messages(tmp_path: Path, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main(["--since", "someday", str(log)]) == 2
    assert "not a date" in capsys.readouterr().err
    assert report.main([str(tmp_path / "nope.log")]) == 1
    assert "nope.log" in capsys.readouterr().err
    newer = tmp_path / "newer.log"
    newer.write_bytes(lines([txn(schema=2)]))
    assert report.main([str(newer)]) == 0
    captured = capsys.readouterr()
    assert "refused 1 events with unsupported event schema 2" in captured.err
    assert "REFUSED: 1 event with event schema 2" in captured.out


def test_html_escapes_values_from_the_logs(tmp_path: Path) -> None:
    evil = '<script>alert(1)</script>"'
    path = tmp_path / "e.log"
    path.write_bytes(
        lines(
            [
                txn(
                    policies={"spf": would_reject()},
                    header_from=evil,
                    authenticated=True,
                    name=evil,
                    host=evil,
                )
            ]
        )
    )
    out = tmp_path / "r.html"
    assert report.main(["--format", "html", "-o", str(out), str(path)]) == 0
    html = out.read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;" in html


@pytest.mark.parametrize("value", ["0", "-1", "ten"])
def test_a_top_below_one_is_a_bad_option_value(
    value: str, log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hole: --top 0 and --top -1 were silently read as 1; a bad option value exits 2 (README)."""
    with pytest.raises(SystemExit) as exc:
        report.main(["--top", value, str(log)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --top" in err and repr(value) in err, err
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", "--top", value, str(log)])
    assert exc.value.code == 2


def test_top_one_is_one_row(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main(["--top", "1", "--format", "json", str(log)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["filters"]["top"] == 1
