"""Config: [dns], [auth], [policies.spf], [policies.dmarc] defaults and errors (with key paths)."""

from __future__ import annotations

import pathlib

import pytest

from mailpolicy import config
from mailpolicy.checks import CHECKS
from mailpolicy.model import Action, Mode, Reply
from mailpolicy.session import Setup

REFERENCE = pathlib.Path(__file__).parents[2] / "config" / "mailpolicy.toml"


def errors(data: dict[str, object]) -> list[str]:
    with pytest.raises(config.ConfigError) as exc:
        config.parse(data)
    return exc.value.errors


def test_defaults() -> None:
    c = config.parse({"milter": {"hostname": "mx.example.org"}})
    assert c.dns == config.DnsConfig((), 5.0, 10000)
    assert c.auth == config.AuthConfig(True, "mx.example.org", 20.0, 5, 1024, 4096, 25 * 1024 * 1024)
    spf = c.policies["spf"]
    assert spf.mode is Mode.MONITOR
    assert spf.options.fail is Action.REJECT
    assert all(
        getattr(spf.options, k) is Action.CONTINUE
        for k in ("softfail", "neutral", "none", "permerror", "temperror")
    )
    assert spf.options.reject_reply == Reply.parse("550 5.7.23 SPF validation failed")
    assert spf.options.tempfail_reply == Reply.parse("451 4.7.24 SPF validation error, try again later")
    d = c.policies["dmarc"].options
    assert (d.max_action, d.quarantine, d.temperror_action) == (
        Action.REJECT,
        "header",
        Action.CONTINUE,
    )
    assert d.quarantine_header == ("X-Mailpolicy-Quarantine", "DMARC policy quarantine")
    assert str(d.reject_reply).startswith("550 5.7.1 ")
    assert str(d.tempfail_reply).startswith("451 4.7.5 ")
    assert Setup.from_config(c).auth_active


def test_values() -> None:
    c = config.parse(
        {
            "dns": {
                "nameservers": ["127.0.0.1:5353", "[::1]:53", "192.0.2.1"],
                "timeout": 2,
                "cache_size": 0,
            },
            "auth": {"enabled": False, "authserv_id": "mx.example.org", "dkim_max_signatures": 3},
            "policies": {"dmarc": {"mode": "off"}, "spf": {"mode": "off"}},
        }
    )
    assert c.dns.nameservers == (("127.0.0.1", 5353), ("::1", 53), ("192.0.2.1", 53))
    assert c.dns.timeout == 2.0 and isinstance(c.dns.timeout, float)
    assert c.auth.authserv_id == "mx.example.org" and c.auth.dkim_max_signatures == 3
    assert not Setup.from_config(c).auth_active  # auth disabled and no spf/dmarc policy active
    c2 = config.parse({"auth": {"enabled": False}, "policies": {"dmarc": {"mode": "monitor"}}})
    assert Setup.from_config(c2).auth_active


def test_all_errors_with_key_paths() -> None:
    errs = errors(
        {
            "dns": {"nameservers": ["ns.example.org", 5], "timeout": 0, "cache_size": -1, "retries": 2},
            "auth": {
                "enabled": "yes",
                "authserv_id": "bad id",
                "dkim_max_signatures": 0,
                "max_message_bytes": 10,
                "spf_timeout": True,
            },
            "policies": {
                "spf": {"fail": "quarantine", "softfail": "reject", "temperror": "tempfail"},
                "dmarc": {"max_action": "tempfail", "quarantine": "drop", "quarantine_header": "no colon"},
            },
        }
    )
    joined = "\n".join(errs)
    for path in (
        "dns.nameservers[0]:",
        "dns.nameservers[1]:",
        "dns.timeout:",
        "dns.cache_size:",
        "dns.retries: unknown key",
        "auth.enabled:",
        "auth.authserv_id:",
        "auth.dkim_max_signatures:",
        "auth.max_message_bytes:",
        "auth.spf_timeout:",
        "policies.spf.fail:",
        "policies.dmarc.max_action:",
        "policies.dmarc.quarantine:",
        "policies.dmarc.quarantine_header:",
    ):
        assert path in joined, path
    assert "policies.spf.softfail" not in joined and "policies.spf.temperror" not in joined
    assert len(errs) == 14


def test_reply_classes_are_checked() -> None:
    errs = errors(
        {
            "policies": {
                "spf": {"reject_reply": "451 4.7.24 nope", "tempfail_reply": "550 5.7.23 nope"},
                "dmarc": {"reject_reply": "450 4.7.1 x", "tempfail_reply": "554 5.7.1 x"},
            }
        }
    )
    assert sorted(errs) == [
        "policies.dmarc.reject_reply: must be a 5xx reply (got 450)",
        "policies.dmarc.tempfail_reply: must be a 4xx reply (got 554)",
        "policies.spf.reject_reply: must be a 5xx reply (got 451)",
        "policies.spf.tempfail_reply: must be a 4xx reply (got 550)",
    ]


def test_reference_config_is_valid_and_documents_every_key() -> None:
    config.load(str(REFERENCE))
    text = REFERENCE.read_text()
    for section, keys in (("dns", config.DNS_KEYS), ("auth", config.AUTH_KEYS)):
        assert f"[{section}]" in text
        for key in keys:
            assert f"\n{key} = " in text, f"{section}.{key}"
    for name in ("spf", "dmarc"):
        assert f"[policies.{name}]" in text
        for key in CHECKS[name].options:
            assert f"\n{key} = " in text, f"policies.{name}.{key}"
