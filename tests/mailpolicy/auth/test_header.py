"""Unit tests for mailpolicy.auth.header: building our A-R header and finding forged ones."""

from __future__ import annotations

import re

import authres
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailpolicy.auth import AuthResults, DkimResult, DmarcResult, SpfResult
from mailpolicy.auth.header import authserv_id_of, build, claims, domain_of, fold, forged_indexes, resinfos
from support.authres_strict import parse_strict


def test_build_full_header() -> None:
    res = AuthResults(
        spf=SpfResult("softfail", "mailfrom", "example.org", "b@example.org"),
        dkim=[
            DkimResult("pass", "example.org", "s1", "rsa-sha256", 2048, "AbCdEfGh"),
            DkimResult(
                "temperror", "example.net", "s2", "ed25519-sha256", None, "12345678", "key lookup timeout"
            ),
        ],
        dmarc=DmarcResult("fail", "example.org", "example.org", "reject", "reject"),
    )
    value = build("mx.example.com", res)
    assert value == (
        "mx.example.com; spf=softfail smtp.mailfrom=b@example.org; "
        "dkim=pass (2048-bit key) header.d=example.org header.b=AbCdEfGh header.s=s1 header.a=rsa-sha256; "
        'dkim=temperror reason="key lookup timeout" header.d=example.net header.b=12345678 header.s=s2 '
        "header.a=ed25519-sha256; dmarc=fail header.from=example.org policy.dmarc=reject"
    )
    parsed = authres.AuthenticationResultsHeader.parse_value(value)  # it is valid RFC 8601
    assert [r.method for r in parsed.results] == ["spf", "dkim", "dkim", "dmarc"]
    assert authserv_id_of(value) == "mx.example.com"


def test_build_helo_scope_and_empty() -> None:
    res = AuthResults(spf=SpfResult("pass", "helo", "mail.example.org", "mail.example.org"))
    assert build("mx", res) == "mx; spf=pass smtp.helo=mail.example.org"
    assert build("mx", AuthResults()) == "mx; none"
    dm = AuthResults(dmarc=DmarcResult("none", "example.org"))
    assert build("mx", dm) == "mx; dmarc=none header.from=example.org"


@pytest.mark.parametrize(
    ("identity", "rendered"),
    [
        ('a b;c"d@example.org', r'"a b;c\"d@example.org"'),
        ("a@x,b@y", '"a@x,b@y"'),
        ("foo@[192.0.2.1]", '"foo@[192.0.2.1]"'),
        ('"a b"@example.org', r'"\"a b\"@example.org"'),
        ("@example.org", '"@example.org"'),
        ("caf\u00e9@example.org", "caf?@example.org"),
        ("o'neil+tag!x@example.org", "o'neil+tag!x@example.org"),
    ],
)
def test_values_that_are_not_tokens_are_quoted_never_dropped(identity: str, rendered: str) -> None:
    """Hole: values like a@x,b@y or foo@[192.0.2.1] produced headers a strict parser rejects, and a
    MAIL FROM with a space was silently altered."""
    value = build("mx", AuthResults(spf=SpfResult("pass", "mailfrom", "x", identity)))
    assert value == f"mx; spf=pass smtp.mailfrom={rendered}"
    [res] = parse_strict(value).results
    [prop] = res.properties
    assert unquote(prop.value) == identity.replace("\u00e9", "?")


def unquote(text: str) -> str:
    """authres keeps the quoted-pairs of a quoted-string as they are written."""
    return re.sub(r"\\(.)", r"\1", text)


@pytest.mark.parametrize("tag", ["\x01", "", " ", ";", '"', "\\", "a b", "\udcff"])
def test_dkim_tags_of_any_content_give_a_valid_header(tag: str) -> None:
    """Hole: s= or a= made only of characters the builder strips (s=\x01) crashed it: the message
    got no Authentication-Results at all."""
    d = DkimResult("permerror", tag, tag, tag, None, tag, reason=tag)
    value = build("mx.example", AuthResults(dkim=[d]))
    parsed = parse_strict(value)
    assert [r.method for r in parsed.results] == ["dkim"]
    if tag and tag.isprintable() and tag != " ":  # one quoted value shown, the others named
        assert value.count("not shown: not a plain value") == 3 or tag.isalnum()


@pytest.mark.parametrize(
    ("value", "claimed"),
    [
        ("mx.example.com; spf=pass", "mx.example.com"),
        (" MX.Example.COM ; dkim=pass", "mx.example.com"),
        ("(comment) mx.example.com.; none", "mx.example.com"),
        ("\n\tmx.example.com;\n\tdkim=pass", "mx.example.com"),
        ("mx.example.com 1; spf=pass", "mx.example.com"),
        ("other.example; spf=pass", "other.example"),
        ('"mx.example.com"; none', "mx.example.com"),
        ('"mx\\.example.com"; none', "mx.example.com"),
        ("(a (b) c) mx.example.com; dkim=pass", "mx.example.com"),
        ("(a (b (c)) \\) d) mx.example.com; dkim=pass", "mx.example.com"),
        ("((x))(y)\r\n (z) mx.example.com; dkim=pass", "mx.example.com"),
        ("mx.example.com/extra; dkim=pass", "mx.example.com"),
        ("mx.example.com(c); dkim=pass", "mx.example.com"),
        ("", None),
        ("(unterminated mx.example.com; dkim=pass", None),
    ],
)
def test_authserv_id_of(value: str, claimed: str | None) -> None:
    assert authserv_id_of(value) == claimed


def test_forged_indexes_count_only_ar_fields() -> None:
    headers = [
        ("Received", "from x"),
        ("Authentication-Results", " mx.example.com; dmarc=pass"),
        ("authentication-results", " mx.example.org; spf=pass"),
        ("From", "a@example.org"),
        ("AUTHENTICATION-RESULTS", "(x)\n\tMX.EXAMPLE.COM;\n\tdkim=pass"),
        ("X-Authentication-Results", "mx.example.com; spf=pass"),
    ]
    assert forged_indexes(headers, "mx.example.com") == [1, 3]
    assert forged_indexes(headers, "MX.example.org.") == [2]
    assert forged_indexes(headers, "elsewhere.example") == []


def test_reasons_are_quoted_and_long_headers_folded() -> None:
    res = AuthResults(
        spf=SpfResult("pass", "mailfrom", "x", "o'neil+tag!x@example.org"),
        dkim=[DkimResult("permerror", "example.org", "s", "rsa-sha256", reason='bad "key"; \\x')],
    )
    value = build("mx", res)
    assert "smtp.mailfrom=o'neil+tag!x@example.org" in value
    assert 'reason="bad \\"key\\"; \\\\x"' in value
    assert unquote(parse_strict(value).results[1].reason) == 'bad "key"; \\x'
    assert fold(value) == value  # short: one line
    long = value + "; " + "; ".join(["dkim=pass header.d=example.org"] * 8)
    lines = fold(long).split("\n\t")
    assert len(lines) == 11 and all(line.endswith(";") for line in lines[:-1])
    assert fold(long).replace(";\n\t", "; ") == long


def _fold_reference(value: str, width: int) -> str:
    """The rule, one character at a time: a break after each "; " outside a quoted-string (a
    backslash escapes the next character inside one; one left open runs to the end)."""
    if len(value) <= width:
        return value
    out: list[str] = []
    in_quote = escaped = False
    for i, c in enumerate(value):
        if escaped:
            escaped = False
        elif c == "\\" and in_quote:
            escaped = True
        elif c == '"':
            in_quote = not in_quote
        elif c == " " and not in_quote and i > 0 and value[i - 1] == ";":
            out.append("\n\t")
            continue
        out.append(c)
    return "".join(out)


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(["a", " ", ";", '"', "\\", "; ", "x=y"]), max_size=60).map("".join))
def test_fold_follows_the_rule(value: str) -> None:
    assert fold(value, 10) == _fold_reference(value, 10)


def test_fold_never_breaks_inside_a_quoted_value() -> None:
    long = "mx; " + "; ".join(f'dkim=permerror reason="a; b; {i}" header.d=example.org' for i in range(6))
    folded = fold(long)
    assert folded.replace(";\n\t", "; ") == long
    assert len(parse_strict(folded).results) == 6
    assert all('"' not in line or line.count('"') % 2 == 0 for line in folded.split("\n\t"))


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=60),
    st.lists(st.tuples(st.text(max_size=20), st.text(max_size=20), st.text(max_size=30)), max_size=6),
    st.one_of(st.none(), st.text(max_size=30)),
)
def test_any_values_give_one_strictly_valid_header(
    ident: str, sigs: list[tuple[str, str, str]], dom: str | None
) -> None:
    """Property: whatever the identities and tags hold, the header parses strictly and carries
    every result."""
    res = AuthResults(
        spf=SpfResult("pass", "mailfrom", None, ident),
        dkim=[DkimResult("fail", d, s, "rsa-sha256", 2048, "abc", reason=r) for d, s, r in sigs],
        dmarc=DmarcResult("fail", dom, policy="reject"),
    )
    value = fold(build("mx.example.org", res))
    parsed = parse_strict(value)
    assert parsed.authserv_id == "mx.example.org"
    assert [r.method for r in parsed.results] == ["spf"] + ["dkim"] * len(sigs) + ["dmarc"]


# ---- resinfo against its first, straightforward version ------------------------------------


def _reference_resinfo(
    method: str, result: str, comment: str | None, reason: str | None, props: list[tuple[str, str]]
) -> str:
    """resinfo as first written (before its values were remembered), kept as the reference."""
    from mailpolicy.auth.header import _WORD, quoted, token_or_quoted

    def printable(text: str, limit: int = 254) -> str:
        return re.sub(r"[^\x20-\x7e]", "?", text)[:limit]

    def pvalue(text: str) -> str:
        text = printable(text)
        if re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]+", text) and not text.startswith("@"):
            return text
        return quoted(text)

    assert _WORD.fullmatch(method) and _WORD.fullmatch(result)
    out = f"{method}={result}"
    notes = [comment] if comment else []
    plain: list[tuple[str, str]] = []
    other: list[tuple[str, str]] = []
    for name, value in props:
        if value:
            written = pvalue(value)
            (plain if written == printable(value) else other).append((name, written))
    notes += [f"{n} not shown: not a plain value" for n, _ in other[1:]]
    if notes:
        text = "; ".join(printable(n) for n in notes)
        out += f" ({text.replace('(', '[').replace(')', ']').replace(chr(92), '/')})"
    if reason:
        out += f" reason={token_or_quoted(reason)}"
    for name, written in plain + other[:1]:
        out += f" {name}={written}"
    return out


_VALUES = st.one_of(
    st.text(max_size=30),
    st.text(alphabet='ab@.-_"\\ ;()=\u00e9\x7f\t', max_size=12),
    st.sampled_from(["example.org", "@x", "a@b", "s1", "rsa-sha256", "", "x" * 300, "\u00e9" * 260]),
)


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from(["spf", "dkim", "arc", "dmarc"]),
    st.sampled_from(["pass", "fail", "none", "temperror"]),
    st.one_of(st.none(), _VALUES),
    st.one_of(st.none(), _VALUES),
    st.lists(st.tuples(st.sampled_from(["header.d", "header.b", "smtp.mailfrom"]), _VALUES), max_size=5),
)
def test_resinfo_equals_its_reference(
    method: str, result: str, comment: str | None, reason: str | None, props: list[tuple[str, str]]
) -> None:
    """Property: the same clause as the reference, the first time a value is seen and the next
    (when it is remembered)."""
    from mailpolicy.auth.header import pvalue, resinfo

    expected = _reference_resinfo(method, result, comment, reason, props)
    assert resinfo(method, result, comment, reason, props) == expected
    assert resinfo(method, result, comment, reason, props) == expected
    for _name, value in props:
        if value:
            assert pvalue(value) == pvalue(value) == _reference_pvalue(value)


def _reference_pvalue(text: str) -> str:
    return _reference_resinfo("x", "y", None, None, [("p", text)]).partition(" p=")[2]


def test_remembered_values_are_bounded() -> None:
    from mailpolicy.auth import header

    for i in range(3 * header._RENDERED_MAX):
        header.pvalue(f"v{i}.example")
    header.pvalue("x" * 1000)
    assert len(header._RENDERED) <= header._RENDERED_MAX
    assert all(len(v) <= header.MAX_VALUE for v in header._RENDERED)


def test_method_and_result_words_are_still_checked() -> None:
    from mailpolicy.auth.header import resinfo

    assert resinfo("spf", "pass", None, None, []) == "spf=pass"
    with pytest.raises(AssertionError):
        resinfo("spf", "pass x", None, None, [])
    with pytest.raises(AssertionError):
        resinfo("a b", "pass", None, None, [])


# ---- fields claiming our authserv-id: the liberal reading ----------------------------------------

OURS = "mx.test.example"

# Each one a reader after us takes as ours (SpamAssassin's AuthRes plugin, `:\s*` then the token
# with Perl's \s; a mail client; Python's email with policy.default; a Shift_JIS/ISO-2022-JP reader;
# a comment stripper with `\([^)]*\)`), which the strict reading did not remove.
FORGED_AS_OURS: list[bytes] = [
    b"\x0bmx.test.example; dkim=pass header.d=bank.example; dmarc=pass header.from=bank.example",
    b"\x0cmx.test.example; dmarc=pass header.from=bank.example",
    b" \x0b\x0c\x1c\x1d\x1e\x1fmx.test.example; dmarc=pass",
    b"\x00mx.test.example; dmarc=pass",
    b"\x7fmx.test.example; dmarc=pass",
    "\x85mx.test.example; dmarc=pass".encode(),  # NEL, as UTF-8
    b"\x85mx.test.example; dmarc=pass",  # NEL in Latin-1: not UTF-8 at all
    b"\xa0mx.test.example; dmarc=pass",  # NBSP in Latin-1
    b"\xffmx.test.example; dmarc=pass",  # a byte that is never UTF-8: dropped by many readers
    "\u00a0mx.test.example; dmarc=pass".encode(),
    "\u2002\u2009\u200amx.test.example; dmarc=pass".encode(),
    "\u2028mx.test.example; dmarc=pass".encode(),
    "\u2029mx.test.example; dmarc=pass".encode(),
    "\u3000mx.test.example; dmarc=pass".encode(),
    "\u200b\u200c\u200dmx.test.example; dmarc=pass".encode(),
    "\u2060mx.test.example; dmarc=pass".encode(),
    "\ufeffmx.test.example; dmarc=pass".encode(),
    "\u00admx.test.example; dmarc=pass".encode(),  # soft hyphen
    "\u3164\uffa0mx.test.example; dmarc=pass".encode(),  # Hangul fillers: rendered as nothing
    "\u180emx.test.example; dmarc=pass".encode(),
    "\ufffdmx.test.example; dmarc=pass".encode(),
    " (c)\x0b(d (e))\u3000mx.test.example; dmarc=pass".encode(),
    "\uff4d\uff58.test.example; dmarc=pass".encode(),  # fullwidth letters
    b"MX.TEST.EXAMPLE; dmarc=pass",
    "mx.te\u017ft.example; dmarc=pass".encode(),  # long s
    "mx.test.example\u00e9; dmarc=pass".encode(),  # an ASCII-only token stops before the é
    "mx.test.example\u200b; dmarc=pass".encode(),
    "mx.test\u200b.example; dmarc=pass".encode(),  # a zero-width space inside: shown as ours
    "mx.test.example\uff1b dmarc=pass".encode(),  # fullwidth semicolon
    "\uff08c\uff09mx.test.example; dmarc=pass".encode(),  # fullwidth parentheses: a comment
    b'"\x0bmx.test.example "; dmarc=pass',
    b"=?utf-8?q?mx.test.example?=; dmarc=pass header.from=bank.example",
    b"=?UTF-8?B?bXgudGVzdC5leGFtcGxl?=; dmarc=pass header.from=bank.example",
    b"=?utf-8?q?mx.test?= =?utf-8?q?.example;_dmarc=3Dpass?=",
    b"=?x-unknown?q?=0Bmx.test.example?=; dmarc=pass",
    b"\x81\x40mx.test.example; dmarc=pass",  # U+3000 in Shift_JIS
    b"\xa1\x40mx.test.example; dmarc=pass",  # U+3000 in Big5
    b"\xa1\xa1mx.test.example; dmarc=pass",  # U+3000 in EUC-JP, GB 2312, EUC-KR
    b"\x1b$B!!\x1b(Bmx.test.example; dmarc=pass",  # U+3000 in ISO-2022-JP
    b"(a (b) mx.test.example; dmarc=pass",  # the first ')' closes a comment for some readers
    b"(a \\) mx.test.example; dmarc=pass",  # and a backslash quotes nothing for some
    b"(" * 17 + b"x" + b")" * 17 + b" mx.test.example; dmarc=pass",  # deeper than we follow
    b"mx.test.example..; dmarc=pass",
    b"mx.test.example,x; dmarc=pass",
    b"mx.test.example@x; dmarc=pass",
]


@pytest.mark.parametrize("value", FORGED_AS_OURS)
def test_forged_fields_any_reader_takes_as_ours_are_claimed(value: bytes) -> None:
    """Hole: a forged field with a vertical tab (or form feed, NBSP, a zero-width space, 8-bit
    bytes ...) before our authserv-id was kept: the strict reading saw no authserv-id, while
    SpamAssassin (`:\\s*` then its token) and others read it as ours."""
    assert claims(value, OURS)
    assert claims(value, "MX.Test.Example.")
    assert claims(value.decode("utf-8", "surrogateescape"), OURS)
    assert forged_indexes([("Authentication-Results", value)], OURS) == [1]  # type: ignore[list-item]


FOREIGN: list[bytes] = [
    b" other.example; dkim=pass header.d=mx.test.example",
    b"\x0bother.example; dmarc=pass",
    "\u3000other.example; dmarc=pass".encode(),
    b" mx.test.example.evil; dkim=pass",
    b" evil.mx.test.example; dkim=pass",
    b" mx.test.examples; dkim=pass",
    b" mx-test.example; dkim=pass",
    "\uff4d\uff58.test.example.evil; dmarc=pass".encode(),
    b' "mx.test.example evil"; dkim=pass',
    b' "unterminated mx.test.example; dkim=pass',
    b" (mx.test.example) other.example; dkim=pass",
    b" (a (mx.test.example) b) other.example; dkim=pass",
    b" (unterminated mx.test.example; dkim=pass",
    b" ; dkim=pass",
    b"",
    b"=?utf-8?q?other.example?=; dmarc=pass",
    b"\\mx.test.example; dmarc=pass",
]


@pytest.mark.parametrize("value", FOREIGN)
def test_fields_no_reader_takes_as_ours_are_kept(value: bytes) -> None:
    assert not claims(value, OURS)
    assert forged_indexes([("Authentication-Results", value)], OURS) == []  # type: ignore[list-item]


@pytest.mark.parametrize(
    "value",
    ["MAIL.KK.EXAMPLE;", "ma\u0131l.kk.example;", "MA\u0130L.KK.EXAMPLE;", "mail.\u212a\u212a.example;",
     "m\uff41il.kk.example;", "mail.kk.example\u0301;"],
)  # fmt: skip
def test_case_folding_covers_what_per_character_mappings_do(value: str) -> None:
    """Java's equalsIgnoreCase and .NET's OrdinalIgnoreCase take dotless i and I with a dot for i,
    the Kelvin sign for k."""
    assert claims(value.encode(), "mail.kk.example")
    assert not claims(value.encode(), "mail.kk.example.evil")


def test_the_strict_reading_is_unchanged() -> None:
    assert authserv_id_of("\x0bmx.test.example; dmarc=pass") is None
    assert authserv_id_of(" mx.test.example; dmarc=pass") == OURS


def test_a_long_value_is_read_on_its_window_and_claimed_when_unfinished() -> None:
    from mailpolicy.auth import header

    pad = " " * header.WINDOW
    assert claims(pad + "mx.test.example; dkim=pass", OURS)  # the authserv-id is beyond the window
    assert claims("\x0b" + pad + "other.example; dkim=pass", OURS)  # unreadable within it: removed
    assert claims('"' + "a" * header.WINDOW + '"; dkim=pass', OURS)
    assert claims("(" + "a" * header.WINDOW + ") other.example; dkim=pass", OURS)
    assert claims("\x0b=?utf-8?q?" + "a" * header.WINDOW + "?=; dkim=pass", OURS)
    long_tail = "; dkim=pass header.d=example.org" * 100
    assert not claims("\x0b(c) other.example" + long_tail, OURS)
    assert not claims(" other.example" + long_tail, OURS)
    assert claims("\x0b(c) mx.test.example" + long_tail, OURS)
    assert claims(" mx.test.example" + long_tail, OURS)


def test_every_separator_kind_lies_in_the_scanned_planes() -> None:
    """The classes are built from planes 0, 1 and 14 only: nothing of those kinds lies elsewhere
    (should a Unicode update add one, this fails)."""
    import unicodedata

    from mailpolicy.auth import header

    categories = header._SEPARATOR_CATEGORIES
    outside = [
        cp
        for cp in range(0x110000)
        if not any(cp in block for block in header._SCANNED)
        and (chr(cp).isspace() or unicodedata.category(chr(cp)) in categories)
    ]
    assert outside == []


_SEPARATORISH = [
    *(chr(c) for c in range(0x20)),
    "\x7f", "\x85", "\xa0", "\u1680", *(chr(c) for c in range(0x2000, 0x200B)), "\u2028", "\u2029",
    "\u202f", "\u205f", "\u3000", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad",
    "\u180e", "\u3164", "\uffa0", "\u034f", "\ufe0f", "\U000e0001", "\u2800", "\ufffd",
]  # fmt: skip
_COMMENT_TEXT = st.text(alphabet=st.sampled_from('abc xyz;:.@="\t\u00e9\u3000'), max_size=8)
_COMMENTS = st.recursive(
    _COMMENT_TEXT.map(lambda t: "(" + t.replace('"', "") + ")"),
    lambda inner: st.lists(st.one_of(inner, _COMMENT_TEXT), min_size=1, max_size=3).map(
        lambda parts: "(" + "".join(parts).replace('"', "") + ")"
    ),
    max_leaves=4,
)
_PREFIXES = st.lists(
    st.one_of(
        st.sampled_from(_SEPARATORISH),
        st.characters(categories=("Cc", "Cf", "Cs", "Zs", "Zl", "Zp")),
        _COMMENTS,
    ),
    max_size=12,
).map("".join)
_ENDINGS = st.sampled_from([";", " ;", "; ", " 1;", "(c);", "\x0b;", "\u3000;", "", " 1", "/1;", "."])


@settings(max_examples=1500, deadline=None)
@given(_PREFIXES, _ENDINGS, st.sampled_from(["", " dkim=pass header.d=bank.example", " x\xff"]))
def test_separators_and_comments_before_our_id_always_claim(prefix: str, ending: str, tail: str) -> None:
    """Property: whatever white space, control or format characters and comments come before our
    authserv-id, the field is ours (as text, as UTF-8 bytes, and in any case)."""
    value = prefix + OURS + ending + tail
    assert claims(value, OURS), value
    assert claims(value.encode("utf-8", "surrogatepass"), OURS.upper()), value


@settings(max_examples=1000, deadline=None)
@given(_PREFIXES, _ENDINGS)
def test_the_same_before_another_id_claims_nothing(prefix: str, ending: str) -> None:
    """Property: ... and they do not make somebody else's field ours."""
    assert not claims(prefix + "other.example" + ending, OURS)
    assert not claims(prefix + "mx.test.example.evil" + ending, OURS)


_VALUES = st.lists(
    st.sampled_from(
        [" ", "\t", "\r\n ", "\x0b", "(", ")", "\\", '"', ";", "=?utf-8?q?", "?=", "mx", ".", "test",
         "example", "MX.TEST.EXAMPLE", "other", "\xff", "\u00e9", "\u3000", "\u200b", "\x81@",
         "\x1b$B!!\x1b(B", "1", "/"]
    ),
    max_size=20,
).map("".join)  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(_VALUES)
def test_the_fast_path_gives_the_slow_paths_answer(value: str) -> None:
    """Property: the one-match shortcut for the usual value never changes an answer."""
    from mailpolicy.auth import header

    raw = value.encode("utf-8", "surrogateescape")
    assert header.claims(raw, OURS) is header.claims_unusual(raw, OURS)


@pytest.mark.parametrize(
    "value",
    [
        "(" * 100_000 + "mx.test.example;",
        "(" * 50_000 + ")" * 50_000 + "mx.test.example;",
        "(\\" * 50_000,
        '"' + "\\" * 100_000,
        "\x0b" * 100_000,
        "\u3000\u200b(x)" * 30_000,
        "\x1b\xff=?a?q?b?=(\\" * 20_000,
        "mx.test.exampl" + "\u00e9" * 100_000,
        "=?utf-8?q?" + "=0B" * 50_000 + "?=",
        "(a\\) (b (c)) \x1b$B!!\x1b(B\xa1=?utf-8?q?x?= \x81 other.example; dkim=pass mx.test.example",
    ],
)
def test_hostile_values_cost_little(value: str) -> None:
    """A value is read on a bounded window with linear patterns: a hostile one costs well under
    a millisecond, whatever its length (50 tries, a generous bound for slow machines)."""
    import time

    raw = value.encode("utf-8", "surrogateescape")
    claims(raw, OURS)  # the classes are built on first use
    start = time.perf_counter()
    for _ in range(50):
        claims(raw, OURS)
    assert (time.perf_counter() - start) / 50 < 0.005


# ---- the strict reading of somebody else's payload -------------------------------------------------


def test_resinfos_follow_quoted_strings_and_comments() -> None:
    text = (
        'sealer.example 1; spf=pass (x; y) smtp.mailfrom="x;dmarc=pass header.from=victim.example y"'
        '@attacker.example; dkim=pass reason="a;b" header.d=ok.example header.b=ab/c+d=; none;'
        " dmarc=fail (p=reject; (nested; ) ) header.from=victim.example"
    )
    found = resinfos(text)
    assert found is not None
    assert [(r.method, r.result) for r in found] == [("spf", "pass"), ("dkim", "pass"), ("dmarc", "fail")]
    spf, dkim, dmarc = found
    assert spf.props["smtp.mailfrom"] == (
        (True, "x;dmarc=pass header.from=victim.example y"),
        (False, "@attacker.example"),
    )
    assert domain_of(spf.props["smtp.mailfrom"]) == "attacker.example"
    assert dkim.props["reason"] == ((True, "a;b"),) and domain_of(dkim.props["header.d"]) == "ok.example"
    assert dkim.props["header.b"] == ((False, "ab/c+d="),)
    assert domain_of(dmarc.props["header.from"]) == "victim.example"


@pytest.mark.parametrize(
    ("value", "domain"),
    [
        (((False, "example.org"),), "example.org"),
        (((False, "Bounce@Example.ORG"),), "example.org"),
        (((False, "@mail.example.org"),), "mail.example.org"),
        (((True, "a b;c"), (False, "@example.org")), "example.org"),
        (((True, "a@victim.example"),), None),  # one quoted-string: text, not a structure
        (((False, "a@b@example.org"),), None),
        (((False, "a"), (True, "b"), (False, "@example.org")), None),
        (((False, "exa mple.org"),), None),
        (((False, "[192.0.2.1]"),), None),
    ],
)
def test_domain_of(value: tuple[tuple[bool, str], ...], domain: str | None) -> None:
    assert domain_of(value) == domain


@pytest.mark.parametrize(
    "text",
    [
        'x; spf=pass smtp.mailfrom="a',  # an unterminated quoted-string
        "x; dkim=pass (a (b) header.d=example.org",  # an unterminated comment
        "x; dkim=pass " + "(" * 65 + ")" * 65,  # nested deeper than 64
        "x; dkim=pass header.d=a\\b",  # a backslash outside quotes
        "x; dkim=pass) header.d=example.org",
        "x; dkim=pass header.d=example.org\x0b",  # a control character outside quotes
        "x; dkim=pass header.d=\u00a0example.org",  # an odd space
        "x; dkim = pass header.d=example.org",
        "x; dkim=pass header.d= example.org",
        "x; dkim=pass header.d=example.org header.d=other.example",
        "x; dkim=pass example.org",
        "x y; dkim=pass",
        '"x" "y"; dkim=pass',
    ],
)
def test_resinfos_refuse_what_cannot_be_read_as_a_whole(text: str) -> None:
    assert resinfos(text) is None


def test_resinfos_of_a_cut_text_drop_its_last_result() -> None:
    text = "x; dmarc=pass header.from=a.example; dkim=pass header.d=b.example"
    assert [r.method for r in resinfos(text) or []] == ["dmarc", "dkim"]
    assert [r.method for r in resinfos(text, truncated=True) or []] == ["dmarc"]
    cut = 'x; dmarc=pass header.from=a.example; spf=pass smtp.mailfrom="abc'
    assert resinfos(cut) is None
    assert [r.method for r in resinfos(cut, truncated=True) or []] == ["dmarc"]
    assert resinfos("x; dmarc=pass (a; b", truncated=True) == []
    assert resinfos("x.exam", truncated=True) == []


@settings(max_examples=500, deadline=None)
@given(
    st.text(max_size=40),
    st.lists(st.tuples(st.text(max_size=20), st.text(max_size=20), st.text(max_size=30)), max_size=4),
    st.one_of(st.none(), st.text(max_size=30)),
)
def test_every_header_we_write_is_read_back(
    ident: str, sigs: list[tuple[str, str, str]], dom: str | None
) -> None:
    """Property: the strict reading reads every header we write, clause by clause."""
    res = AuthResults(
        spf=SpfResult("pass", "mailfrom", None, ident),
        dkim=[DkimResult("fail", d, s, "rsa-sha256", 2048, "abc", reason=r) for d, s, r in sigs],
        dmarc=DmarcResult("fail", dom, policy="reject"),
    )
    value = fold(build("mx.example.org", res))
    found = resinfos(value)
    assert found is not None, value
    assert [r.method for r in found] == ["spf"] + ["dkim"] * len(sigs) + ["dmarc"]
