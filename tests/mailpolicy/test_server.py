from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mailpolicy import config
from mailpolicy.server import check_access, preflight
from support.stack import free_port, make_workdir


def unix_socket(path: Path, mode: int, group: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    os.chmod(path, mode)
    if group is not None:
        os.chown(path, -1, group)
    return s


def test_check_access_names_the_blocking_directory(tmp_path: Path) -> None:
    import grp

    gid = grp.getgrnam("postfix").gr_gid
    closed = make_workdir("mailpolicy-access-") / "closed"
    closed.mkdir(mode=0o700)
    s = unix_socket(closed / "m.sock", 0o660, gid)
    problem = check_access(str(closed / "m.sock"), "postfix")
    s.close()
    shutil.rmtree(closed.parent)
    assert problem is not None and f"directory {closed} " in problem and "not searchable" in problem

    open_dir = make_workdir("mailpolicy-access-")
    s = unix_socket(open_dir / "m.sock", 0o660, gid)
    assert check_access(str(open_dir / "m.sock"), "postfix") is None
    os.chmod(open_dir / "m.sock", 0o600)
    problem = check_access(str(open_dir / "m.sock"), "postfix")
    assert problem is not None and "not readable and writable" in problem
    s.close()
    shutil.rmtree(open_dir)


def start(tmp: Path, body: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp / "c.toml"
    cfg.write_text(body)
    return subprocess.run(
        [sys.executable, "-m", "mailpolicy", "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_fails_loudly_when_postfix_cannot_reach_the_socket(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    r = start(tmp_path, f'[milter]\nsocket = "unix:{closed}/m.sock"\n[metrics]\nlisten = ""\n')
    assert r.returncode == 1
    assert "milter.client_user: directory" in r.stderr and "'postfix'" in r.stderr
    assert "mailpolicy: cannot start" in r.stderr


def test_run_fails_when_socket_directory_is_missing(tmp_path: Path) -> None:
    r = start(tmp_path, f'[milter]\nsocket = "unix:{tmp_path}/nope/m.sock"\n[metrics]\nlisten = ""\n')
    assert r.returncode == 1 and "milter.socket: directory" in r.stderr and "does not exist" in r.stderr


def test_run_fails_when_metrics_port_is_taken() -> None:
    work = make_workdir("mailpolicy-metrics-")  # (tmp_path is not searchable by the MTA's user)
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        r = start(work, f'[milter]\nsocket = "unix:{work}/m.sock"\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    shutil.rmtree(work)
    assert r.returncode == 1 and f"metrics.listen: cannot listen on 127.0.0.1:{port}" in r.stderr


# ---- preflight: what makes `run` fail makes `check-config` fail, naming the key -------------------
# Only loopback is ever connected to; 192.0.2.1 (TEST-NET-1) and fe80::1 are only bind-tested, which
# fails here because they are not addresses of this host.


@pytest.fixture
def numeric_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never the system resolver in these tests: a name that is not a numeric address fails."""
    real = socket.getaddrinfo

    def numeric(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        return real(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    monkeypatch.setattr(socket, "getaddrinfo", numeric)


def preflight_of(sections: dict[str, Any], starting: bool = False) -> list[str]:
    cfg = config.parse({"dns": {"nameservers": ["127.0.0.1"]}, **sections})
    return preflight(cfg, starting=starting)[0]


def cli(command: str, path: Path, *setpriv: str) -> subprocess.CompletedProcess[str]:
    args = ["check-config", str(path)] if command == "check-config" else ["run", "--config", str(path)]
    return subprocess.run(
        [*setpriv, sys.executable, "-m", "mailpolicy", *args], capture_output=True, text=True, timeout=60
    )


def both_refuse(path: Path, expected: str, *setpriv: str) -> None:
    """check-config and run both exit 1 with ``expected`` (a key and its problem) on stderr."""
    for command in ("check-config", "run"):
        r = cli(command, path, *setpriv)
        assert r.returncode == 1 and expected in r.stderr, (command, r.stderr)
        assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "listen,address",
    [
        ("192.0.2.1:9469", "192.0.2.1"),  # not an address of this host
        ("1.2.3:9469", "1.2.0.3"),  # inet_aton's short form: what the resolver makes of it
        ("[fe80::1]:9469", "fe80::1"),  # link-local without a scope
    ],
)
def test_metrics_listen_must_be_an_address_of_this_host(
    listen: str, address: str, numeric_only: None
) -> None:
    problems = preflight_of(
        {"metrics": {"listen": listen}, "milter": {"socket": f"inet:{free_port()}@127.0.0.1"}}
    )
    assert len(problems) == 1 and problems[0].startswith(f"metrics.listen: cannot listen on {listen}"), (
        problems
    )
    assert address in problems[0] and "not an address of this host" in problems[0]


@pytest.mark.parametrize("listen", ["127.0.0.1:{port}", "127.1:{port}", "[::1]:{port}"])
def test_metrics_listen_on_a_local_address_passes(listen: str, numeric_only: None) -> None:
    if listen.startswith("[::1]") and not socket.has_ipv6:
        pytest.skip("no IPv6")
    port = free_port()
    with socket.socket() as busy:  # check-config never binds the real port (run may be using it)
        busy.bind(("127.0.0.1", port))
        busy.listen()
        assert (
            preflight_of(
                {"metrics": {"listen": listen.format(port=port)}, "milter": {"socket": "inet:1@127.0.0.1"}}
            )
            == []
        )


def test_check_config_and_run_refuse_a_metrics_address_not_on_this_host() -> None:
    work = make_workdir("mailpolicy-preflight-")
    try:
        path = work / "c.toml"
        path.write_text(
            f'[milter]\nsocket = "unix:{work}/m.sock"\n[metrics]\nlisten = "192.0.2.1:9469"\n'
            '[dns]\nnameservers = ["127.0.0.1"]\n'
        )
        both_refuse(path, "metrics.listen: cannot listen on 192.0.2.1:9469")
    finally:
        shutil.rmtree(work)


def libmilter_opens(spec: str) -> bool:
    """Whether libmilter itself (what `run` calls) can open ``spec``; closed at once."""
    probe = (
        "import sys, Milter\n"
        "Milter.milter.register('probe')\n"
        "Milter.milter.setconn(sys.argv[1])\n"
        "try:\n    Milter.milter.opensocket(True)\nexcept Milter.milter.error:\n    sys.exit(1)\n"
    )
    return (
        subprocess.run([sys.executable, "-c", probe, spec], capture_output=True, timeout=30).returncode == 0
    )


@pytest.mark.parametrize(
    "spec,ok",
    [
        ("inet:{port}@127.0.0.1", True),
        ("inet:{port}@127.1", True),
        ("inet:{port}@[127.0.0.1]", True),
        ("inet:{port}@[127.1]", True),
        ("inet6:{port}@::1", True),
        ("inet6:{port}@[::1]", True),
        ("inet6:{port}@[IPv6:::1]", True),
        ("inet:{port}@192.0.2.1", False),
        ("inet:{port}@1.2.3", False),  # 1.2.0.3
        ("inet:{port}@[192.0.2.1]", False),
        ("inet:{port}@[127.0.0.1", False),
        ("inet:{port}@::1", False),  # inet is IPv4 only
        ("inet:{port}@[::1]", False),
        ("inet6:{port}@127.0.0.1", False),  # inet6 is IPv6 only
        ("inet6:{port}@fe80::1", False),
        ("inet6:{port}@[fe80::1]", False),
        ("inet6:{port}@fe80::1%lo", False),  # libmilter takes no scope
    ],
)
def test_an_inet_milter_socket_passes_preflight_exactly_when_libmilter_opens_it(
    spec: str, ok: bool, numeric_only: None
) -> None:
    if "::" in spec and not socket.has_ipv6:
        pytest.skip("no IPv6")
    spec = spec.format(port=free_port())
    assert libmilter_opens(spec) is ok  # the premise, from libmilter itself
    problems = preflight_of({"milter": {"socket": spec}, "metrics": {"listen": ""}})
    if ok:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(f"milter.socket: {spec}: "), problems


def test_an_invalid_host_name_is_refused_without_asking_the_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 6761: no .invalid name resolves; asking the system resolver would send a query off this
    machine (and wait for its timeout)."""

    def resolver(*args: object, **kwargs: object) -> object:
        raise AssertionError(f"the resolver was asked: {args}")

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        monkeypatch.setattr(socket, name, resolver)
    problems = preflight_of(
        {
            "milter": {"socket": "inet:12345@no-such-host.invalid"},
            "metrics": {"listen": "metrics.INVALID.:9469"},
        }
    )
    assert problems == [
        "metrics.listen: host 'metrics.INVALID.' does not resolve (.invalid names never do, RFC 6761)",
        "milter.socket: inet:12345@no-such-host.invalid: host 'no-such-host.invalid' does not resolve "
        "(.invalid names never do, RFC 6761)",
    ]
    # Nor is what no resolver can answer asked about: '*' is no wildcard to libmilter or prometheus.
    problems = preflight_of({"milter": {"socket": "inet:12345@*"}, "metrics": {"listen": "*:9469"}})
    assert problems == [
        "metrics.listen: '*' is neither a host name nor an address (every IPv4 address: 0.0.0.0)",
        "milter.socket: inet:12345@*: '*' is neither a host name nor an IPv4 address",
    ]


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("inet:12345@192.0.2.1", "milter.socket: inet:12345@192.0.2.1: cannot listen on 192.0.2.1"),
        ("inet:12345@no-such-host.invalid", "milter.socket: inet:12345@no-such-host.invalid: host"),
    ],
)
def test_check_config_and_run_refuse_an_inet_socket_run_cannot_open(
    spec: str, expected: str, tmp_path: Path
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[milter]\nsocket = "{spec}"\n[metrics]\nlisten = ""\n[dns]\nnameservers = ["127.0.0.1"]\n'
    )
    both_refuse(path, expected)


def test_check_config_refuses_a_socket_directory_the_mta_cannot_search() -> None:
    """Hole: check-config said OK; run then created the socket and refused to go on because Postfix
    could not reach it (check_access ran only after the socket existed)."""
    work = make_workdir("mailpolicy-preflight-")
    try:
        closed = work / "closed"
        closed.mkdir(mode=0o700)
        path = work / "c.toml"
        path.write_text(
            f'[milter]\nsocket = "unix:{closed}/m.sock"\n[metrics]\nlisten = ""\n'
            '[dns]\nnameservers = ["127.0.0.1"]\n'
        )
        blocked = f"directory {closed} (mode 0700, owner 0:0) is not searchable by user 'postfix'"
        both_refuse(path, f"milter.client_user: {blocked}")
        assert not (closed / "m.sock").exists()
    finally:
        shutil.rmtree(work)


def test_preflight_refuses_a_socket_the_client_user_could_not_open() -> None:
    """The socket will be owned by this process, group milter.socket_group, mode milter.socket_mode:
    a client_user outside that group cannot open it."""
    work = make_workdir("mailpolicy-preflight-")
    try:
        socket_cfg = {"socket": f"unix:{work}/m.sock", "client_user": "nobody"}
        problems = preflight_of({"milter": socket_cfg, "metrics": {"listen": ""}})
        assert len(problems) == 1 and problems[0].startswith(
            "milter.client_user: the socket will be mode 0660"
        ), problems
        assert "not readable and writable by user 'nobody'" in problems[0]
        assert (
            preflight_of({"milter": {**socket_cfg, "client_user": "postfix"}, "metrics": {"listen": ""}})
            == []
        )
    finally:
        shutil.rmtree(work)


def test_check_config_and_run_refuse_a_file_that_is_not_a_socket_at_the_socket_path() -> None:
    """libmilter replaces a stale socket but nothing else: run failed with "cannot opensocket"."""
    work = make_workdir("mailpolicy-preflight-")
    try:
        sock = work / "m.sock"
        sock.write_text("precious data\n")
        path = work / "c.toml"
        path.write_text(
            f'[milter]\nsocket = "unix:{sock}"\n[metrics]\nlisten = ""\n[dns]\nnameservers = ["127.0.0.1"]\n'
        )
        both_refuse(path, f"milter.socket: {sock} exists and is not a socket (a regular file)")
        assert sock.read_text() == "precious data\n"
        sock.unlink()
        sock.mkdir()
        assert preflight_of({"milter": {"socket": f"unix:{sock}"}, "metrics": {"listen": ""}}) == [
            f"milter.socket: {sock} exists and is not a socket (a directory); libmilter replaces only a "
            "socket: move it away or choose another path"
        ]
    finally:
        shutil.rmtree(work)


def test_preflight_refuses_a_unix_socket_path_libmilter_cannot_hold() -> None:
    work = make_workdir("mailpolicy-preflight-")
    try:
        deep = work / ("d" * 60) / ("e" * 40)
        deep.mkdir(parents=True, mode=0o755)
        (work / ("d" * 60)).chmod(0o755)
        spec = f"unix:{deep}/m.sock"
        assert not libmilter_opens(spec)
        problems = preflight_of({"milter": {"socket": spec}, "metrics": {"listen": ""}})
        assert len(problems) == 1 and problems[0].startswith("milter.socket: the path is "), problems
    finally:
        shutil.rmtree(work)


def setpriv(*drop: str) -> list[str]:
    """A command prefix that runs as root without the given capabilities."""
    tool = shutil.which("setpriv")
    if tool is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv")
    caps = ",".join(f"-{c}" for c in drop)
    prefix = [tool, f"--bounding-set={caps}", f"--inh-caps={caps}"]
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr!r}")
    return prefix


def test_check_config_and_run_refuse_a_socket_group_the_service_cannot_give() -> None:
    """Hole: preflight took root for a process that may chown to any group; root without CAP_CHOWN
    (or a service user outside milter.socket_group) passed check-config, then run failed."""
    prefix = setpriv("chown")
    work = make_workdir("mailpolicy-preflight-")
    try:
        path = work / "c.toml"
        path.write_text(
            f'[milter]\nsocket = "unix:{work}/m.sock"\nsocket_group = "postfix"\n[metrics]\nlisten = ""\n'
            f'[log]\nstdout = false\nfile = "{work}/events.log"\nfile_group = "adm"\n'
            '[dns]\nnameservers = ["127.0.0.1"]\n'
        )
        both_refuse(path, "milter.socket_group: this process (uid 0) is not in group 'postfix'", *prefix)
        for command in ("check-config", "run"):
            assert (
                "log.file_group: this process (uid 0) is not in group 'adm'"
                in cli(command, path, *prefix).stderr
            )
        assert cli("check-config", path).returncode == 0  # with CAP_CHOWN root may give any group
    finally:
        shutil.rmtree(work)


def test_check_config_and_run_refuse_a_privileged_port_without_the_capability() -> None:
    prefix = setpriv("net_bind_service")
    try:
        start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        start = 1024
    if start < 2:
        pytest.skip("every port is unprivileged here")
    work = make_workdir("mailpolicy-preflight-")
    try:
        path = work / "c.toml"
        path.write_text(
            '[milter]\nsocket = "inet:1@127.0.0.1"\n[metrics]\nlisten = "127.0.0.1:1"\n'
            '[dns]\nnameservers = ["127.0.0.1"]\n'
        )
        both_refuse(path, "metrics.listen: cannot listen on 127.0.0.1:1: port 1 is privileged", *prefix)
        milter_socket = "milter.socket: inet:1@127.0.0.1: cannot listen on 127.0.0.1: port 1 is privileged"
        assert milter_socket in cli("check-config", path, *prefix).stderr
    finally:
        shutil.rmtree(work)
