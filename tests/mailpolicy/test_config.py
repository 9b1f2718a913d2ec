from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from mailpolicy import config
from mailpolicy.model import Action, Mode, Reply
from support.stack import free_port

REFERENCE = Path(__file__).resolve().parents[2] / "config" / "mailpolicy.toml"


def errors_of(data: dict[str, object]) -> list[str]:
    with pytest.raises(config.ConfigError) as exc:
        config.parse(data)
    return exc.value.errors


def test_defaults_are_safe() -> None:
    cfg = config.parse({})
    assert cfg.milter.socket == "unix:/run/mailpolicy/milter.sock"
    assert cfg.milter.socket_mode == 0o660 and cfg.milter.socket_group == "postfix"
    assert cfg.metrics.listen == ("127.0.0.1", 9469)
    assert {p.name: p.mode for p in cfg.policies.values()} == {
        "require_starttls": Mode.MONITOR,
        "tls_min_version": Mode.MONITOR,
        "spf": Mode.MONITOR,
        "dmarc": Mode.MONITOR,
        "arc": Mode.OFF,  # added later than the others: off unless asked for
    }
    st = cfg.policies["require_starttls"]
    assert st.options.reply == Reply("530", "5.7.0", "Must issue a STARTTLS command first")
    assert cfg.policies["tls_min_version"].options.min_version == "TLSv1.2"


def test_reference_file_is_valid_and_equals_defaults() -> None:
    assert config.load(str(REFERENCE)) == config.parse({})


def test_every_error_is_reported_with_its_key_path() -> None:
    errs = errors_of(
        {
            "milter": {
                "socket": "tcp:1",
                "bogus": 1,
                "socket_mode": "0600",
                "timeout": "10",
                "socket_group": "no-such-group-xyz",
                "on_error": "reject",
            },
            "metrics": {"listen": "localhost"},
            "log": {"level": "loud"},
            "policies": {
                "require_starttls": {
                    "mode": "enforced",
                    "reply": "250 ok",
                    "exempt_networks": ["10.0.0.1/8", "2001:db8::/129"],
                },
                "tls_min_version": {"min_version": "TLSv9", "exempt_recipients": ["not an address"]},
                "nope": {},
            },
            "extra": {},
        }
    )
    keys = [e.split(":", 1)[0] for e in errs]
    assert keys == [
        "extra",
        "milter.bogus",
        "milter.socket",
        "milter.socket_group",
        "milter.socket_mode",
        "milter.timeout",
        "milter.on_error",
        "log.level",
        "metrics.listen",
        "policies.nope",
        "policies.require_starttls.mode",
        "policies.require_starttls.exempt_networks[0]",
        "policies.require_starttls.exempt_networks[1]",
        "policies.require_starttls.reply",
        "policies.tls_min_version.exempt_recipients[0]",
        "policies.tls_min_version.min_version",
    ]
    assert any("10.0.0.1/8" in e and "host bits" in e for e in errs)
    assert any("2001:db8::/129" in e for e in errs)  # every bad item, not only the first
    assert any("no such group 'no-such-group-xyz'" in e for e in errs)


@pytest.mark.parametrize(
    "policy,action,reply,problem",
    [
        ("require_starttls", "reject", "450 4.7.0 later", "needs a 5xx reply"),
        ("require_starttls", "tempfail", "530 5.7.0 no", "needs a 4xx reply"),
        ("tls_min_version", "reject", "550 4.7.0 mismatch", "does not match"),
        ("tls_min_version", "reject", "550 5.7.0 100% wrong", "must not contain '%'"),
        ("require_starttls", "quarantine", "", "must be one of reject, tempfail"),
    ],
)
def test_reply_and_action_must_agree(policy: str, action: str, reply: str, problem: str) -> None:
    errs = errors_of({"policies": {policy: {"action": action, "reply": reply}}})
    assert len(errs) == 1 and errs[0].startswith(f"policies.{policy}.") and problem in errs[0]


# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF. "550 5.7.1 " is 10 of them.
_LONGEST_TEXT = 512 - len("550 5.7.1 ") - 2


@pytest.mark.parametrize(
    "policy,key,action",
    [
        ("require_starttls", "reply", "reject"),
        ("tls_min_version", "reply", "tempfail"),
        ("spf", "reject_reply", None),
        ("dmarc", "reject_reply", None),
        ("arc", "reject_reply", None),
    ],
)
def test_a_reply_longer_than_an_smtp_reply_line_is_refused(policy: str, key: str, action: str | None) -> None:
    """Hole: a reply of ~1000 characters passed check-config, then libmilter refused it at the first
    refusal (smfi_setreply: "cannot set reply"), the callback failed, and with on_error = continue
    the mail was accepted while its event said rejected. RFC 5321 caps a reply line at 512 octets."""
    code, xcode = ("450", "4.7.1") if action == "tempfail" else ("550", "5.7.1")
    base = {"action": action} if action else {}
    fits = f"{code} {xcode} " + "a" * _LONGEST_TEXT
    assert len(fits) + 2 == 512
    cfg = config.parse({"policies": {policy: {**base, key: fits}}})
    assert str(getattr(cfg.policies[policy].options, key)) == fits
    errs = errors_of({"policies": {policy: {**base, key: fits + "a"}}})
    assert len(errs) == 1 and errs[0].startswith(f"policies.{policy}.{key}: "), errs
    assert "513 octets" in errs[0] and "512" in errs[0], errs[0]
    # The review's 1000-character reply, and one with a longer enhanced code.
    errs = errors_of({"policies": {policy: {**base, key: f"{code} {xcode} " + "a" * 990}}})
    assert len(errs) == 1 and errs[0].startswith(f"policies.{policy}.{key}: ")
    errs = errors_of(
        {"policies": {policy: {**base, key: f"{code} {code[0]}.100.100 " + "a" * _LONGEST_TEXT}}}
    )
    assert len(errs) == 1 and "516 octets" in errs[0], errs


@pytest.mark.parametrize(
    "text",
    [
        "550 5.7.1 100% sure",  # libmilter would drop it (a printf format in Sendmail)
        "550 5.7.1 two\r\nlines",  # smfi_setreply refuses CR and LF
        "550 5.7.1 one\nline",
        "550 5.7.1 tab\there",
        "550 5.7.1 caf\u00e9",  # pymilter sends UTF-8; SMTP replies are ASCII
        "550 5.7.1 nul\x00",
    ],
)
def test_reply_text_libmilter_or_the_mta_would_refuse_or_mangle(text: str) -> None:
    errs = errors_of({"policies": {"require_starttls": {"reply": text}}})
    assert len(errs) == 1 and errs[0].startswith("policies.require_starttls.reply: "), errs


def test_tempfail_gets_a_4xx_default_reply() -> None:
    cfg = config.parse(
        {
            "policies": {
                "require_starttls": {"action": "tempfail"},
                "tls_min_version": {"min_version": "TLSv1.3", "action": "tempfail"},
            }
        }
    )
    assert str(cfg.policies["require_starttls"].options.reply).startswith("450 4.7.0")
    assert cfg.policies["require_starttls"].options.action is Action.TEMPFAIL
    assert str(cfg.policies["tls_min_version"].options.reply) == (
        "450 4.7.0 TLS version too old: use TLSv1.3 or newer"
    )


def test_exemptions_parse() -> None:
    cfg = config.parse(
        {
            "policies": {
                "require_starttls": {
                    "exempt_networks": ["192.0.2.0/24", "2001:db8::/32"],
                    "exempt_recipients": ["Postmaster@", "abuse@example.org", "@example.net"],
                    "exempt_authenticated": False,
                }
            }
        }
    )
    ex = cfg.policies["require_starttls"].exempt
    assert ex.client_exempt(ipaddress.ip_address("192.0.2.9"))
    assert ex.client_exempt(ipaddress.ip_address("::ffff:192.0.2.9"))
    assert ex.client_exempt(ipaddress.ip_address("2001:db8:1::1"))
    assert not ex.client_exempt(ipaddress.ip_address("198.51.100.1"))
    assert not ex.client_exempt(None)
    assert ex.recipient_exempt("<POSTMASTER@any.example>")
    assert ex.recipient_exempt("abuse@example.org") and not ex.recipient_exempt("abuse@example.com")
    assert ex.recipient_exempt("anyone@example.net") and not ex.recipient_exempt("x@sub.example.net")
    assert ex.authenticated is False


@pytest.mark.parametrize(
    "text,listen", [("[::1]:9100", ("::1", 9100)), ("", None), ("0.0.0.0:1", ("0.0.0.0", 1))]
)
def test_metrics_listen(text: str, listen: tuple[str, int] | None) -> None:
    assert config.parse({"metrics": {"listen": text}}).metrics.listen == listen


def test_load_reports_toml_syntax_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[milter\nsocket = 1\n")
    with pytest.raises(config.ConfigError) as exc:
        config.load(str(bad))
    assert "TOML syntax error" in exc.value.errors[0]
    with pytest.raises(config.ConfigError) as exc:
        config.load(str(tmp_path / "missing.toml"))
    assert "cannot read" in exc.value.errors[0]


def test_a_pasted_snippet_that_repeats_a_table_says_to_merge(tmp_path: Path) -> None:
    """The report's TOML suggestions appended to a copy of the shipped file repeat its tables."""
    pasted = tmp_path / "pasted.toml"
    snippet = '[policies.require_starttls]\nexempt_networks = ["203.0.113.0/24"]\n'
    pasted.write_text(REFERENCE.read_text() + "\n" + snippet)
    with pytest.raises(config.ConfigError) as exc:
        config.load(str(pasted))
    assert (
        "TOML syntax error" in exc.value.errors[0]
        and "merge the new keys into the table" in exc.value.errors[0]
    )
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[milter]\nname = "ok"\n# caf\xe9\n')
    with pytest.raises(config.ConfigError) as exc:
        config.load(str(latin1))
    assert "not UTF-8 (line 3)" in exc.value.errors[0]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailpolicy", *args], capture_output=True, text=True, timeout=60
    )


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    ok = run_cli("check-config", str(REFERENCE))
    assert ok.returncode == 0 and "require_starttls: monitor" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[policies.require_starttls]\nmode = "enforced"\n[milter]\nsocket_mode = "0644"\n')
    r = run_cli("check-config", str(bad))
    assert r.returncode == 1
    assert "milter.socket_mode: must give the group read and write permission" in r.stderr
    assert "policies.require_starttls.mode: must be one of off, monitor, enforce (got 'enforced')" in r.stderr
    assert "2 error(s)" in r.stderr


def test_run_refuses_a_bad_config_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[policies.tls_min_version]\nmin_version = "TLSv1.9x"\n')
    r = run_cli("run", "--config", str(bad))
    assert r.returncode == 1
    assert "policies.tls_min_version.min_version" in r.stderr and "refusing to start" in r.stderr


def test_check_config_fails_on_what_run_would_fail_on(tmp_path: Path) -> None:
    """Hole 12: a log file in a missing directory passed check-config, then `run` died with a
    traceback; a newline in milter.hostname became the authserv-id."""
    missing, nope = tmp_path / "missing", tmp_path / "nope"
    cases = {
        f'[log]\nfile = "{missing}/events.log"\n': f"log.file: directory {missing} does not exist",
        f'[log]\nfile = "{tmp_path}"\n': f"log.file: {tmp_path} is a directory",
        '[milter]\nhostname = "mx.example.org\\nX-Injected: yes"\n': "milter.hostname: must be a host name",
        '[milter]\nhostname = "mx..example.org"\n': "milter.hostname: must be a host name",
        f'[milter]\nsocket = "unix:{nope}/m.sock"\n': f"milter.socket: directory {nope} does not exist",
        "[auth]\ndkim_min_key_bits = 4096\ndkim_max_key_bits = 2048\n": "auth.dkim_min_key_bits: must not be",
    }
    for i, (body, expected) in enumerate(cases.items()):
        path = tmp_path / f"c{i}.toml"
        path.write_text(f'[metrics]\nlisten = ""\n{body}')
        checked = run_cli("check-config", str(path))
        assert checked.returncode == 1 and expected in checked.stderr, (body, checked.stderr)
        started = run_cli("run", "--config", str(path))
        assert started.returncode == 1 and expected in started.stderr, (body, started.stderr)
        assert "Traceback" not in started.stderr


def test_check_config_notes_a_runtime_socket_directory(tmp_path: Path) -> None:
    """/run/mailpolicy is made by systemd (RuntimeDirectory=) when the service starts: check-config
    run beforehand says so instead of failing; run itself refuses without it."""
    path = tmp_path / "c.toml"
    path.write_text('[milter]\nsocket = "unix:/run/mailpolicy-test-absent/m.sock"\n[metrics]\nlisten = ""\n')
    checked = run_cli("check-config", str(path))
    assert checked.returncode == 0 and "note:" in checked.stderr and "RuntimeDirectory" in checked.stderr


def test_version_flag() -> None:
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("mailpolicy ")


def test_more_problems_check_config_names(tmp_path: Path) -> None:
    cases = {
        '[dns]\nnameservers = ["::1:53"]\n': "dns.nameservers[0]: '::1:53' is ambiguous: write '[::1]:53'",
        '[policies.require_starttls]\nreply = "530 Must use TLS"\n': (
            "policies.require_starttls.reply: '530 Must use TLS' has no enhanced status code"
        ),
        '[log]\nfile_mode = "0666"\n': "log.file_mode: must not let everybody write",
        '[milter]\nsocket_mode = "0662"\n': "milter.socket_mode: must not let everybody connect",
        '[policies.require_starttls]\nreply = "599 9.9.9 x"\n': (
            "policies.require_starttls.reply: '599 9.9.9 x': enhanced status code 9.9.9 is not valid"
        ),
    }
    for i, (body, expected) in enumerate(cases.items()):
        path = tmp_path / f"c{i}.toml"
        path.write_text(f'[metrics]\nlisten = ""\n{body}')
        checked = run_cli("check-config", str(path))
        assert checked.returncode == 1 and expected in checked.stderr, (body, checked.stderr)


def test_wildcard_listeners_are_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[milter]\nsocket = "inet:{free_port()}"\n[metrics]\nlisten = "0.0.0.0:{free_port()}"\n'
        '[dns]\nnameservers = ["127.0.0.1"]\n'
    )
    checked = run_cli("check-config", str(path))
    assert checked.returncode == 0, checked.stderr
    assert "warning:" in checked.stderr and "metrics.listen: 0.0.0.0:" in checked.stderr
    assert (
        "milter.socket: inet:" in checked.stderr
        and "accepts milter connections on every address" in checked.stderr
    )


def test_a_metrics_host_that_does_not_resolve_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from mailpolicy.server import preflight

    def no_such_host(*a: object, **kw: object) -> object:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)  # never the system resolver in tests
    listen = {"listen": "metrics.example.net:9469"}
    cfg = config.parse({"metrics": listen, "dns": {"nameservers": ["127.0.0.1"]}})
    problems, _ = preflight(cfg, starting=False)
    assert problems == [
        "metrics.listen: host 'metrics.example.net' does not resolve ([Errno -2] Name or service not known)"
    ]
