"""Real parts for protocol and end-to-end tests: the mailpolicy process on a unix socket, a
throwaway Postfix instance on loopback, event-log and /metrics readers.

Everything lives under one temp directory (mode 0755 so that Postfix's unprivileged smtpd can
reach the milter socket) and only ever listens on 127.0.0.1 / ::1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from support import event_schema
from support.dnsserver import DnsServer

Event = dict[str, Any]


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def make_workdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def to_toml(config: dict[str, Any]) -> str:
    """Enough TOML for our config files: tables of scalars/lists, nested one level (policies.X)."""
    lines: list[str] = []

    def table(name: str, body: dict[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in scalars.items())
        for k, v in body.items():
            if isinstance(v, dict):
                table(f"{name}.{k}", v)

    for name, body in config.items():
        table(name, body)
    return "\n".join(lines) + "\n"


class MilterProcess:
    """``mailpolicy run`` as a subprocess with its own config, socket, event log and metrics port."""

    def __init__(self, workdir: Path | None = None, config: dict[str, Any] | None = None):
        """Without ``workdir`` a temp directory is made and removed at stop(). Without
        ``dns.nameservers`` in ``config`` an empty loopback DNS server is started for it: tests never
        reach the system resolver (it points off this machine)."""
        self.owns_dir = workdir is None
        workdir = workdir if workdir is not None else make_workdir("mailpolicy-milter-")
        self.dir = workdir
        self.socket = str(workdir / "milter.sock")
        self.log_file = workdir / "events.log"
        self.metrics_port = free_port()
        cfg: dict[str, Any] = {
            "milter": {"socket": f"unix:{self.socket}", "hostname": "mx1.test.example"},
            "log": {"stdout": False, "file": str(self.log_file), "level": "info"},
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
        }
        for section, body in (config or {}).items():
            if isinstance(body, dict) and section in cfg:
                cfg[section] = {**cfg[section], **body}
            else:
                cfg[section] = body
        self.own_dns: DnsServer | None = None
        if not cfg.get("dns", {}).get("nameservers"):
            self.own_dns = DnsServer().start()
            cfg["dns"] = {**cfg.get("dns", {}), "nameservers": [self.own_dns.nameserver], "timeout": 1.0}
        self.config_path = workdir / "mailpolicy.toml"
        self.config_path.write_text(to_toml(cfg))
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path = workdir / "milter.stderr"
        self.stdout_path = workdir / "milter.stdout"

    def start(self, capture_stdout: bool = False, env: dict[str, str] | None = None) -> MilterProcess:
        """Start the process; its standard output is discarded, or kept in ``stdout_path``;
        ``env`` is added to the environment (NOTIFY_SOCKET, JOURNAL_STREAM, ...)."""
        with self.stderr_path.open("wb") as stderr, self.stdout_path.open("wb") as stdout:
            extra = dict(env or {})
            if extra.get("JOURNAL_STREAM") == "stdout":  # the device and inode of the stdout file
                st = os.fstat(stdout.fileno())
                extra["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailpolicy", "run", "--config", str(self.config_path)],
                stdout=stdout if capture_stdout else subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, **extra},
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"mailpolicy exited {self.proc.returncode}: {self.stderr_text()}")
            return self._socket_up() and self._metrics_up()

        wait_for(ready, 20, "mailpolicy socket and metrics endpoint")
        return self

    def _socket_up(self) -> bool:
        if not self.socket.startswith("inet:"):
            return os.path.exists(self.socket)
        port, _, host = self.socket[5:].partition("@")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return True
        except OSError:
            return False

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def _metrics_up(self) -> bool:
        try:
            self.metrics_text()
            return True
        except OSError:
            return False

    def write_config(self, config: dict[str, Any]) -> None:
        """Rewrite the configuration file with ``config`` merged into it (tables merged key by
        key, at every level), for a reload."""

        def merge(into: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
            out = dict(into)
            for k, v in new.items():
                out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
            return out

        self.config_path.write_text(to_toml(merge(tomllib.loads(self.config_path.read_text()), config)))

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(0.5)
            except subprocess.TimeoutExpired:
                # libmilter takes 4-5 s to wind down after SIGTERM; tests need not wait for that.
                self.proc.kill()
                self.proc.wait(5)
        if self.own_dns is not None:
            self.own_dns.stop()
            self.own_dns = None
        try:
            # Every event the real milter wrote, whatever the test looked at, matches the schema.
            event_schema.check_file(self.log_file)
        finally:
            if self.owns_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    # -- observations -------------------------------------------------------------------------
    def lines(self) -> list[Event]:
        if not self.log_file.exists():
            return []
        # The milter may be writing right now: a last line without its newline is not complete yet.
        complete = self.log_file.read_text().split("\n")[:-1]
        return [json.loads(line) for line in complete if line.strip()]

    def events(self, kind: str | None = None) -> list[Event]:
        return [e for e in self.lines() if "event" in e and (kind is None or e["event"] == kind)]

    def wait_events(self, count: int, kind: str = "transaction", timeout: float = 15.0) -> list[Event]:
        """At least ``count`` events of ``kind`` (all of them, oldest first)."""
        wait_for(lambda: len(self.events(kind)) >= count, timeout, f"{count} {kind} events")
        return self.events(kind)

    def wait_event(
        self, pred: Callable[[Event], bool], kind: str | None = None, timeout: float = 15.0
    ) -> Event:
        def find() -> Event | None:
            return next((e for e in self.events(kind) if pred(e)), None)

        return wait_for(find, timeout, f"a {kind or 'any'} event matching the predicate")  # type: ignore[no-any-return]

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            body: bytes = r.read()
            return body.decode()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
        total = 0.0
        for fam in text_string_to_metric_families(self.metrics_text()):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total


MASTER_CF = """\
{listen4} inet n - n - - smtpd
{listen6} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def make_cert(
    directory: Path, subject: str = "/CN=mx.test.example", name: str = "", ca: tuple[Path, Path] | None = None
) -> tuple[Path, Path]:
    """``{name}key.pem`` (mode 0600) and ``{name}cert.pem`` for ``subject`` (OpenSSL ``/K=V/...``
    form, a literal ``+`` written ``\\+``), self-signed or signed by ``ca`` = (key, certificate).
    ECDSA P-256: an RSA key takes 0.4-2 s to generate on a busy machine."""
    key, cert = directory / f"{name}key.pem", directory / f"{name}cert.pem"
    signer = ["-CAkey", str(ca[0]), "-CA", str(ca[1])] if ca else []
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            subject,
            *signer,
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    key.chmod(0o600)
    return key, cert


class Postfix:
    """A throwaway Postfix instance (its own config and queue directory) on 127.0.0.1 and ::1."""

    def __init__(self, workdir: Path, milter_socket: str | None, main: dict[str, str] | None = None):
        self.dir = workdir
        self.conf = workdir / "etc"
        self.queue = workdir / "queue"
        self.port = free_port()
        self.port6 = free_port("::1")
        self.maillog = workdir / "maillog"
        self.conf.mkdir()
        self.queue.mkdir(mode=0o755)  # "postfix check" creates what is inside, not the directory itself
        key, cert = make_cert(workdir)
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": str(workdir / "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mx.test.example",
            "mydomain": "test.example",
            "mydestination": "",
            "inet_protocols": "all",
            "inet_interfaces": "127.0.0.1, [::1]",
            "smtpd_peername_lookup": "no",
            "smtp_dns_support_level": "disabled",
            "smtpd_authorized_xclient_hosts": "127.0.0.0/8, [::1]/128",
            "mynetworks": "127.0.0.0/8, [::1]/128",
            # Every domain is a relay domain (delivered to discard:), so XCLIENT clients can send too.
            "relay_domains": "static:ALL",
            "smtpd_relay_restrictions": "reject_unauth_destination",
            "default_transport": "discard",
            "relay_transport": "discard",
            "local_transport": "discard",
            "alias_maps": "",
            "alias_database": "",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": str(cert),
            "smtpd_tls_key_file": str(key),
            "smtpd_tls_loglevel": "1",
            "milter_protocol": "6",
            "milter_default_action": "tempfail",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(workdir),
            "biff": "no",
            "smtpd_banner": "$myhostname ESMTP",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "smtpd_client_connection_rate_limit": "0",
            "anvil_rate_time_unit": "60s",
            "default_process_limit": "50",
        }
        if milter_socket:
            settings["smtpd_milters"] = f"unix:{milter_socket}"
        settings.update(main or {})
        self.settings = settings
        (self.conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        (self.conf / "master.cf").write_text(
            MASTER_CF.format(listen4=f"127.0.0.1:{self.port}", listen6=f"[::1]:{self.port6}")
        )

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["postfix", "-c", str(self.conf), *args], capture_output=True, text=True)

    def start(self) -> Postfix:
        for step in ("check", "start"):
            r = self._postfix(step)
            if r.returncode != 0:
                raise RuntimeError(f"postfix {step} failed ({r.returncode}): {r.stdout}{r.stderr}")
        wait_for(lambda: self._listening(), 20, "Postfix smtpd to listen")
        return self

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                return s.recv(100).startswith(b"220")
        except OSError:
            return False

    def stop(self) -> None:
        self._postfix("stop")
        pidfile = self.queue / "pid" / "master.pid"

        def gone() -> bool:
            try:
                pid = int(pidfile.read_text().strip())
                os.kill(pid, 0)
                return False
            except (OSError, ValueError):
                return True

        with suppress(TimeoutError):
            wait_for(gone, 10, "the Postfix master to exit")

    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""


class SmtpSink:
    """Postfix's smtp-sink on loopback, saving every message it receives to a directory: the way to
    look at mail exactly as Postfix delivered it (headers the milter added or removed included)."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "captured"
        self.dir.mkdir(mode=0o777)
        self.dir.chmod(0o777)  # smtp-sink drops privileges to postfix (-u) before writing
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SmtpSink:
        self.proc = subprocess.Popen(
            ["smtp-sink", "-u", "postfix", "-d", f"{self.dir}/%H%M%S.", f"127.0.0.1:{self.port}", "100"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self._up(), 10, "smtp-sink to listen")
        return self

    def _up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)

    def messages(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.dir.iterdir()) if p.is_file()]

    def find(self, needle: bytes, timeout: float = 15.0) -> bytes:
        """The captured message containing ``needle`` (e.g. a unique Message-ID)."""
        found: bytes = wait_for(
            lambda: next((m for m in self.messages() if needle in m), None),
            timeout,
            f"a captured message containing {needle!r}",
        )
        return found


class Stack:
    """mailpolicy + Postfix wired together, started and stopped as one."""

    CAPTURE_DOMAIN = "capture.example"

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        postfix_main: dict[str, str] | None = None,
        capture: bool = False,
    ):
        """``capture=True``: mail to ``@capture.example`` is relayed to an smtp-sink (``self.sink``)
        instead of being discarded."""
        self.dir = make_workdir("mailpolicy-e2e-")
        self.milter = MilterProcess(self.dir, config)
        self.sink = SmtpSink(self.dir) if capture else None
        main = dict(postfix_main or {})
        if self.sink is not None:
            main["transport_maps"] = f"inline:{{ {self.CAPTURE_DOMAIN}=smtp:[127.0.0.1]:{self.sink.port} }}"
        self.postfix = Postfix(self.dir, self.milter.socket, main)

    def start(self) -> Stack:
        """Start all three, or none: whatever started is stopped when a later one fails."""
        try:
            if self.sink is not None:
                self.sink.start()
            self.milter.start()
            self.postfix.start()
        except Exception:
            self.postfix.stop()
            try:
                self.milter.stop()
            finally:
                if self.sink is not None:
                    self.sink.stop()
            raise
        return self

    def stop(self, keep: bool = False) -> None:
        self.postfix.stop()
        try:
            self.milter.stop()  # checks the event log against the schema: may raise
        finally:
            if self.sink is not None:
                self.sink.stop()
            if not keep:
                shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def running(
    config: dict[str, Any] | None = None,
    postfix_main: dict[str, str] | None = None,
    capture: bool = False,
) -> Iterator[Stack]:
    """A started :class:`Stack`, stopped (and its directory removed) on exit."""
    stack = Stack(config, postfix_main, capture).start()
    try:
        yield stack
    finally:
        stack.stop()
