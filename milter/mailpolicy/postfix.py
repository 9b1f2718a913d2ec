"""What Postfix's ``postconf`` says about this host, for the start-up checks: settings that make
the milter unreachable or drop its connection although mailpolicy itself is configured right.

Every function answers None (or nothing) when it cannot tell: no ``postconf`` (a Sendmail host),
a ``postconf`` that fails or hangs. Never an error of its own."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import PurePosixPath

POSTCONF_TIMEOUT = 5.0
SBIN = "/usr/sbin:/sbin"  # where postconf is when PATH has no sbin (an admin's own account)


def postconf(*args: str) -> str | None:
    """``postconf ARGS`` standard output, or None when there is no postconf or it fails."""
    exe = shutil.which("postconf") or shutil.which("postconf", path=SBIN)
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


def _milter_names(master: str) -> str:
    """Postfix's ``smtpd_milters`` as smtpd uses it: the main.cf value (expanded) and any
    ``-o smtpd_milters=...`` override of an smtpd service in master.cf."""
    names = [postconf("-hx", "smtpd_milters") or ""]
    for line in master.splitlines():
        fields = line.split()
        if len(fields) >= 8 and PurePosixPath(fields[7]).name == "smtpd":
            names += [f.partition("=")[2] for f in fields[8:] if f.startswith("smtpd_milters=")]
    return " ".join(names)


def chroot_note(socket_path: str | None) -> str | None:
    """A warning when Postfix cannot reach the milter's unix socket as it is configured: smtpd runs
    chrooted and the socket is outside the chroot (the queue directory), or ``smtpd_milters`` does
    not name the socket as smtpd sees it (inside a chroot: the path under the queue directory).
    Either way smtpd applies milter_default_action to every message (tempfail by default, or no
    checks at all with accept), or never asks the milter."""
    if socket_path is None:  # an inet socket: reachable from a chroot
        return None
    master = postconf("-M")
    queue = (postconf("-h", "queue_directory") or "").strip()
    if master is None or not queue.startswith("/"):
        return None
    services = chrooted_smtpd(master)
    path, root = PurePosixPath(socket_path), PurePosixPath(queue)
    if services and not path.is_relative_to(root):
        return (
            f"milter.socket: Postfix runs smtpd chrooted in {root} ({', '.join(services)} in "
            f"master.cf), so it cannot reach unix:{path} and would apply milter_default_action to "
            f"every message: put the socket under {root} (e.g. unix:{root}/mailpolicy/milter.sock, "
            f"smtpd_milters = unix:/mailpolicy/milter.sock) or turn the chroot off (README: Postfix)"
        )
    seen_as = f"unix:/{path.relative_to(root)}" if services else f"unix:{path}"
    names = _milter_names(master)
    if re.search(rf"(?<![^\s,{{]){re.escape(seen_as)}(?![^\s,}}])", names):
        return None
    where = f"smtpd runs chrooted in {root}, so it sees the socket" if services else "smtpd sees the socket"
    current = f"smtpd_milters = {names.strip()}" if names.strip() else "smtpd_milters is empty"
    return (
        f"milter.socket: Postfix's {current}: {where} as {seen_as}; until smtpd_milters names it "
        f"so, Postfix does not use mailpolicy (or applies milter_default_action) (README: Postfix)"
    )
