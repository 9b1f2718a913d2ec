"""What Postfix's ``postconf`` says about this host, for the start-up checks: settings that make
the milter unreachable or drop its connection although mailpolicy itself is configured right.

Every function answers None (or nothing) when it cannot tell: no ``postconf`` (a Sendmail host),
a ``postconf`` that fails or hangs. Never an error of its own."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import PurePosixPath

POSTCONF_TIMEOUT = 5.0


def postconf(*args: str) -> str | None:
    """``postconf ARGS`` standard output, or None when there is no postconf or it fails."""
    exe = shutil.which("postconf")
    if exe is None:
        return None
    try:
        return subprocess.run(
            [exe, *args], capture_output=True, text=True, timeout=POSTCONF_TIMEOUT, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError, UnicodeDecodeError):
        return None


def header_size_limit() -> int | None:
    """Postfix's ``header_size_limit``, or None when it cannot tell."""
    out = postconf("-h", "header_size_limit")
    text = out.strip() if out is not None else ""
    return int(text) if text.isascii() and text.isdigit() else None


def chrooted_smtpd(master: str) -> list[str]:
    """The ``service/type`` names in ``postconf -M`` output that run ``smtpd`` chrooted (the fifth
    column ``y``; ``-`` is Postfix 3's default, not chrooted)."""
    found = []
    for line in master.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[4] == "y" and PurePosixPath(fields[7]).name == "smtpd":
            found.append(f"{fields[0]}/{fields[1]}")
    return found


def chroot_note(socket_path: str | None) -> str | None:
    """A warning when Postfix runs smtpd chrooted and the milter's unix socket is outside the
    chroot (the queue directory): smtpd then cannot reach it and applies milter_default_action to
    every message (tempfail by default, or no checks at all with accept)."""
    if socket_path is None:  # an inet socket: reachable from a chroot
        return None
    master = postconf("-M")
    if master is None:
        return None
    services = chrooted_smtpd(master)
    queue = (postconf("-h", "queue_directory") or "").strip()
    if not services or not queue.startswith("/"):
        return None
    path, root = PurePosixPath(socket_path), PurePosixPath(queue)
    if path.is_relative_to(root):
        return None
    return (
        f"milter.socket: Postfix runs smtpd chrooted in {root} ({', '.join(services)} in master.cf), "
        f"so it cannot reach unix:{path} and would apply milter_default_action to every message: put "
        f"the socket under {root} (e.g. unix:{root}/mailpolicy/milter.sock, smtpd_milters = "
        f"unix:/mailpolicy/milter.sock) or turn the chroot off (README: Postfix)"
    )
