from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.stack import Stack, running


def _stack(config: dict[str, object]) -> Iterator[Stack]:
    with running(config) as stack:
        yield stack


@pytest.fixture(scope="module")
def monitor_stack() -> Iterator[Stack]:
    """Default policies (monitor) with one exemption of each kind configured."""
    yield from _stack(
        {
            "policies": {
                "require_starttls": {
                    "mode": "monitor",
                    "exempt_networks": ["198.51.100.0/24", "2001:db8:1::/48"],
                    "exempt_authenticated": True,
                },
                "tls_min_version": {"mode": "monitor", "min_version": "TLSv1.3"},
            }
        }
    )


@pytest.fixture(scope="module")
def enforce_stack() -> Iterator[Stack]:
    yield from _stack(
        {
            "policies": {
                "require_starttls": {
                    "mode": "enforce",
                    "exempt_networks": ["198.51.100.0/24"],
                    "exempt_authenticated": True,
                },
                "tls_min_version": {"mode": "enforce", "min_version": "TLSv1.3"},
            }
        }
    )


@pytest.fixture(scope="module")
def enforce_rcpt_stack() -> Iterator[Stack]:
    """Enforce with a recipient exemption: refusals move from MAIL FROM to each RCPT."""
    yield from _stack(
        {
            "policies": {
                "require_starttls": {"mode": "enforce", "exempt_recipients": ["postmaster@"]},
                "tls_min_version": {"mode": "off"},
            }
        }
    )


@pytest.fixture(scope="module")
def tempfail_stack() -> Iterator[Stack]:
    """require_starttls enforced with action tempfail and a custom reply."""
    yield from _stack(
        {
            "policies": {
                "require_starttls": {
                    "mode": "enforce",
                    "action": "tempfail",
                    "reply": "451 4.7.0 Try again with STARTTLS",
                },
                "tls_min_version": {"mode": "off"},
            }
        }
    )
