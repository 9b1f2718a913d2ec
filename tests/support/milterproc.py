"""Run the real milter (``mailpolicy run --config ...``) as a subprocess on a unix socket in a 0755
temp dir, with JSON lines to a log file and /metrics on a free loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MilterProcess:
    def __init__(self, config_body: str):
        self.dir = tempfile.mkdtemp(prefix="mailpolicy-test-")
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "milter.sock")
        self.log = os.path.join(self.dir, "events.jsonl")
        self.metrics_port = free_port()
        self.config = os.path.join(self.dir, "mailpolicy.toml")
        with open(self.config, "w") as fh:
            fh.write(
                f'[milter]\nsocket = "unix:{self.socket}"\nsocket_group = ""\nclient_user = ""\n'
                f'hostname = "mx.test.example"\ntimeout = 30\n'
                f'[log]\nstdout = false\nfile = "{self.log}"\nlevel = "info"\n'
                f'[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n' + config_body
            )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MilterProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailpolicy", "run", "--config", self.config],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        deadline = time.monotonic() + 15
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.stop()
                raise RuntimeError(f"milter did not start: {err}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL by PID: pymilter takes ~5 s to exit on SIGTERM
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def events(self, kind: str = "transaction") -> list[dict[str, Any]]:
        if not os.path.exists(self.log):
            return []
        with open(self.log) as fh:
            lines = [json.loads(line) for line in fh if line.strip()]
        return [e for e in lines if e.get("event") == kind]

    def wait_events(self, n: int, kind: str = "transaction") -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while True:
            evs = self.events(kind)
            if len(evs) >= n or time.monotonic() > deadline:
                return evs
            time.sleep(0.02)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return str(r.read().decode())
