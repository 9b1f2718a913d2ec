"""mailpolicy.auth.address: the From parser's fast path for simple values gives exactly what the
full parser gives (DMARC's Author Domain depends on it)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailpolicy.auth.address import _SIMPLE_FROM, AddressError, Mailbox, _parse_full, parse_mailboxes

PIECES = [
    "a", "Bob", "x.example", "EXAMPLE.org", "-", ".", "@", "<", ">", '"', " ", "\t", "\r\n", "(", ")",
    ",", ":", ";", "\\", "[", "]", "ä", "=?UTF-8?B?w6Q=?=", "!#$%&'*+/=?^_`{|}~", "\x00", "\x7f",
]  # fmt: skip


def outcome(parse: Callable[[str], list[Mailbox]], text: str) -> list[Mailbox] | str:
    try:
        return parse(text)
    except AddressError as exc:
        return f"error: {exc}"


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=14).map("".join))
def test_fast_path_equals_the_full_parser(text: str) -> None:
    assert outcome(parse_mailboxes, text) == outcome(_parse_full, text)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["", " ", "Bob ", '"Doe, J" ', "A B\t", '"" ', "=?utf-8?q?x?= "]),
    st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,5}(\.[a-z0-9]{1,3}){0,2}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9-]{1,8}(\.[A-Za-z0-9-]{1,8}){0,3}", fullmatch=True),
    st.booleans(),
)
def test_simple_values_take_the_fast_path_and_agree(
    phrase: str, local: str, domain: str, angle: bool
) -> None:
    text = f"{phrase}<{local}@{domain}>" if angle or phrase else f"{local}@{domain}"
    assert _SIMPLE_FROM.fullmatch(text)
    assert outcome(parse_mailboxes, text) == outcome(_parse_full, text)


@pytest.mark.parametrize(
    "text",
    [
        "Bench bench@x.example",  # a display name needs angle brackets
        "a@b.example, c@d.example",
        "<a@b.example",
        "a.@b.example",
        "a@b..example",
        "a@" + "x" * 64 + ".example",  # label too long: domain_key refuses it on both paths
        "Group: a@b.example;",
        "(comment) a@b.example",
        "a@b.example.",
    ],
)
def test_known_values_agree(text: str) -> None:
    assert outcome(parse_mailboxes, text) == outcome(_parse_full, text)


def test_remembered_values_give_fresh_lists_and_stay_bounded() -> None:
    from mailpolicy.auth import address

    first = parse_mailboxes("Bench <bench@Sender.Example>")
    first.append(Mailbox("x", "y"))
    again = parse_mailboxes(b"Bench <bench@Sender.Example>")
    assert again == [Mailbox("bench", "sender.example")] == _parse_full("Bench <bench@Sender.Example>")
    for _ in range(2):  # a refusal is never remembered: it is refused each time, the same way
        assert outcome(parse_mailboxes, "a@b..example") == outcome(_parse_full, "a@b..example")
    assert "a@b..example" not in address._PARSED
    for i in range(3 * address._PARSED_MAX):
        parse_mailboxes(f"u{i}@example.org")
    long = "N" * 300 + " <a@b.example>"
    assert parse_mailboxes(long) == [Mailbox("a", "b.example")]
    assert len(address._PARSED) <= address._PARSED_MAX
    assert all(len(text) <= address._PARSED_TEXT_MAX for text in address._PARSED)


@pytest.mark.parametrize("label", [1, 62, 63, 64])
def test_domain_label_lengths(label: int) -> None:
    from mailpolicy.auth.address import domain_key

    for domain in ("x" * label, "x" * label + ".example", "a." + "x" * label):
        if label > 63:
            with pytest.raises(AddressError):
                domain_key(domain)
        else:
            assert domain_key(domain.upper() + ".") == domain
