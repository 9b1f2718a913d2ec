from __future__ import annotations

import pytest

from mailpolicy import config
from mailpolicy.checks import tls_version
from mailpolicy.model import Action
from mailpolicy.tls import TlsInfo
from support.txn import new_txn


def run(
    version: str | None, floor: str = "TLSv1.2", action: str = "reject"
) -> tuple[str, Action, str | None]:
    cfg = config.parse({"policies": {"tls_min_version": {"min_version": floor, "action": action}}})
    txn = new_txn()
    txn.tls = TlsInfo(version, "X", 128, None, None) if version else None
    v = tls_version.run(txn, cfg.policies["tls_min_version"])
    return v.result, v.action, str(v.reply) if v.reply else None


@pytest.mark.parametrize(
    "version,floor,result",
    [
        ("TLSv1.3", "TLSv1.2", "pass"),
        ("TLSv1.2", "TLSv1.2", "pass"),
        ("TLSv1.1", "TLSv1.2", "fail"),
        ("TLSv1", "TLSv1.2", "fail"),
        ("SSLv3", "TLSv1", "fail"),
        ("TLSv1.2", "TLSv1.3", "fail"),
        ("TLSv1.4", "TLSv1.3", "pass"),
        ("unknown", "TLSv1.2", "permerror"),
        (None, "TLSv1.2", "none"),
    ],
)
def test_floor(version: str | None, floor: str, result: str) -> None:
    got, action, _ = run(version, floor)
    assert got == result
    assert action is (Action.REJECT if result == "fail" else Action.CONTINUE)


def test_reply_follows_action() -> None:
    assert run("TLSv1", action="tempfail")[2] == "450 4.7.0 TLS version too old: use TLSv1.2 or newer"
    assert run("TLSv1")[2] == "550 5.7.0 TLS version too old: use TLSv1.2 or newer"


@pytest.mark.parametrize("bad", ["SSLv3", "TLSv2", "1.2", "", "unknown"])
def test_min_version_must_be_tls(bad: str) -> None:
    with pytest.raises(config.ConfigError) as exc:
        config.parse({"policies": {"tls_min_version": {"min_version": bad}}})
    assert exc.value.errors[0].startswith("policies.tls_min_version.min_version: must be a TLS version")
