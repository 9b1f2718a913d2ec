"""The two things mailpolicy needs from systemd, spoken directly (no library):

- the sd_notify protocol (``READY=1`` once the socket accepts connections and its permissions are
  checked, ``RELOADING=1`` / ``READY=1`` around a reload, ``STOPPING=1``, ``STATUS=``): one datagram
  to the unix socket named by ``$NOTIFY_SOCKET`` (``@`` means the abstract namespace);
- whether standard output is connected to journald (``$JOURNAL_STREAM`` = the device and inode of
  the stream), in which case each line may start with a ``<N>`` syslog priority that journald reads
  and strips.

Without systemd both are no-ops."""

from __future__ import annotations

import os
import socket
import sys
import time


def notify(*fields: str) -> bool:
    """Send ``fields`` (``KEY=value``) in one datagram; False when there is no NOTIFY_SOCKET or it
    cannot be reached (never raises: a missing systemd must not stop the milter)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or not fields:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall("\n".join(fields).encode("utf-8"))
        return True
    except OSError:
        return False


def ready(status: str) -> bool:
    return notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")


def reloading(status: str = "reloading the configuration") -> bool:
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", f"STATUS={status}")


def stopping(status: str = "stopping") -> bool:
    return notify("STOPPING=1", f"STATUS={status}")


def journal_stream(stream: object = None) -> bool:
    """Whether ``stream`` (default stdout) is the journald stream systemd connected (JOURNAL_STREAM)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isascii() and dev.isdigit() and ino.isascii() and ino.isdigit()):
        return False
    target = stream if stream is not None else sys.stdout
    try:
        fd = target.fileno()  # type: ignore[union-attr]
        st = os.fstat(fd)
    except (AttributeError, OSError, ValueError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


# syslog priorities (RFC 5424) of the diagnostic levels; events are informational (6).
PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
