"""A pymilter milter that does nothing: the floor any pymilter milter pays. Reference for
bench/throughput.py --reference. Usage: python bench/null_milter.py SOCKET_PATH"""

from __future__ import annotations

import os
import sys

import Milter


class Null(Milter.Base):  # type: ignore[misc]
    pass


def main() -> None:
    path = sys.argv[1]
    Milter.factory = Null
    old = os.umask(0o117)
    Milter.runmilter("null", f"unix:{path}", 300)
    os.umask(old)


if __name__ == "__main__":
    main()
