"""pymilter milters that do nothing: the floor any pymilter milter pays. References for
bench/throughput.py.

    python bench/null_milter.py SOCKET_PATH                   # no callbacks: the MTA skips every
                                                              # step it may skip (up to end of message)
    python bench/null_milter.py SOCKET_PATH --all-callbacks   # connect, hello, envfrom, envrcpt,
                                                              # header, eoh, body, eom, close, and
                                                              # one header added at end of message
    python bench/null_milter.py SOCKET_PATH --transport-callbacks  # the callbacks mailpolicy takes
                                                              # with transport policies only:
                                                              # connect, hello, envfrom, envrcpt,
                                                              # eom, close (no header, no body)
"""

from __future__ import annotations

import os
import sys
from typing import Any

import Milter

CONTINUE: int = Milter.CONTINUE


class Null(Milter.Base):  # type: ignore[misc]
    pass


class TransportCallbacks(Milter.Base):  # type: ignore[misc]
    """The callbacks mailpolicy takes with transport policies only."""

    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        return CONTINUE

    def hello(self, hostname: str) -> int:
        return CONTINUE

    def envfrom(self, sender: str, *params: str) -> int:
        return CONTINUE

    def envrcpt(self, rcpt: str, *params: str) -> int:
        return CONTINUE

    def eom(self) -> int:
        return CONTINUE

    def close(self) -> int:
        return CONTINUE


class AllCallbacks(TransportCallbacks):
    """Every callback, and one header added at end of message."""

    def header(self, name: str, value: str) -> int:
        return CONTINUE

    def eoh(self) -> int:
        return CONTINUE

    def body(self, chunk: bytes) -> int:
        return CONTINUE

    def eom(self) -> int:
        self.addheader("X-Bench-Floor", "all callbacks")
        return CONTINUE


def main() -> None:
    path = sys.argv[1]
    flags = sys.argv[2:]
    if "--all-callbacks" in flags:
        Milter.factory = AllCallbacks
    elif "--transport-callbacks" in flags:
        Milter.factory = TransportCallbacks
    else:
        Milter.factory = Null
    old = os.umask(0o111)  # socket mode 0666: Postfix's smtpd runs as postfix
    Milter.runmilter("null", f"unix:{path}", 300)
    os.umask(old)


if __name__ == "__main__":
    main()
