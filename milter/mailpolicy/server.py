"""Start-up: logging, metrics endpoint, the milter socket with checked permissions, main loop."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import stat

import Milter
from prometheus_client import start_http_server

from mailpolicy import __version__, dns, events
from mailpolicy.adapter import PolicyMilter
from mailpolicy.config import Config

log = logging.getLogger("mailpolicy.server")

# pymilter's C module. Reached through Milter: the source root is named "milter" too, and tools that
# put it on their path (mypy) would otherwise resolve "import milter" to that directory.
milter = Milter.milter


class StartupError(Exception):
    pass


def unix_path(spec: str) -> str | None:
    kind, _, rest = spec.partition(":")
    return rest if kind in ("unix", "local") else None


def _can(st: os.stat_result, uid: int, gids: set[int], bits: int) -> bool:
    """Whether a user (uid, groups) has ``bits`` (r=4, w=2, x=1) on a file."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        return (st.st_mode >> 6) & bits == bits
    if st.st_gid in gids:
        return (st.st_mode >> 3) & bits == bits
    return st.st_mode & bits == bits


def check_access(path: str, user: str) -> str | None:
    """Why ``user`` could not connect to the unix socket at ``path``, or None if it can."""
    pw = pwd.getpwnam(user)
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    parts = os.path.abspath(path).split("/")
    for i in range(1, len(parts) - 1):
        d = "/".join(parts[: i + 1]) or "/"
        st = os.stat(d)
        if not _can(st, pw.pw_uid, gids, 1):
            return (
                f"directory {d} (mode {stat.S_IMODE(st.st_mode):04o}, owner {st.st_uid}:{st.st_gid}) "
                f"is not searchable by user {user!r}"
            )
    st = os.stat(path)
    if not _can(st, pw.pw_uid, gids, 6):
        return (
            f"socket {path} (mode {stat.S_IMODE(st.st_mode):04o}, owner {st.st_uid}:{st.st_gid}) "
            f"is not readable and writable by user {user!r}"
        )
    return None


def secure_socket(path: str, group: str, mode: int, client_user: str) -> None:
    try:
        if group:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
        os.chmod(path, mode)
    except OSError as exc:
        raise StartupError(
            f"milter.socket_group/socket_mode: cannot give {path} group {group!r} and mode {mode:04o}: "
            f"{exc.strerror} (the service user must be a member of that group)"
        ) from None
    if client_user:
        problem = check_access(path, client_user)
        if problem:
            raise StartupError(f"milter.client_user: {problem}")


def setup_dns(config: Config) -> None:
    """Install the milter's one resolver (nameservers from the config, else /etc/resolv.conf)."""
    servers = list(config.dns.nameservers)
    if not servers:
        try:
            servers = dns.resolv_conf_nameservers()
        except OSError as exc:
            raise StartupError(f"dns.nameservers: empty, and {dns.RESOLV_CONF}: {exc.strerror}") from None
        if not servers:
            raise StartupError(f"dns.nameservers: empty, and {dns.RESOLV_CONF} lists no nameserver")
    dns.install(dns.Resolver(servers, config.dns.timeout, config.dns.cache_size))
    log.info("DNS: %s", ", ".join(f"{ip}:{port}" for ip, port in servers))


def serve(config: Config) -> None:
    """Run until SIGTERM/SIGINT. Raises StartupError on anything that prevents a safe start."""
    m = config.milter
    events.setup(m.hostname, config.log.stdout, config.log.file, config.log.level)
    if config.metrics.listen:
        host, port = config.metrics.listen
        try:
            start_http_server(port, addr=host)
        except OSError as exc:
            raise StartupError(f"metrics.listen: cannot listen on {host}:{port}: {exc.strerror}") from None

    setup_dns(config)
    PolicyMilter.configure(config)
    Milter.factory = PolicyMilter
    Milter.set_exception_policy(Milter.TEMPFAIL if m.on_error == "tempfail" else Milter.CONTINUE)
    milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE | Milter.SETSYMLIST)
    milter.set_connect_callback(Milter.connect_callback)
    milter.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    milter.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
    milter.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt_bytes(*b))
    milter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    milter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    milter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    milter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    milter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    milter.set_close_callback(Milter.close_callback)
    milter.setconn(m.socket)
    milter.settimeout(m.timeout)
    milter.register(
        m.name,
        data=lambda ctx: ctx.getpriv().data(),
        unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
        negotiate=Milter.negotiate_callback,
    )

    path = unix_path(m.socket)
    if path is not None and not os.path.isdir(os.path.dirname(path)):
        raise StartupError(f"milter.socket: directory {os.path.dirname(path)} does not exist")
    old = os.umask(0o177)  # never let the socket exist with looser permissions than configured
    try:
        milter.opensocket(True)
    except milter.error as exc:
        raise StartupError(f"milter.socket: cannot open {m.socket}: {exc}") from None
    finally:
        os.umask(old)
    if path is not None:
        secure_socket(path, m.socket_group, m.socket_mode, m.client_user)

    log.info(
        "mailpolicy %s listening on %s; policies: %s",
        __version__,
        m.socket,
        ", ".join(f"{p.name}={p.mode.value}" for p in config.policies.values()),
        extra={"path": path},
    )
    milter.main()
    log.info("mailpolicy stopped")
