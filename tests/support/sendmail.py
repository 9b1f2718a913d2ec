"""A real Sendmail 8.17 on loopback for end-to-end tests, built from the README's m4 lines.

The binary comes from the Debian packages ``sendmail-bin`` and ``sendmail-cf``, downloaded and unpacked
(never installed: ``sendmail-bin`` conflicts with ``postfix``) by ``make sendmail`` into
``.cache/sendmail/root``. It is copied with mode 0755 (not setgid, so ``LD_PRELOAD`` works) and run as
root (``-bD``: a daemon in the foreground) in private mount and UTS namespaces
(``unshare --mount --uts``) where

- the host name is dotted (``mx.test.example``): otherwise Sendmail looks its unqualified name up in
  the system DNS (which points off this machine) and sleeps 60 s before reading its config;
- ``/etc/hosts`` and ``/etc/resolv.conf`` are private bind mounts: the host name resolves from the
  file, and any stray DNS query would go to 127.0.0.1 (the cf also turns DNS off: nocanonify,
  ``hosts files`` in its service switch, no ident).

The network namespace stays shared: clients reach it on 127.0.0.1 and ::1. Sendmail logs only to
syslog and there is no ``/dev/log`` here, so a tiny ``LD_PRELOAD`` shim (built with gcc for each
instance) adds ``LOG_PERROR`` to ``openlog``: its syslog lines land in ``sendmail.log``. ``-X``
writes an SMTP transcript as well. Every message is delivered by a local prog mailer (``capture``)
that writes each copy to its own file, so tests see mail exactly as Sendmail delivered it.

Several daemons can share one Sendmail, each with its own milter: one per :class:`Listener`
(``DAEMON_OPTIONS(... InputMailFilters=NAME)``)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.stack import MilterProcess, free_port, make_cert, make_workdir, wait_for

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("MAILPOLICY_SENDMAIL_ROOT", REPO / ".cache" / "sendmail" / "root"))
BINARY = ROOT / "usr" / "libexec" / "sendmail" / "sendmail"
CF_DIR = ROOT / "usr" / "share" / "sendmail" / "cf"
HELP_FILE = ROOT / "etc" / "mail" / "helpfile"
README = REPO / "README.md"
HOSTNAME = "mx.test.example"
CAPTURE_DOMAIN = "capture.example"  # mail to this domain is delivered to a file (every test recipient)
# What the milter needs under Sendmail (README, "Sendmail"): Sendmail connects as root.
SENDMAIL_MILTER: dict[str, str] = {"client_user": "root", "socket_group": "root"}

LOG_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <syslog.h>
/* Sendmail logs only through syslog(3); there is no /dev/log here. Copy every line to stderr. */
void openlog(const char *ident, int option, int facility) {
    void (*real)(const char *, int, int) = (void (*)(const char *, int, int))dlsym(RTLD_NEXT, "openlog");
    real(ident, option | LOG_PERROR, facility);
}
"""

# Run by ``unshare --mount --uts``: in the new namespaces, a dotted host name and private /etc/hosts and
# /etc/resolv.conf, then exec Sendmail ("$@") in place (the PID stays the daemon's). Mounts must be
# made private before any bind mount, or they would propagate to the host's namespace. A chroot whose
# root is not a mount point (.ci/fresh-debian-check) cannot change the propagation of "/" (EINVAL):
# there Sendmail runs chrooted in a private recursive bind of "/", made on a private tmpfs over
# /dev/shm. Nothing outlives the namespace.
START = """set -e
hostname {hostname}
if mountpoint -q /; then
    mount --make-rprivate /
    root=/
else
    mount --make-rprivate /dev
    mount -t tmpfs -o size=1m,mode=0700 mailpolicy-sendmail /dev/shm
    mkdir /dev/shm/root
    mount --rbind / /dev/shm/root
    mount --make-rprivate /dev/shm/root
    root=/dev/shm/root
fi
mount --bind {etc}/hosts "$root/etc/hosts"
if [ -e "$root/etc/resolv.conf" ]; then
    mount --bind {etc}/resolv.conf "$root/etc/resolv.conf"
fi
exec chroot "$root" "$@"
"""

DELIVER = """#!/bin/sh
# The capture mailer: one file per delivered copy, written under a temporary name and then renamed.
umask 022
f=$(mktemp {dir}/msg.XXXXXXXXXX) || exit 75
cat > "$f" || exit 75
mv "$f" "$f.eml" || exit 75
exit 0
"""


class SendmailUnavailable(RuntimeError):
    """Sendmail cannot run here. The tests fail with this (never skip): `make test` provides it."""


def check_available() -> None:
    """Raise :class:`SendmailUnavailable`, naming what is missing."""
    problems: list[str] = []
    if not BINARY.is_file():
        problems.append(f"no sendmail binary at {BINARY}")
    if not (CF_DIR / "m4" / "cf.m4").is_file():
        problems.append(f"no sendmail-cf m4 files at {CF_DIR}")
    if problems:
        problems.append("run `make sendmail` (downloads and unpacks sendmail-bin and sendmail-cf)")
    for tool in ("m4", "unshare", "mount", "mountpoint", "chroot", "hostname", "gcc"):
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` is not installed (`make deps` installs it)")
    if os.geteuid() != 0:
        problems.append("Sendmail needs root (a private mount and UTS namespace, bind mounts)")
    if problems:
        raise SendmailUnavailable("Sendmail tests cannot run: " + "; ".join(problems))


def readme_m4_lines() -> tuple[str, str]:
    """The ``INPUT_MAIL_FILTER`` and ``confMILTER_MACROS_ENVFROM`` lines of README.md, "Sendmail"."""
    text = README.read_text()
    section = text.partition("### Sendmail")[2]
    block = re.search(r"```[^\n]*\n(.*?)```", section, re.S)
    assert block, "README.md: no code block under '### Sendmail'"
    lines = block.group(1).splitlines()
    filt = [line for line in lines if line.startswith("INPUT_MAIL_FILTER(")]
    macros = [line for line in lines if line.startswith("define(`confMILTER_MACROS_ENVFROM'")]
    assert len(filt) == 1 and len(macros) == 1, f"README.md Sendmail block changed: {lines}"
    return filt[0], macros[0]


def mail_filter_line(readme_line: str, name: str, socket_path: str) -> str:
    """The README's INPUT_MAIL_FILTER line for milter ``name`` on ``socket_path``."""
    line, n = re.subn(r"S=unix:[^,']+", f"S=unix:{socket_path}", readme_line)
    assert n == 1, readme_line
    return line.replace("INPUT_MAIL_FILTER(`mailpolicy'", f"INPUT_MAIL_FILTER(`{name}'", 1)


@dataclass
class Listener:
    """One Sendmail daemon socket (127.0.0.1, and ::1 if ``ipv6``) whose mail goes to one milter."""

    name: str  # the milter's name in the cf (letters, digits, _)
    milter_socket: str
    ipv6: bool = False
    port: int = field(default_factory=free_port)
    port6: int = 0

    def __post_init__(self) -> None:
        if self.ipv6 and not self.port6:
            self.port6 = free_port("::1")


class Sendmail:
    """A throwaway Sendmail (own cf, queue and files under ``workdir/sendmail``) on loopback."""

    def __init__(
        self,
        workdir: Path,
        listeners: list[Listener],
        server_cert: tuple[Path, Path],
        client_ca: Path,
    ):
        check_available()
        self.listeners = listeners
        self.dir = workdir / "sendmail"
        self.dir.mkdir(mode=0o755)
        self.etc = self.dir / "etc"
        self.etc.mkdir(mode=0o755)
        self.queue = self.dir / "queue"
        self.queue.mkdir(mode=0o700)
        self.captured = self.dir / "captured"
        self.captured.mkdir()
        self.captured.chmod(0o777)  # the capture mailer runs as DefaultUser (nobody)
        self.log_path = self.dir / "sendmail.log"
        self.transcript = self.dir / "transcript"
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = self.dir / "sendmail"
        shutil.copyfile(BINARY, self.binary)
        self.binary.chmod(0o755)
        self.shim = self.dir / "logshim.so"
        (self.dir / "logshim.c").write_text(LOG_SHIM)
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-o", str(self.shim), str(self.dir / "logshim.c"), "-ldl"],
            check=True,
            capture_output=True,
        )
        deliver = self.dir / "deliver"
        deliver.write_text(DELIVER.format(dir=self.captured))
        deliver.chmod(0o755)
        hosts = f"127.0.0.1\t{HOSTNAME} mx localhost\n::1\t{HOSTNAME} mx localhost ip6-localhost\n"
        (self.etc / "hosts").write_text(hosts)
        (self.etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        (self.etc / "service.switch").write_text("hosts files\naliases files\n")
        (self.etc / "aliases").write_text("")
        self.cf = self.dir / "sendmail.cf"
        self.mc = self.dir / "sendmail.mc"
        self.mc.write_text(self._mc(server_cert, client_ca, deliver))
        r = subprocess.run(
            ["m4", f"-D_CF_DIR_={CF_DIR}/", str(CF_DIR / "m4" / "cf.m4"), str(self.mc)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0 or r.stderr.strip():
            raise RuntimeError(f"m4 failed ({r.returncode}): {r.stderr}")
        self.cf.write_text(r.stdout)

    def _mc(self, server_cert: tuple[Path, Path], client_ca: Path, deliver: Path) -> str:
        filter_line, macros_line = readme_m4_lines()
        d, e = self.dir, self.etc
        daemons: list[str] = []
        filters: list[str] = []
        for lst in self.listeners:
            filters.append(mail_filter_line(filter_line, lst.name, lst.milter_socket))
            # {daemon_name} is the Name: "NAME" on 127.0.0.1, "NAME-v6" on ::1.
            filt = f"InputMailFilters={lst.name}"
            daemons.append(f"DAEMON_OPTIONS(`Port={lst.port}, Addr=127.0.0.1, Name={lst.name}, {filt}')")
            if lst.ipv6:
                v6 = f"Port={lst.port6}, Addr=::1, Family=inet6, Name={lst.name}-v6"
                daemons.append(f"DAEMON_OPTIONS(`{v6}, {filt}')")
        key, cert = server_cert
        lines = [
            "divert(-1)",
            "divert(0)dnl",
            "OSTYPE(`linux')dnl",
            # Everything out of /etc/mail.
            f"define(`MAIL_SETTINGS_DIR', `{e}/')dnl",
            f"define(`ALIAS_FILE', `{e}/aliases')dnl",
            f"define(`HELP_FILE', `{HELP_FILE}')dnl",
            f"define(`QUEUE_DIR', `{self.queue}')dnl",
            f"define(`confPID_FILE', `{d}/sendmail.pid')dnl",
            f"define(`confSTATUS_FILE', `{d}/statistics')dnl",
            # No DNS at all.
            f"define(`confDOMAIN_NAME', `{HOSTNAME}')dnl",
            f"define(`confSERVICE_SWITCH_FILE', `{e}/service.switch')dnl",
            f"define(`confHOSTS_FILE', `{e}/hosts')dnl",
            "define(`confDONT_PROBE_INTERFACES', `True')dnl",
            "define(`confBIND_OPTS', `-DNSRCH -DEFNAMES')dnl",
            "define(`confTO_IDENT', `0s')dnl",
            "FEATURE(`nocanonify')dnl",
            "FEATURE(`accept_unresolvable_domains')dnl",
            "FEATURE(`no_default_msa')dnl",
            # A busy test machine must not make Sendmail queue (nobody runs the queue) or refuse.
            "define(`confQUEUE_LA', `1000')dnl",
            "define(`confREFUSE_LA', `1000')dnl",
            "define(`confDELIVERY_MODE', `background')dnl",
            "define(`confDEF_USER_ID', `65534:65534')dnl",
            # The milter socket and the certificates live under /tmp (world-writable, sticky).
            "define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit')dnl",
            f"define(`confSERVER_CERT', `{cert}')dnl",
            f"define(`confSERVER_KEY', `{key}')dnl",
            f"define(`confCACERT', `{client_ca}')dnl",
            f"define(`confCACERT_PATH', `{client_ca.parent}')dnl",
            "define(`confLOG_LEVEL', `14')dnl",
            *daemons,
            # The README's two lines (socket path and name substituted).
            *filters,
            macros_line,
            "MAILER(`local')dnl",
            "MAILER(`smtp')dnl",
            "MAILER_DEFINITIONS",
            f"Mcapture, P={deliver}, F=lsnDFMPhu, S=EnvFromL/HdrFromL, R=EnvToL/HdrToL,",
            "\t\tT=DNS/RFC822/X-Unix, A=deliver $u",
            "LOCAL_RULE_0",
            # Mail to CAPTURE_DOMAIN goes to the capture mailer (a tab separates LHS and RHS); other
            # addresses (the senders') resolve as usual, to esmtp.
            f"R$+ < @ {CAPTURE_DOMAIN} $* > $*\t$#capture $@ {CAPTURE_DOMAIN} $: $1 < @ {CAPTURE_DOMAIN} >",
            "",
        ]
        return "\n".join(lines)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Sendmail:
        start = self.dir / "start.sh"
        start.write_text(START.format(hostname=HOSTNAME, etc=self.etc))
        command = [str(self.binary), "-bD", "-C", str(self.cf), "-X", str(self.transcript)]
        # Private mount and UTS namespaces; the script makes the mounts private itself (see START).
        unshare = ["unshare", "--mount", "--uts", "--propagation", "unchanged"]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*unshare, "sh", str(start), *command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LD_PRELOAD": str(self.shim)},
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"sendmail exited {self.proc.returncode}: {self.log()}")
            listening = _listening_ports()
            return all(
                lst.port in listening and (not lst.ipv6 or lst.port6 in listening) for lst in self.listeners
            )

        try:
            wait_for(ready, 20, "Sendmail to listen")
        except BaseException:
            self.stop()
            raise
        return self

    def _descendants(self, pid: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
        found: list[int] = []
        todo = [pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        return found

    def stop(self) -> None:
        """Stop the open SMTP sessions (they would outlive the daemon), then the daemon. The sessions
        go first so that the daemon reaps them: no zombies left behind."""
        if self.proc is None or self.proc.poll() is not None:
            return
        children = self._descendants(self.proc.pid)
        _signal_all(children, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while any(_exists(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        _signal_all([pid for pid in children if _alive(pid)], signal.SIGKILL)

    # -- observations ------------------------------------------------------------------------
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def messages(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.captured.glob("*.eml"))]

    def find(self, needle: bytes, timeout: float = 15.0) -> bytes:
        """The delivered copy containing ``needle`` (e.g. a unique Message-ID)."""
        return self.find_all(needle, 1, timeout)[0]

    def find_all(self, needle: bytes, count: int, timeout: float = 15.0) -> list[bytes]:
        """At least ``count`` delivered copies containing ``needle`` (all of them)."""

        def found() -> list[bytes]:
            copies = [m for m in self.messages() if needle in m]
            return copies if len(copies) >= count else []

        copies: list[bytes] = wait_for(found, timeout, f"{count} delivered copies containing {needle!r}")
        return copies


def _listening_ports() -> set[int]:
    """Local TCP ports in state LISTEN (from /proc: probing with a connection would reach the
    milter as a connection of its own)."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":
                    ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _exists(pid: int) -> bool:
    """The process exists, zombie or not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


class SendmailStack:
    """Several mailpolicy processes and one Sendmail, started and stopped as one: each milter gets
    its own Sendmail daemon socket (``ports[name]``; the first one also listens on ::1, ``port6``).
    A test CA (``ca``) signs client certificates; Sendmail trusts it and asks every client for one."""

    def __init__(self, configs: dict[str, dict[str, Any]]):
        check_available()
        self.dir = make_workdir("mailpolicy-sendmail-")
        self.pki = self.dir / "pki"
        self.pki.mkdir(mode=0o755)
        self.ca = make_cert(self.pki, "/CN=Test Client CA", "ca-")
        server = make_cert(self.pki, f"/CN={HOSTNAME}", "server-")
        self.milters: dict[str, MilterProcess] = {}
        listeners: list[Listener] = []
        for i, (name, config) in enumerate(configs.items()):
            workdir = self.dir / name
            workdir.mkdir(mode=0o755)
            # Sendmail connects to the milter as root.
            milter_cfg = {**config, "milter": {**SENDMAIL_MILTER, **config.get("milter", {})}}
            self.milters[name] = MilterProcess(workdir, milter_cfg)
            listeners.append(Listener(name, self.milters[name].socket, ipv6=i == 0))
        self.sendmail = Sendmail(self.dir, listeners, server, self.ca[1])
        self.ports = {lst.name: lst.port for lst in listeners}
        self.port6 = listeners[0].port6

    def start(self) -> SendmailStack:
        try:
            for milter in self.milters.values():
                milter.start()
            self.sendmail.start()
        except BaseException:
            self.stop(keep=True)
            raise
        return self

    def stop(self, keep: bool = False) -> None:
        self.sendmail.stop()
        for milter in self.milters.values():
            milter.stop()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def diagnostics(self, since: int = 0) -> str:
        """Sendmail's syslog lines (from byte ``since``) and each milter's standard error."""
        parts = [f"--- sendmail log ({self.sendmail.log_path}):\n{self.sendmail.log()[since:]}"]
        parts += [f"--- {name} stderr:\n{m.stderr_text()}" for name, m in self.milters.items()]
        return "\n".join(parts)
