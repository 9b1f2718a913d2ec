"""Parse an Authentication-Results value with ``authres`` in strict mode (any syntax error in a
property raises instead of being skipped), as a strict RFC 8601 reader would."""

from __future__ import annotations

from typing import Any

import authres


def parse_strict(value: str) -> Any:
    """The parsed header; raises authres.AuthResError (e.g. SyntaxError) when not valid RFC 8601.
    ``value`` may be folded with LF + TAB as we write it."""
    text = value.replace("\r\n", "\n").replace("\n\t", " ").replace("\n ", " ")
    header = authres.core.AuthenticationResultsHeader(authres.all_features(), strict=True)
    header._parse_text = text.rstrip("\r\n\t ")
    header._parse()
    return header
