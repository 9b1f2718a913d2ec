"""mailpolicy.postfix: what postconf says, read through a stand-in postconf on PATH (and once through
this host's real one)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mailpolicy import postfix

DEBIAN_MASTER = """\
smtp       inet  n       -       y       -       -       smtpd
pickup     unix  n       -       y       60      1       pickup
cleanup    unix  n       -       y       -       0       cleanup
local      unix  -       n       n       -       -       local
"""
POSTSCREEN_MASTER = """\
smtp       inet  n       -       y       -       1       postscreen
smtpd      pass  -       -       y       -       -       smtpd
submission inet  n       -       n       -       -       smtpd -o smtpd_tls_security_level=encrypt
"""
UNCHROOTED_MASTER = """\
smtp       inet  n       -       -       -       -       smtpd
submission inet  n       -       n       -       -       smtpd
cleanup    unix  n       -       y       -       0       cleanup
"""


def fake_postconf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, master: str, rc: int = 0, milters: str = ""
) -> None:
    """A postconf on PATH that answers -M, -h queue_directory, -h header_size_limit and
    -hx smtpd_milters."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (tmp_path / "master").write_text(master)
    (tmp_path / "milters").write_text(milters + "\n")
    script = bindir / "postconf"
    script.write_text(
        "#!/bin/sh\n"
        f"[ {rc} = 0 ] || exit {rc}\n"
        f'case "$*" in\n'
        f'  "-M") cat {tmp_path / "master"} ;;\n'
        '  "-h queue_directory") echo /var/spool/postfix ;;\n'
        '  "-h header_size_limit") echo 102400 ;;\n'
        f'  "-hx smtpd_milters") cat {tmp_path / "milters"} ;;\n'
        "  *) exit 1 ;;\n"
        "esac\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    monkeypatch.setattr(postfix, "SBIN", str(bindir))


def test_a_chrooted_smtpd_cannot_reach_a_socket_outside_the_queue_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_postconf(tmp_path, monkeypatch, DEBIAN_MASTER, milters="unix:/mailpolicy/milter.sock")
    note = postfix.chroot_note("/run/mailpolicy/milter.sock")
    assert note is not None
    assert note.startswith("milter.socket: Postfix runs smtpd chrooted in /var/spool/postfix (smtp/inet")
    assert "unix:/var/spool/postfix/mailpolicy/milter.sock" in note
    assert postfix.chroot_note("/var/spool/postfix/mailpolicy/milter.sock") is None
    assert postfix.chroot_note("/var/spool/postfix-other/milter.sock") is not None  # not a prefix match
    assert postfix.chroot_note(None) is None  # an inet socket


@pytest.mark.parametrize(
    ("master", "milters", "socket", "seen_as"),
    [
        # chrooted: smtpd_milters must name the path inside the chroot
        (DEBIAN_MASTER, "unix:/mailpolicy/milter.sock", "/var/spool/postfix/mailpolicy/milter.sock", None),
        (
            DEBIAN_MASTER,
            "{ unix:/mailpolicy/milter.sock, default_action=accept }",
            "/var/spool/postfix/mailpolicy/milter.sock",
            None,
        ),
        (
            DEBIAN_MASTER,
            "unix:/var/spool/postfix/mailpolicy/milter.sock",
            "/var/spool/postfix/mailpolicy/milter.sock",
            "unix:/mailpolicy/milter.sock",
        ),
        (DEBIAN_MASTER, "", "/var/spool/postfix/mailpolicy/milter.sock", "unix:/mailpolicy/milter.sock"),
        # not chrooted: the path itself
        (UNCHROOTED_MASTER, "unix:/run/mailpolicy/milter.sock", "/run/mailpolicy/milter.sock", None),
        (
            UNCHROOTED_MASTER,
            "inet:127.0.0.1:8891, unix:/run/mailpolicy/milter.sock",
            "/run/mailpolicy/milter.sock",
            None,
        ),
        (
            UNCHROOTED_MASTER,
            "unix:/run/mailpolicy/milter.sock.old",
            "/run/mailpolicy/milter.sock",
            "unix:/run/mailpolicy/milter.sock",
        ),
        (UNCHROOTED_MASTER, "", "/run/mailpolicy/milter.sock", "unix:/run/mailpolicy/milter.sock"),
        # a per-service override in master.cf counts
        (
            UNCHROOTED_MASTER.replace(
                "smtpd\n", "smtpd -o smtpd_milters=unix:/run/mailpolicy/milter.sock\n", 1
            ),
            "",
            "/run/mailpolicy/milter.sock",
            None,
        ),
    ],
)
def test_smtpd_milters_must_name_the_socket_as_smtpd_sees_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    master: str,
    milters: str,
    socket: str,
    seen_as: str | None,
) -> None:
    fake_postconf(tmp_path, monkeypatch, master, milters=milters)
    note = postfix.chroot_note(socket)
    if seen_as is None:
        assert note is None
    else:
        assert note is not None and f"as {seen_as};" in note, note
        assert ("smtpd_milters is empty" in note) is (milters == "")


def test_postscreen_passes_to_a_chrooted_smtpd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_postconf(tmp_path, monkeypatch, POSTSCREEN_MASTER)
    assert postfix.chrooted_smtpd(POSTSCREEN_MASTER) == ["smtpd/pass"]
    note = postfix.chroot_note("/run/mailpolicy/milter.sock")
    assert note is not None and "(smtpd/pass in master.cf)" in note


def test_no_chrooted_smtpd_no_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_postconf(tmp_path, monkeypatch, UNCHROOTED_MASTER, milters="unix:/run/mailpolicy/milter.sock")
    assert postfix.chrooted_smtpd(UNCHROOTED_MASTER) == []  # "-" is Postfix 3's default: no chroot
    assert postfix.chroot_note("/run/mailpolicy/milter.sock") is None
    assert postfix.header_size_limit() == 102400


@pytest.mark.parametrize("rc", [1, 127])
def test_a_failing_postconf_tells_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rc: int) -> None:
    fake_postconf(tmp_path, monkeypatch, DEBIAN_MASTER, rc=rc)
    assert postfix.chroot_note("/run/mailpolicy/milter.sock") is None
    assert postfix.header_size_limit() is None


def test_no_postconf_tells_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a Sendmail host
    monkeypatch.setattr(postfix, "SBIN", str(tmp_path))
    assert postfix.postconf("-M") is None
    assert postfix.chroot_note("/run/mailpolicy/milter.sock") is None
    assert postfix.header_size_limit() is None


def test_this_hosts_postfix_is_found_without_sbin_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real postconf (postfix is in the tests' apt list), found in /usr/sbin also when PATH has
    no sbin directory (an admin's own account); the chroot note agrees with what it says of smtp/inet."""
    exe = shutil.which("postconf", path="/usr/sbin")
    assert exe is not None, "postfix is installed by `make test` (APT_PACKAGES)"
    master = subprocess.run([exe, "-M", "smtp/inet"], capture_output=True, text=True, check=True).stdout
    queue = subprocess.run([exe, "-h", "queue_directory"], capture_output=True, text=True, check=True).stdout
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert postfix.postconf("-h", "queue_directory") == queue
    assert postfix.header_size_limit() is not None
    note = postfix.chroot_note("/run/mailpolicy/milter.sock")
    if master.split()[4:5] == ["y"]:  # Debian's master.cf
        assert note is not None and "smtpd chrooted" in note and "smtp/inet" in note
    else:
        assert note is None or "smtpd chrooted" not in note
