from __future__ import annotations

from mailpolicy import config
from mailpolicy.checks import starttls
from mailpolicy.model import Action
from mailpolicy.tls import TlsInfo
from support.txn import new_txn


def test_plaintext_fails_with_configured_reply() -> None:
    cfg = config.parse({"policies": {"require_starttls": {"reply": "554 5.7.0 TLS required here"}}})
    v = starttls.run(new_txn(), cfg.policies["require_starttls"])
    assert v.result == "fail" and v.action is Action.REJECT and str(v.reply) == "554 5.7.0 TLS required here"


def test_any_tls_passes_even_unknown_version() -> None:
    cfg = config.parse({}).policies["require_starttls"]
    txn = new_txn()
    txn.tls = TlsInfo("unknown", None, None, None, None)
    assert starttls.run(txn, cfg).result == "pass"
