"""Look-alike senders through the whole report (`mailpolicy report --our-domain ...`): a log with
known look-alikes among ordinary senders gives exactly those, in text, JSON and HTML."""

from __future__ import annotations

import json
from pathlib import Path

from mailpolicy import report
from support import report_events as r

LOOKALIKES = {
    "paypa1.com": 3,  # 1 for l
    "xn--pypal-4ve.com": 2,  # a Cyrillic a (U+0430) in paypal.com
    "paypal.com.secure-login.example": 1,  # extra labels
}
NOT_FLAGGED = {"bank-example.com": 1}  # "bank" is a short name: only swaps and doubled letters count
ORDINARY = ["gmail.com", "github.com", "python.org", "debian.org", "example.net", "news.paypal.com"]


def log(tmp_path: Path) -> Path:
    events = []
    i = 0
    for domain, count in {**LOOKALIKES, **NOT_FLAGGED}.items():
        for _ in range(count):
            i += 1
            events.append(
                r.txn(
                    seconds=i,
                    header_from=domain,
                    dmarc="none",
                    ip=f"198.51.100.{i}",
                    name=None,
                    conn_id=f"c{i}",
                )
            )
    for domain in ORDINARY:
        i += 1
        events.append(r.txn(seconds=i, header_from=domain, dmarc="pass", authenticated=True, conn_id=f"c{i}"))
    path = tmp_path / "events.log"
    path.write_bytes(r.lines(events))
    return path


def test_lookalikes_with_known_answers(tmp_path: Path) -> None:
    path = log(tmp_path)
    out = tmp_path / "r.json"
    argv = ["--our-domain", "paypal.com", "--our-domain", "bank.example", "--format", "json", "-o", str(out)]
    assert report.main([*argv, str(path)]) == 0
    doc = json.loads(out.read_text())["lookalikes"]
    found = {d["domain"]: d["transactions"] for d in doc["domains"]}
    assert found == LOOKALIKES  # and nothing else: no ordinary sender, not our own subdomain
    techniques = {d["domain"]: d["techniques"] for d in doc["domains"]}
    assert techniques["xn--pypal-4ve.com"] == ["confusable", "punycode"]
    assert techniques["paypal.com.secure-login.example"] == ["extra-labels"]
    for fmt in ("text", "html"):
        page = tmp_path / f"r.{fmt}"
        assert report.main(["--our-domain", "paypal.com", "--format", fmt, "-o", str(page), str(path)]) == 0
        body = page.read_text()
        assert "paypa1.com" in body and "xn--pypal-4ve.com" in body
        assert "gmail.com" not in body.split("ook-alike", 1)[1].split("Suggest", 1)[0]
