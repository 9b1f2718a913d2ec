"""Unit tests for mailpolicy.auth.header: building our A-R header and finding forged ones."""

from __future__ import annotations

import re

import authres
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailpolicy.auth import AuthResults, DkimResult, DmarcResult, SpfResult
from mailpolicy.auth.header import authserv_id_of, build, fold, forged_indexes
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
