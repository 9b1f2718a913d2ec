"""Look-alike senders (``mailpolicy.report.lookalike``): real look-alike patterns found with the
right technique (data/lookalike/lookalikes.tsv), ordinary unrelated domains and our own domains
left alone (data/lookalike/unrelated.txt), the collector on transaction events and its memory
bounds, and the JSON, text and HTML renderings (escaped)."""

from __future__ import annotations

import argparse
import json
import random
import string
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mailpolicy.report import lookalike as la
from support.report_events import txn

DATA = Path(__file__).parent / "data" / "lookalike"
PAYPAL_CYRILLIC_A = "p\u0430ypal"  # with a Cyrillic a (U+0430): xn--pypal-4ve
OURS = (
    "paypal.com",
    "example.org",
    "bank.example",
    "microsoft.com",
    "wikipedia.org",
    "cloudflare.com",
    "apple.com",
)


def _data_lines(name: str) -> list[str]:
    text = (DATA / name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _patterns() -> list[tuple[str, str, tuple[str, ...], str]]:
    rows = []
    for line in _data_lines("lookalikes.tsv"):
        domain, imitates, techniques, note = line.split("\t")
        rows.append((domain, imitates, tuple(techniques.split(",")), note))
    return rows


PATTERNS = _patterns()
UNRELATED = _data_lines("unrelated.txt")
OWN = [
    "paypal.com",
    "PayPal.COM.",
    "mail.paypal.com",
    "em.paypal.com",
    "example.org",
    "a.b.example.org",
    "bank.example",
    "x.bank.example",
    "login.microsoft.com",
    "en.wikipedia.org",
    "email.apple.com",
    "mail.cloudflare.com",
]


@pytest.fixture(scope="module")
def ours() -> la.OurDomains:
    return la.OurDomains(OURS)


# ---- matching -----------------------------------------------------------------------------------


def test_the_data_covers_every_technique() -> None:
    assert len(PATTERNS) >= 25
    assert len(UNRELATED) >= 50
    assert {t for _, _, techniques, _ in PATTERNS for t in techniques} == set(la.TECHNIQUES)
    assert {imitates for _, imitates, _, _ in PATTERNS} == set(OURS)
    assert not {d for d, *_ in PATTERNS} & set(UNRELATED)


@pytest.mark.parametrize(("domain", "imitates", "techniques", "note"), PATTERNS, ids=[p[0] for p in PATTERNS])
def test_lookalike_found(
    ours: la.OurDomains, domain: str, imitates: str, techniques: tuple[str, ...], note: str
) -> None:
    m = ours.match(domain)
    assert m is not None, f"{domain} ({note}) not flagged"
    assert (m.imitates, m.techniques) == (imitates, techniques), note
    # the events carry A-labels: the same answer for them, and both forms in the match
    name = la.parse_name(domain)
    assert name is not None
    assert ours.match(name.ascii) == m
    assert m.domain == name.ascii
    assert m.unicode == name.unicode
    assert m.domain.isascii()


@pytest.mark.parametrize("domain", UNRELATED)
def test_unrelated_domain_not_flagged(ours: la.OurDomains, domain: str) -> None:
    assert ours.judge(domain) is False


@pytest.mark.parametrize("domain", OWN)
def test_our_domains_and_their_subdomains_are_ours(ours: la.OurDomains, domain: str) -> None:
    assert ours.judge(domain) is True
    assert ours.match(domain) is None


def test_rules_by_name_length() -> None:
    """Short names: no substitution, nothing under another suffix; long names: two edits."""
    short = la.OurDomains(["bank.example"])
    assert short.match("bnak.example") is not None  # transposition
    assert short.judge("bunk.example") is False  # a substitution makes another word
    assert short.judge("bank.com") is False  # the same short word elsewhere is not an imitation
    assert short.judge("bank.example.evil.net") is not False  # our whole domain still is
    six = la.OurDomains(["paypal.com"])
    assert six.match("paypak.com") is not None  # neighbouring key
    assert six.judge("paypay.com") is False  # l -> y: neither near nor similar
    assert six.judge("paypall.net") is False  # typos under another suffix are not counted
    assert six.judge("paypalobjects.com") is False  # merely contained
    long_ = la.OurDomains(["cloudflare.com"])
    m = long_.match("clodflarre.com")
    assert m is not None and m.techniques == ("edit-2",)
    assert long_.judge("cloudfront.net") is False


def test_a_domain_of_ours_under_someone_elses_is_exempt_only() -> None:
    o = la.OurDomains(["paypal.com", "example.zendesk.com"])
    assert o.domains == ("paypal.com", "example.zendesk.com")
    assert o.judge("example.zendesk.com") is True
    assert o.judge("support.example.zendesk.com") is True
    assert o.judge("other.zendesk.com") is False  # zendesk.com is not ours
    assert o.judge("zendesk-login.com") is False  # and its look-alikes are not searched for
    m = o.match("paypal.zendesk.com")  # ours are still imitated there
    assert m is not None and (m.imitates, m.techniques) == ("paypal.com", ("extra-labels",))
    only = la.OurDomains(["example.zendesk.com"])
    assert only and only.judge("example.zendesk.com") is True and only.judge("x.com") is False


def test_best_match_is_the_most_specific(ours: la.OurDomains) -> None:
    # "example" is a label here too, but the whole of bank.example is the better match
    m = ours.match("bank.example.evil.net")
    assert m is not None and m.imitates == "bank.example"


def test_no_domains_of_ours_flags_nothing() -> None:
    none = la.OurDomains([])
    assert not none
    assert none.judge("xn--pypal-4ve.com") is False


# ---- names, skeletons, edits --------------------------------------------------------------------


def test_parse_name() -> None:
    n = la.parse_name("PayPal.COM.")
    assert n is not None and (n.ascii, n.registrable, n.suffix_labels) == ("paypal.com", "paypal.com", 1)
    n = la.parse_name("пример.рф")
    assert n is not None and n.ascii == "xn--e1afmkfd.xn--p1ai" and n.unicode == "пример.рф"
    n = la.parse_name("xn--e1afmkfd.xn--p1ai")
    assert n is not None and n.unicode == "пример.рф"
    n = la.parse_name("mail.example.co.uk")
    assert n is not None and (n.registrable, n.suffix_labels) == ("example.co.uk", 2)
    n = la.parse_name("xn--zz-invalid-.com")  # not punycode: kept as it is
    assert n is not None and n.unicode == "xn--zz-invalid-.com"
    for bad in ("", ".", "com", "a..b", "x" * 64 + ".com", "a." * 130 + "com"):
        assert la.parse_name(bad) is None, bad
    n = la.parse_name("co.uk")
    assert n is not None and n.registrable == ""  # a public suffix


def test_normalise_domain_and_the_option_type() -> None:
    assert la.normalise_domain(" Bücher.Example ") == "xn--bcher-kva.example"
    for bad in ("localhost", "co.uk", "", "a..b"):
        with pytest.raises(ValueError):
            la.normalise_domain(bad)
        with pytest.raises(argparse.ArgumentTypeError):
            la.our_domain_arg(bad)
    assert la.OurDomains(["Example.ORG", "example.org", "mail.example.org"]).domains == (
        "example.org",
        "mail.example.org",
    )


def test_ascii_skeleton_table_agrees_with_the_tr39_data() -> None:
    table = la.prototypes()
    added = {"w": "vv", "d": "cl"}  # look-alikes TR39 does not list
    for c in string.ascii_lowercase + string.digits + "-_":
        tr39 = table.get(ord(c), c).lower()
        assert la.skeleton(c) == added.get(c, tr39), c
    assert la.skeleton("paypal") == "paypal"
    assert la.skeleton("example") == "exarnple"


def test_prototypes_of_well_known_homoglyphs() -> None:
    table = la.prototypes()
    # Cyrillic a, ie, o, er; Greek omicron, alpha; the digit zero
    for char, proto in [("\u0430", "a"), ("\u0435", "e"), ("\u043e", "o"), ("\u0440", "p"), ("\u03bf", "o")]:
        assert table[ord(char)] == proto, char
    assert table[ord("\u03b1")] == "a"
    assert table[ord("0")] == "O"
    assert table[ord("1")] == "l"
    assert table[ord("m")] == "rn"
    assert la.skeleton("\u0440\u0430\u0443\u0440\u0430l") == la.skeleton("paypal")  # Cyrillic but the l
    assert la.skeleton("pay\u200bpal") == "paypal"  # a zero-width space is ignored
    # skeletons are stable: the skeleton of a skeleton is itself
    for k in list(table)[:2000]:
        sk = la.skeleton(chr(k))
        assert la.skeleton(sk) == sk, hex(k)


def test_fold() -> None:
    assert la.fold(PAYPAL_CYRILLIC_A) == "paypal"
    assert la.fold("rnicros0ft") == "microsoft"
    assert la.fold("vvikipedia") == "wikipedia"
    assert la.fold("paypàl") == "paypàl"  # an accent is a different letter, one edit


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("paypal", "paypal", 0),
        ("paypal", "paypall", 1),
        ("paypal", "pyapal", 1),
        ("paypal", "paypl", 1),
        ("paypal", "paypak", 1),
        ("cloudflare", "clodflarre", 2),
        ("cloudflare", "cluodflaer", 2),
        ("paypal", "gmail", 3),
        ("example", "sample", 2),
    ],
)
def test_osa_distance(a: str, b: str, distance: int) -> None:
    assert la.osa_distance(a, b, 2) == min(distance, 3)
    assert la.osa_distance(b, a, 2) == min(distance, 3)


@pytest.mark.parametrize(
    ("ours", "other", "kind"),
    [
        ("paypal", "pyapal", "transposition"),
        ("paypal", "paypall", "doubling"),
        ("apple", "aple", "undoubling"),
        ("paypal", "paypals", "insertion"),
        ("paypal", "paypl", "omission"),
        ("paypal", "paypak", "near-substitution"),  # neighbouring key
        ("example", "exomple", "near-substitution"),  # vowel
        ("paypal", "paypai", "near-substitution"),  # similar letter
        ("paypal", "paypàl", "near-substitution"),  # diacritic
        ("paypal", "paypay", "substitution"),
        ("paypal", "pyaapl", None),
        ("paypal", "pay", None),
    ],
)
def test_edit_kind(ours: str, other: str, kind: str | None) -> None:
    assert la.edit_kind(ours, other) == kind


def test_typo_table_matches_the_edit_rules() -> None:
    table = la.typos("paypal", 6)
    assert {"paypall", "pyapal", "paypl", "paypak", "paypai"} <= table
    assert "paypay" not in table and "paypal" not in table
    assert la.typos("bank", 4) == {"abnk", "bnak", "bakn", "bbank", "baank", "bannk", "bankk"}


# ---- collection ---------------------------------------------------------------------------------


class Ev(msgspec.Struct):
    """A transaction event as ``reader.Event`` reads it once it has ``spf`` and ``rcpt_count``."""

    ts: str = ""
    host: str = ""
    header_from_domain: str | None = None
    client_ip: str | None = None
    client_name: str | None = None
    outcome: str | None = None
    rcpt_count: int = 0
    spf: msgspec.Raw = msgspec.Raw(b"")
    dkim: msgspec.Raw = msgspec.Raw(b"")
    dmarc: msgspec.Raw = msgspec.Raw(b"")


def event(
    header_from: str | None,
    *,
    spf: str | None = "pass",
    dmarc: str | None = "fail",
    dkim: list[tuple[str, bool]] | None = None,
    rcpts: int = 1,
    **kw: Any,
) -> Ev:
    ev = txn(header_from=header_from, dmarc=dmarc, dkim=dkim or [], **kw)
    if header_from is None:
        ev["header_from_domain"] = None
    ev["spf"] = {"result": spf, "scope": "mailfrom", "domain": header_from} if spf else None
    ev["rcpt_count"] = rcpts
    return msgspec.json.decode(json.dumps(ev).encode(), type=Ev)


def test_collector_counts_each_lookalike(ours: la.OurDomains) -> None:
    c = la.Collector(OURS)
    for seconds in (10.0, 20.0):
        c.add_event(
            event("xn--pypal-4ve.com", ip="203.0.113.5", name="mx.evil.example", rcpts=3, seconds=seconds)
        )
    c.add_event(
        event(
            "xn--pypal-4ve.com",
            spf="softfail",
            dmarc="pass",
            dkim=[("fail", False), ("pass", True)],
            ip="198.51.100.7",
            name=None,
            outcome="rejected",
            seconds=5.0,
        )
    )
    c.add_event(event("paypal.com.evil.net", dkim=[("pass", False)], spf=None, dmarc=None, ip=None))
    for _ in range(5):
        c.add_event(event("gmail.com"))
    c.add_event(event("mail.paypal.com", dmarc="pass"))  # ours
    c.add_event(event(None))  # refused before the message: no From domain
    r = c.result(top=10)
    assert (r.source, r.our_domains) == ("configured", ours.domains)
    assert (r.transactions, r.without_from, r.own, r.examined) == (10, 1, 1, 4)
    assert (r.lookalike_domains, r.lookalike_transactions) == (2, 4)
    top = r.rows[0]
    assert (top.domain, top.unicode, top.imitates) == (
        "xn--pypal-4ve.com",
        f"{PAYPAL_CYRILLIC_A}.com",
        "paypal.com",
    )
    assert top.techniques == ("confusable", "punycode")
    assert (top.transactions, top.recipients) == (3, 7)
    assert top.spf == {"pass": 2, "softfail": 1}
    assert top.dkim == {"none": 2, "pass": 1}
    assert top.dmarc == {"fail": 2, "pass": 1}
    assert top.outcomes == {"accepted": 2, "rejected": 1}
    assert top.clients == 2
    assert top.top_clients == (
        la.Client("203.0.113.5", "mx.evil.example", 2),
        la.Client("198.51.100.7", "", 1),
    )
    assert (top.first, top.last) == ("2026-11-20T00:00:05.000Z", "2026-11-20T00:00:20.000Z")
    assert top.characters == ("U+0430 CYRILLIC SMALL LETTER A",)
    other = r.rows[1]
    assert other.domain == "paypal.com.evil.net"
    assert (other.spf, other.dkim, other.dmarc) == ({"unknown": 1}, {"pass-unaligned": 1}, {"unknown": 1})
    assert other.top_clients == (la.Client("unknown", "mail.example.net", 1),)
    assert c.result(top=1).rows == r.rows[:1]


def test_collector_from_decoded_values() -> None:
    c = la.Collector(["paypal.com"])
    c.add(
        "paypa1.com", spf="fail", dkim=la.dkim_outcome([]), dmarc="fail", client_ip="192.0.2.9", recipients=2
    )
    c.add("paypa1.com")
    c.add("python.org", spf="pass")
    c.add(None)
    r = c.result()
    assert (r.transactions, r.without_from, r.lookalike_transactions) == (3, 1, 2)
    row = r.rows[0]
    assert (row.spf, row.dkim, row.dmarc, row.recipients) == (
        {"fail": 1, "unknown": 1},
        {"none": 1, "unknown": 1},
        {"fail": 1, "unknown": 1},
        3,
    )


def test_bad_authentication_objects_count_as_unknown() -> None:
    c = la.Collector(["paypal.com"])
    bad = Ev(
        header_from_domain="paypa1.com",
        spf=msgspec.Raw(b'"pass"'),
        dkim=msgspec.Raw(b'{"result": 1}'),
        dmarc=msgspec.Raw(b"[1, 2]"),
        rcpt_count=1,
    )
    c.add_event(bad)
    row = c.result().rows[0]
    assert (row.spf, row.dkim, row.dmarc) == ({"unknown": 1}, {"unknown": 1}, {"unknown": 1})


@pytest.mark.parametrize(
    ("signatures", "word"),
    [
        ([], "none"),
        ([("pass", True)], "pass"),
        ([("fail", False), ("pass", True)], "pass"),
        ([("pass", False)], "pass-unaligned"),
        ([("permerror", False), ("fail", True)], "permerror"),
        ([("", False)], "unknown"),
    ],
)
def test_dkim_outcome(signatures: list[tuple[str, bool]], word: str) -> None:
    assert la.dkim_outcome(signatures) == word


def test_memory_bounds() -> None:
    c = la.Collector(["paypal.com"], max_domains=50, max_lookalikes=3, max_clients=2)
    for i in range(1000):
        c.add(f"sender{i}.example")
        assert len(c.verdicts) <= 50
    for i in range(5):
        for k in range(3):
            c.add(f"paypal-{string.ascii_lowercase[i]}.com", client_ip=f"192.0.2.{k}")
    r = c.result()
    assert (r.lookalike_domains, r.untracked_domains, r.untracked_transactions) == (5, 2, 6)
    assert r.lookalike_transactions == 15
    assert len(r.rows) == 3
    assert all(row.clients == 2 and row.other_client_transactions == 1 for row in r.rows)
    assert r.transactions == 1015
    assert r.examined >= 1005  # the cache was emptied on the way: domains may be judged again
    # client entries over all look-alikes are bounded too (by max_domains)
    c = la.Collector(["paypal.com"], max_domains=4, max_clients=3)
    for i in range(3):
        for k in range(3):
            c.add(f"paypal-{string.ascii_lowercase[i]}.com", client_ip=f"192.0.2.{k}")
    counts = [(row.clients, row.other_client_transactions) for row in c.result().rows]
    assert counts == [(3, 0), (1, 2), (0, 3)]


def test_our_domains_guessed_from_host_names() -> None:
    c = la.Collector()
    c.add_event(event("xn--exmple-4nf.org", host="mx1.example.org"))
    c.add_event(event("gmail.com", host="mx2.example.org"))
    r = c.result()
    assert (r.source, r.our_domains) == ("host names", ("example.org",))
    assert [row.domain for row in r.rows] == ["xn--exmple-4nf.org"]
    assert "guessed" in "\n".join(la.text_lines(r))
    # a host name added later counts from then on
    c.add_event(event("xn--pypal-4ve.com", host="mail.paypal.com"))
    assert c.result().our_domains == ("example.org", "paypal.com")
    assert c.result().lookalike_domains == 2


@pytest.mark.parametrize("host", ["mx1", "localhost.localdomain", "mx.internal", "192.0.2.1", ""])
def test_no_domain_from_unqualified_host_names(host: str) -> None:
    c = la.Collector()
    c.add_event(event("xn--exmple-4nf.org", host=host))
    r = c.result()
    assert (r.source, r.our_domains, r.lookalike_domains, r.transactions) == ("none", (), 0, 1)
    text = "\n".join(la.text_lines(r))
    assert "--our-domain" in text
    assert "--our-domain" in la.html_section(r)


# ---- rendering ----------------------------------------------------------------------------------


def _hostile_result() -> la.LookalikeResult:
    c = la.Collector(["paypal.com"])
    c.add_event(event("xn--pypal-4ve.com", ip="192.0.2.1", name="<script>alert(1)</script>"))
    c.add_event(event("xn--pypal-4ve.com", ip="192.0.2.2", name="evil\x1b[2J\u202ename"))
    c.add("<img src=x onerror=alert(1)>.paypal.com.evil.net")
    rtl = "xn--" + f"{PAYPAL_CYRILLIC_A}\u202e".encode("punycode").decode("ascii") + ".com"  # a bidi override
    c.add(rtl)
    return c.result()


def test_to_json() -> None:
    r = _hostile_result()
    doc = la.to_json(r)
    assert json.loads(json.dumps(doc)) == doc
    assert doc["our_domains"] == ["paypal.com"]
    assert doc["our_domains_source"] == "configured"
    assert doc["lookalike_domains"] == 3
    first = doc["domains"][0]
    assert first == {
        "domain": "xn--pypal-4ve.com",
        "unicode": f"{PAYPAL_CYRILLIC_A}.com",
        "imitates": "paypal.com",
        "techniques": ["confusable", "punycode"],
        "characters": ["U+0430 CYRILLIC SMALL LETTER A"],
        "transactions": 2,
        "recipients": 2,
        "spf": {"pass": 2},
        "dkim": {"none": 2},
        "dmarc": {"fail": 2},
        "outcomes": {"accepted": 2},
        "clients": 2,
        "other_client_transactions": 0,
        "top_clients": [
            {"ip": "192.0.2.1", "name": "<script>alert(1)</script>", "transactions": 1},
            {"ip": "192.0.2.2", "name": "evil\x1b[2J\u202ename", "transactions": 1},
        ],
        "first": "2026-11-20T00:00:00.000Z",
        "last": "2026-11-20T00:00:00.000Z",
    }
    assert set(doc) == {
        "our_domains",
        "our_domains_source",
        "transactions",
        "without_from_domain",
        "from_our_domains",
        "domains_examined",
        "lookalike_domains",
        "lookalike_transactions",
        "untracked",
        "domains",
    }


def test_text_lines() -> None:
    r = _hostile_result()
    lines = la.text_lines(r)
    text = "\n".join(lines)
    assert lines[0].startswith("== Look-alike senders")
    assert "3 look-alike domains, 4 of 4 transactions with a From domain" in text
    assert "U+202E RIGHT-TO-LEFT OVERRIDE" in text  # the hidden character is named
    assert f"{PAYPAL_CYRILLIC_A}.com (xn--pypal-4ve.com)" in text
    assert "confusable, punycode" in text
    assert "U+0430 CYRILLIC SMALL LETTER A" in text
    assert "<script>alert(1)</script> [192.0.2.1] 1" in text  # plain text: no markup to escape
    # nothing from the logs reaches the terminal as a control or bidi character
    assert "\x1b" not in text and "\u202e" not in text
    assert "evil\\u001b[2J\\u202ename" in text
    assert all(c.isprintable() for c in text.replace("\n", ""))
    # the same from the JSON document (what render_text works from)
    assert la.text_lines(la.to_json(r)) == lines


def test_text_lines_without_lookalikes() -> None:
    c = la.Collector(["paypal.com"])
    c.add("gmail.com")
    lines = la.text_lines(c.result())
    assert lines[-1] == "  none found"


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_section_is_escaped() -> None:
    r = _hostile_result()
    html = la.html_section(r)
    assert html.startswith('<section id="lookalikes">') and html.endswith("</section>")
    p = _Elements()
    p.feed(html)
    assert set(p.tags) <= {
        "section",
        "h2",
        "h3",
        "p",
        "div",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "br",
        "span",
        "mark",
    }
    assert {name for name, _ in p.attrs} <= {"id", "class", "title"}
    text = "".join(p.text)
    assert "<script>alert(1)</script> [192.0.2.1]" in text  # shown as text, not markup
    assert "<img src=x onerror=alert(1)>.paypal.com.evil.net" in text
    assert "\u202e" not in html and "\x1b" not in html
    assert '<mark title="U+0430 CYRILLIC SMALL LETTER A">\u0430</mark>' in html
    assert la.html_section(la.to_json(r)) == html


def test_html_section_without_lookalikes() -> None:
    c = la.Collector(["paypal.com"])
    assert "None found" in la.html_section(c.result())


# ---- cost ---------------------------------------------------------------------------------------


def test_cost_of_100k_distinct_from_domains() -> None:
    """Judging 100,000 distinct From domains against 3 of ours (the cost is printed: run with -s;
    no timing is asserted). Every look-alike planted among them is found."""
    rng = random.Random(1)
    syllables = ["ma", "ri", "co", "net", "pay", "ex", "am", "ple", "ban", "k", "so", "ft", "lo", "gin"]
    syllables += ["mail", "shop", "news", "tech", "data", "cloud", "in", "vo"]
    suffixes = ["com"] * 40 + ["net"] * 10 + ["org"] * 10 + ["de", "fr", "co.uk", "io", "nl", "co.jp", "info"]
    domains: set[str] = set()
    while len(domains) < 100_000:
        name = "".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))
        if rng.random() < 0.2:
            name += "-" + rng.choice(syllables)
        sub = rng.choice(["", "", "", "", "mail.", "em.", "news."])
        domains.add(f"{sub}{name}.{rng.choice(suffixes)}")
    planted = ["xn--pypal-4ve.com", "examp1e.org", "bnak.example", "paypal.com.evil.net", "paypal.co"]
    c = la.Collector(["example.org", "paypal.com", "bank.example"])
    la.prototypes()  # the confusables data, loaded once
    t0 = time.process_time()
    for d in [*domains, *planted]:
        c.add(d)
    t1 = time.process_time()
    r = c.result(top=1_000)
    t2 = time.process_time()
    found = {row.domain for row in r.rows}
    assert set(planted) <= found
    assert r.examined == len(domains | set(planted))
    print(
        f"\n100,000 distinct From domains against 3 of ours: {t1 - t0:.2f} s CPU"
        f" ({(t1 - t0) / r.examined * 1e6:.1f} us per domain), result {t2 - t1:.3f} s;"
        f" {r.lookalike_domains} look-alikes"
    )
