from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from mailpolicy.server import check_access
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


def test_run_fails_when_metrics_port_is_taken(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        r = start(
            tmp_path, f'[milter]\nsocket = "unix:{tmp_path}/m.sock"\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
        )
    assert r.returncode == 1 and f"metrics.listen: cannot listen on 127.0.0.1:{port}" in r.stderr
