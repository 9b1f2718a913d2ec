"""Start-up: logging, metrics endpoint, the milter socket with checked permissions, main loop.

Everything that can refuse a start because of the configuration or this host is checked by
:func:`preflight`, which ``mailpolicy check-config`` runs too: what makes ``run`` fail makes
``check-config`` fail, naming the key."""

from __future__ import annotations

import ctypes
import errno
import grp
import ipaddress
import logging
import os
import pwd
import re
import socket
import stat

import Milter
from prometheus_client import start_http_server

from mailpolicy import __version__, adapter, dns, events, postfix, systemd
from mailpolicy.config import Config, MilterConfig
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


def _can_mode(owner: int, group: int, mode: int, uid: int, gids: set[int], bits: int) -> bool:
    """Whether a user (uid, groups) has ``bits`` (r=4, w=2, x=1) on a file of this owner, group
    and mode."""
    if uid == 0:
        return True
    if owner == uid:
        return (mode >> 6) & bits == bits
    if group in gids:
        return (mode >> 3) & bits == bits
    return mode & bits == bits


def _can(st: os.stat_result, uid: int, gids: set[int], bits: int) -> bool:
    """Whether a user (uid, groups) has ``bits`` (r=4, w=2, x=1) on a file."""
    return _can_mode(st.st_uid, st.st_gid, st.st_mode, uid, gids, bits)


def _user_ids(user: str) -> tuple[int, set[int]]:
    """A user's uid and every group it is in."""
    pw = pwd.getpwnam(user)
    return pw.pw_uid, {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}


def _blocking_directory(path: str, user: str, uid: int, gids: set[int]) -> str | None:
    """Why ``user`` could not reach a file at ``path``: the first directory on the way it cannot
    search. A directory that does not exist (yet) ends the walk: it is not judged."""
    parts = os.path.abspath(path).split("/")
    for i in range(1, len(parts) - 1):
        d = "/".join(parts[: i + 1]) or "/"
        try:
            st = os.stat(d)
        except FileNotFoundError:
            return None
        if not _can(st, uid, gids, 1):
            return (
                f"directory {d} (mode {stat.S_IMODE(st.st_mode):04o}, owner {st.st_uid}:{st.st_gid}) "
                f"is not searchable by user {user!r}"
            )
    return None


def check_access(path: str, user: str) -> str | None:
    """Why ``user`` could not connect to the unix socket at ``path``, or None if it can."""
    uid, gids = _user_ids(user)
    blocked = _blocking_directory(path, user, uid, gids)
    if blocked:
        return blocked
    st = os.stat(path)
    if not _can(st, uid, gids, 6):
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

CAP_CHOWN, CAP_NET_BIND_SERVICE = 0, 10  # (linux/capability.h)
SUN_PATH_MAX = 106  # libmilter: strlen(path) + 1 must stay below sizeof(sun_path), 108 on Linux
_HOST_NAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?")
_INVALID_NAME = "does not resolve (.invalid names never do, RFC 6761)"


def _capable(cap: int) -> bool:
    """Whether this process has capability ``cap`` in its effective set (root normally has every
    one; a unit's CapabilityBoundingSet= or AmbientCapabilities= change that). Without /proc: root."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> cap & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def _group_allowed(group: str) -> bool:
    """Whether this process may give its files ``group``: it is in that group, or may give any
    group (CAP_CHOWN: root, unless the capability was taken away)."""
    gid = grp.getgrnam(group).gr_gid
    return gid == os.getegid() or gid in os.getgroups() or _capable(CAP_CHOWN)


def _not_in_group(group: str, what: str) -> str:
    return (
        f"this process (uid {os.geteuid()}) is not in group {group!r}, so it cannot give {what} that "
        f"group (add it to SupplementaryGroups= in the unit)"
    )


def _invalid_name(host: str) -> bool:
    """RFC 6761 6.4: a name under .invalid never resolves; it is refused without asking the system
    resolver (which would send the query off this machine and wait for the answer)."""
    name = host.rstrip(".").lower()
    return name == "invalid" or name.endswith(".invalid")


def _privileged_port(port: int) -> str | None:
    """Why this process may not listen on ``port``: below net.ipv4.ip_unprivileged_port_start
    (which applies to IPv6 as well) without CAP_NET_BIND_SERVICE. A bind test on port 0 cannot
    tell, so this is judged apart."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", encoding="ascii") as fh:
            start = int(fh.read())
    except (OSError, ValueError):
        start = 1024
    if 0 < port < start and not _capable(CAP_NET_BIND_SERVICE):
        return (
            f"port {port} is privileged (below {start}) and this process (uid {os.geteuid()}) lacks "
            f"CAP_NET_BIND_SERVICE: use a port of {start} or more"
        )
    return None


def _link_local(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_link_local
    except ValueError:
        return False


def _bind_problem(family: socket.AddressFamily, address: str, port: int) -> str | None:
    """Why this process cannot listen on ``address``, bind-tested on ``port`` with SO_REUSEADDR (as
    libmilter and the metrics server bind) and closed at once, or None. Port 0 proves the address
    is one of this host's without touching a port a running instance may hold."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((address, port))
    except OSError as exc:
        why = exc.strerror or str(exc)
        if exc.errno == errno.EADDRNOTAVAIL:
            why += " (not an address of this host)"
        elif exc.errno == errno.EINVAL and family == socket.AF_INET6 and _link_local(address):
            why += " (a link-local address without a scope is not an address of this host)"
        return why
    return None


def _metrics_problem(host: str, port: int) -> str | None:
    """Why the metrics server could not listen on ``host:port``, checked as it will listen
    (prometheus_client: the first getaddrinfo answer for the host, bound with SO_REUSEADDR), on
    port 0."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if ":" not in host and not _HOST_NAME_RE.fullmatch(host):
        return f"{host!r} is neither a host name nor an address (every IPv4 address: 0.0.0.0)"
    if _invalid_name(host):
        return f"host {host!r} {_INVALID_NAME}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        return f"host {host!r} does not resolve ({exc})"
    family, _, _, _, sockaddr = infos[0]
    address = str(sockaddr[0])
    why = _privileged_port(port) or _bind_problem(family, address, 0)
    if why:
        return f"cannot listen on {shown if address == host else f'{shown} ({address})'}: {why}"
    return None


def _numeric_address(family: socket.AddressFamily, text: str) -> str | None:
    """``text`` as libmilter reads ``[ADDRESS]``: inet_addr for inet (short forms such as 127.1
    too), inet_pton for inet6 (an ``IPv6:`` prefix allowed). None when it is not one."""
    try:
        if family == socket.AF_INET:
            return socket.inet_ntoa(socket.inet_aton(text))
        if text[:5].lower() == "ipv6:":
            text = text[5:]
        return socket.inet_ntop(family, socket.inet_pton(family, text))
    except (OSError, ValueError):
        return None


def _milter_inet_problem(spec: str, starting: bool) -> str | None:
    """Why libmilter could not listen on ``inet:PORT[@HOST]`` / ``inet6:PORT[@HOST]``, checked as
    it will (listener.c): ``[ADDRESS]`` numeric, a host name or address through the resolver in
    the socket's family only, no IPv6 scope, then bound with SO_REUSEADDR. check-config and a
    reload bind port 0 (a running instance holds the real one); ``run`` binds the real port."""
    kind, _, rest = spec.partition(":")
    port_text, at, host = rest.partition("@")
    port = int(port_text)
    family = socket.AF_INET6 if kind.lower() == "inet6" else socket.AF_INET
    version = 6 if family == socket.AF_INET6 else 4
    if not at:
        address = "::" if version == 6 else "0.0.0.0"
    elif host.startswith("["):
        end = host.find("]")
        numeric = _numeric_address(family, host[1:end]) if end > 0 else None
        if numeric is None:
            return f"{host!r} is not a numeric IPv{version} address"
        address = numeric
    elif ":" in host:
        if version == 4:
            return f"{host!r} is an IPv6 address: inet takes IPv4 only (write inet6:{port}@{host})"
        if "%" in host:
            return f"{host!r}: libmilter cannot bind a scoped IPv6 address"
        numeric = _numeric_address(family, host)
        if numeric is None:
            return f"{host!r} is not an IPv6 address"
        address = numeric
    elif not _HOST_NAME_RE.fullmatch(host):
        return f"{host!r} is neither a host name nor an IPv{version} address"
    elif _invalid_name(host):
        return f"host {host!r} {_INVALID_NAME}"
    else:
        try:
            infos = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            return f"host {host!r} has no IPv{version} address ({exc})"
        address = str(infos[0][4][0])
    why = _privileged_port(port) or _bind_problem(family, address, port if starting else 0)
    if why:
        where = f"{address} port {port}" if starting else address
        return f"cannot listen on {where}: {why}"
    return None


def _unix_socket_problems(m: MilterConfig, path: str, starting: bool) -> tuple[list[str], list[str]]:
    """What would make libmilter's socket at ``path`` fail, or the start-up checks after it: the
    directory, a file in the way, the MTA's user reaching it, the group it is given."""
    problems: list[str] = []
    notes: list[str] = []
    directory = os.path.dirname(path)
    size = len(os.fsencode(path))
    if size > SUN_PATH_MAX:
        problems.append(
            f"milter.socket: the path is {size} bytes long; libmilter takes at most {SUN_PATH_MAX}"
        )
    if not os.path.isdir(directory):
        msg = f"milter.socket: directory {directory} does not exist"
        if not starting and os.path.dirname(directory) in RUNTIME_PARENTS:
            notes.append(f"note: {msg} yet (systemd's RuntimeDirectory= creates it when the service starts)")
        else:
            problems.append(msg)
    else:
        if not os.access(directory, os.W_OK | os.X_OK):
            problems.append(
                f"milter.socket: this process (uid {os.geteuid()}) cannot create the socket in "
                f"{directory} (it needs write and search permission there)"
            )
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                problems.append(f"milter.socket: {path} is a symbolic link to nothing: remove it")
        except OSError as exc:
            problems.append(f"milter.socket: cannot check {path}: {exc.strerror}")
        else:
            if not stat.S_ISSOCK(st.st_mode):
                kinds = {stat.S_IFREG: "a regular file", stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO"}
                kind = kinds.get(stat.S_IFMT(st.st_mode), "a device")
                problems.append(
                    f"milter.socket: {path} exists and is not a socket ({kind}); libmilter replaces only "
                    "a socket: move it away or choose another path"
                )
            elif starting and socket_in_use(path):
                problems.append(f"milter.socket: {path} is in use by a running process (another mailpolicy?)")
    if m.socket_group and not _group_allowed(m.socket_group):
        problems.append(f"milter.socket_group: {_not_in_group(m.socket_group, 'the socket')}")
    if m.client_user:
        uid, gids = _user_ids(m.client_user)
        blocked = _blocking_directory(path, m.client_user, uid, gids)
        if blocked:
            problems.append(f"milter.client_user: {blocked}")
        else:
            # The socket run creates: this process's, given socket_group (or keeping its own), socket_mode.
            owner, group = (
                os.geteuid(),
                grp.getgrnam(m.socket_group).gr_gid if m.socket_group else os.getegid(),
            )
            if not _can_mode(owner, group, m.socket_mode, uid, gids, 6):
                problems.append(
                    f"milter.client_user: the socket will be mode {m.socket_mode:04o}, owner {owner}:{group} "
                    f"(milter.socket_mode, milter.socket_group): not readable and writable by user "
                    f"{m.client_user!r}"
                )
    return problems, notes


def preflight(config: Config, starting: bool = True) -> tuple[list[str], list[str]]:
    """Every problem with this host that would make ``run`` refuse to start, as ``key: problem``,
    and notices (``warning: ...`` or ``note: ...``). With ``starting=False`` (check-config, a
    reload) a running instance is not a problem (the admin checks the file before a reload), no
    real port is bound (addresses are bind-tested on port 0), and a missing socket directory
    directly under /run is a note: systemd's RuntimeDirectory= creates it at start."""
    problems: list[str] = []
    notes: list[str] = []
    m = config.milter
    if config.log.file:
        why = _writable_file(config.log.file)
        if why:
            problems.append(f"log.file: {why}")
        group = config.log.file_group
        if group and not _group_allowed(group):
            problems.append(f"log.file_group: {_not_in_group(group, 'the event file')}")
    if config.metrics.listen:
        host, port = config.metrics.listen
        why = _metrics_problem(host, port)
        if why:
            problems.append(f"metrics.listen: {why}")
        elif host in _WILDCARDS:
            notes.append(
                f"warning: metrics.listen: {host or '*'}:{port} listens on every address; the metrics "
                f"show your mail flow to anyone who can reach it (prefer 127.0.0.1 or a firewall)"
            )
    path = unix_path(m.socket)
    if path is not None:
        found, noted = _unix_socket_problems(m, path, starting)
        problems += found
        notes += noted
        chroot = postfix.chroot_note(path)
        if chroot:
            notes.append(f"warning: {chroot}")
    else:
        why = _milter_inet_problem(m.socket, starting)
        _port, _, host = m.socket.partition(":")[2].partition("@")
        if why:
            problems.append(f"milter.socket: {m.socket}: {why}")
        elif host in _WILDCARDS:
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
    for note in notes:  # "warning: KEY: text" or "note: KEY: text"
        level, _, text = note.partition(": ")
        emit = log.warning if level == "warning" else log.info
        emit("%s", text, extra={"key": text.split(":", 1)[0]})
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
    header_limit = postfix.header_size_limit()
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
