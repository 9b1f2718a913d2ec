"""Build hook for the man page; everything else about the package is in pyproject.toml.

``build`` gets one more step, ``build_man``: it renders mailpolicy(1) from the argparse definitions
(``mailpolicy.manpage``, imported from the source tree) into build/man/mailpolicy.1, and that file
is installed as the data file share/man/man1/mailpolicy.1 (``<venv>/share/man/man1`` in a venv,
``/usr/local/share/man/man1`` or ``/usr/share/man/man1`` system-wide). Wheels get it (``pip wheel .``,
``pip install .``, ``python -m build``: the sdist has no build/, its wheel renders the page again).
Editable installs (``pip install -e .``) render it but do not install it (setuptools' editable_wheel
installs no data files), and a failure to render never fails them; ``make man`` renders it too.

Rendering imports mailpolicy.cli, hence the runtime dependencies it imports at module level: they are
in [build-system] requires (all but pymilter, which needs libmilter to compile; the CLI imports it
only when a command runs -- tests/mailpolicy/test_manpage.py checks that)."""

from __future__ import annotations

import os
import sys

from setuptools import Command, setup
from setuptools.command.build import build

MAN_PAGE = os.path.join("build", "man", "mailpolicy.1")


class build_man(Command):
    description = "render the mailpolicy(1) man page from the argparse definitions"
    user_options: list[tuple[str, str | None, str]] = []  # noqa: RUF012  (setuptools API)

    def initialize_options(self) -> None:
        self.editable_mode = False  # set by setuptools' editable_wheel

    def finalize_options(self) -> None:
        pass

    def run(self) -> None:
        sys.path.insert(0, os.path.abspath("milter"))
        try:
            from mailpolicy.manpage import write

            write(MAN_PAGE)
        except Exception as exc:
            if not self.editable_mode:
                raise  # a wheel without its man page is a broken wheel
            # an editable install does not install the page anyway: never fail it for the page
            print(f"warning: build_man: {MAN_PAGE} not rendered: {exc!r}", file=sys.stderr)
        finally:
            sys.path.pop(0)

    def get_source_files(self) -> list[str]:
        return []

    def get_outputs(self) -> list[str]:
        return [MAN_PAGE]


class build_with_man(build):
    sub_commands = [*build.sub_commands, ("build_man", None)]  # noqa: RUF012  (setuptools API)


setup(
    cmdclass={"build": build_with_man, "build_man": build_man},
    data_files=[("share/man/man1", [MAN_PAGE])],
)
