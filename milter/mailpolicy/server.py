"""Start-up: logging, metrics endpoint, the milter socket with checked permissions, main loop.

Everything that can refuse a start because of the configuration or this host is checked by
:func:`preflight`, which ``mailpolicy check-config`` runs too: what makes ``run`` fail makes
``check-config`` fail, naming the key."""

from __future__ import annotations

import ctypes
import errno
import grp
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess

import Milter
from prometheus_client import start_http_server

from mailpolicy import __version__, adapter, dns, events, systemd
from mailpolicy.config import Config
from mailpolicy.runtime import Runtime, Signals, run_milter

log = logging.getLogger("mailpolicy.server")

# pymilter's C module. Reached through Milter: the source root is named "milter" too, and tools that
# put it on their path (mypy) would otherwise resolve "import milter" to that directory.
milter = Milter.milter


class StartupError(Exception):
    """Something prevents a safe start; each problem is ``key: what is wrong``."""

    def __init__(self, *problems: str):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


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


def resolver_servers(config: Config) -> list[tuple[str, int]]:
    """The nameservers the milter will use; raises StartupError naming ``dns.nameservers``."""
    servers = list(config.dns.nameservers)
    if not servers:
        try:
            servers = dns.resolv_conf_nameservers()
        except OSError as exc:
            raise StartupError(f"dns.nameservers: empty, and {dns.RESOLV_CONF}: {exc.strerror}") from None
        if not servers:
            raise StartupError(f"dns.nameservers: empty, and {dns.RESOLV_CONF} lists no nameserver")
    return servers


def setup_dns(config: Config) -> None:
    """Install the milter's one resolver (nameservers from the config, else /etc/resolv.conf)."""
    servers = resolver_servers(config)
    dns.install(dns.Resolver(servers, config.dns.timeout, config.dns.cache_size))
    log.info("DNS: %s", ", ".join(f"{ip}:{port}" for ip, port in servers))


def _writable_file(path: str) -> str | None:
    """Why ``path`` cannot be opened for appending by this process, or None."""
    directory = os.path.dirname(os.path.abspath(path)) or "/"
    if not os.path.isdir(directory):
        return f"directory {directory} does not exist"
    if os.path.exists(path):
        if os.path.isdir(path):
            return f"{path} is a directory"
        if not os.access(path, os.W_OK):
            return f"{path} is not writable"
    elif not os.access(directory, os.W_OK | os.X_OK):
        return f"cannot create files in {directory}"
    return None


def socket_in_use(path: str) -> bool:
    """Whether something accepts connections on the unix socket at ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except OSError as exc:
        return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK)
    finally:
        s.close()


RUNTIME_PARENTS = ("/run", "/var/run")


_WILDCARDS = ("0.0.0.0", "::", "*", "")


def _group_allowed(group: str) -> bool:
    """Whether this process may give its files ``group`` (root, or a member of it)."""
    if os.geteuid() == 0:
        return True
    gid = grp.getgrnam(group).gr_gid
    return gid == os.getegid() or gid in os.getgroups()


def _host_problem(host: str, port: int) -> str | None:
    """Why ``host`` cannot be bound (it does not resolve), or None."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        return f"host {host!r} does not resolve ({exc})"
    return None


def preflight(config: Config, starting: bool = True) -> tuple[list[str], list[str]]:
    """Every problem with this host that would make ``run`` refuse to start, as ``key: problem``,
    and notices (``warning: ...`` or ``note: ...``). With ``starting=False`` (check-config) a running
    instance is not a problem (the admin checks the file before a reload), and a missing socket
    directory directly under /run is a note: systemd's RuntimeDirectory= creates it at start."""
    problems: list[str] = []
    notes: list[str] = []
    m = config.milter
    if config.log.file:
        why = _writable_file(config.log.file)
        if why:
            problems.append(f"log.file: {why}")
        group = config.log.file_group
        if group and not _group_allowed(group):
            problems.append(
                f"log.file_group: this process (uid {os.geteuid()}) is not in group {group!r}, so it "
                f"cannot give the event file that group (add it to SupplementaryGroups= in the unit)"
            )
    if config.metrics.listen:
        host, port = config.metrics.listen
        why = _host_problem(host, port)
        if why:
            problems.append(f"metrics.listen: {why}")
        elif host in _WILDCARDS:
            notes.append(
                f"warning: metrics.listen: {host or '*'}:{port} listens on every address; the metrics "
                f"show your mail flow to anyone who can reach it (prefer 127.0.0.1 or a firewall)"
            )
    path = unix_path(m.socket)
    if path is not None:
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            msg = f"milter.socket: directory {directory} does not exist"
            if not starting and os.path.dirname(directory) in RUNTIME_PARENTS:
                notes.append(
                    f"note: {msg} yet (systemd's RuntimeDirectory= creates it when the service starts)"
                )
            else:
                problems.append(msg)
        elif starting and os.path.exists(path) and socket_in_use(path):
            problems.append(f"milter.socket: {path} is in use by a running process (another mailpolicy?)")
    else:
        _port, _, host = m.socket.partition(":")[2].partition("@")
        if host in _WILDCARDS:
            notes.append(
                f"warning: milter.socket: {m.socket} accepts milter connections on every address: "
                f"anyone who can reach it can drive the milter (prefer a unix socket, or 127.0.0.1)"
            )
    try:
        resolver_servers(config)
    except StartupError as exc:
        problems.extend(exc.problems)
    return problems, notes


# libmilter refuses a milter packet larger than 65,535 bytes unless told otherwise (and drops the
# connection, which the MTA turns into its milter_default_action), while Postfix sends a header
# field of up to header_size_limit (102,400 bytes by default) as one packet. libmilter's public
# smfi_setmaxdatasize() raises the limit; pymilter does not wrap it, so it is called through ctypes
# on the libmilter that pymilter's C module is linked with.
MAX_DATA_SIZE = 1024 * 1024 - 1  # MILTER_MDS_1M


def raise_max_data_size(size: int = MAX_DATA_SIZE) -> int | None:
    """Set libmilter's packet size limit; returns the old one, or None when it cannot be set."""
    try:
        lib = ctypes.CDLL(Milter.milter.__file__)
        fn = lib.smfi_setmaxdatasize
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_size_t
    return int(fn(size))


def postfix_header_limit() -> int | None:
    """Postfix's header_size_limit on this host (``postconf``), or None when it cannot tell."""
    postconf = shutil.which("postconf")
    if postconf is None:
        return None
    try:
        out = subprocess.run(
            [postconf, "-h", "header_size_limit"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        return int(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def serve(config: Config, path: str, config_hash: str = "") -> int:
    """Run until SIGTERM/SIGINT, reloading on SIGHUP; returns the exit status. Raises StartupError
    on anything that prevents a safe start."""
    problems, notes = preflight(config)
    if problems:
        raise StartupError(*problems)
    m, lc = config.milter, config.log
    try:
        events.setup(m.hostname, lc.stdout, lc.file, lc.level, lc.file_mode, lc.file_group)
    except OSError as exc:
        raise StartupError(f"log.file: cannot open {lc.file}: {exc.strerror}") from None
    for note in notes:
        log.warning("%s", note)
    if config.metrics.listen:
        host, port = config.metrics.listen
        try:
            start_http_server(port, addr=host)
        except OSError as exc:
            raise StartupError(f"metrics.listen: cannot listen on {host}:{port}: {exc.strerror}") from None

    setup_dns(config)
    runtime = Runtime(path, config, config_hash, lambda c: preflight(c, starting=False)[0], setup_dns)
    adapter.register(m.name, runtime.current)
    milter.setconn(m.socket)
    milter.settimeout(m.timeout)
    old = raise_max_data_size()
    if old is None:
        log.warning(
            "cannot raise libmilter's packet limit: a header field over 65,535 bytes drops the milter "
            "connection"
        )
        limit = 65535
    else:
        limit = MAX_DATA_SIZE
    header_limit = postfix_header_limit()
    if header_limit is not None and header_limit > limit - 1024:
        log.warning(
            "Postfix header_size_limit (%d) is above what the milter protocol can carry here (%d): a "
            "longer header field drops the milter connection; set header_size_limit = %d or less",
            header_limit,
            limit,
            limit - 1024,
        )

    socket_path = unix_path(m.socket)
    old_umask = os.umask(0o177)  # never let the socket exist with looser permissions than configured
    try:
        milter.opensocket(True)
    except milter.error as exc:
        raise StartupError(f"milter.socket: cannot open {m.socket}: {exc}") from None
    finally:
        os.umask(old_umask)
    if socket_path is not None:
        secure_socket(socket_path, m.socket_group, m.socket_mode, m.client_user)

    signals = Signals(runtime, milter.stop)
    signals.install()
    events.start_writer()  # from now on lines are written by one thread, in batches
    try:
        worker, errors = run_milter(milter.main)
        modes = ", ".join(f"{p.name}={p.mode.value}" for p in config.policies.values())
        log.info(
            "mailpolicy %s listening on %s; configuration %s; policies: %s",
            __version__,
            m.socket,
            config_hash,
            modes,
            extra={"path": socket_path},
        )
        # The socket is listening (connections queue in its backlog) and its permissions were checked.
        systemd.ready(f"listening on {m.socket}; configuration {config_hash}; {modes}")
        signals.wait(worker)
        if errors:
            log.error("libmilter stopped with an error: %s", errors[0])
            return 1
        if not signals.stopping:
            # libmilter stopped by itself: a signal reached its own signal thread. Exit non-zero so
            # that the service manager starts it again.
            log.error("libmilter stopped without being asked to (a signal reached its signal thread)")
            return 1
        log.info("mailpolicy stopped")
        return 0
    finally:
        events.stop_writer()  # every queued line is written before the process ends
