"""The configuration the milter runs under, and reloading it without dropping mail.

:class:`Runtime` holds the current :class:`~mailpolicy.session.Setup`; every new transaction takes
it at MAIL FROM (``Runtime.current``), a transaction in flight keeps the one it started with. A
reload (SIGHUP, ``systemctl reload``) reads and checks the whole file first and then swaps
everything at once; an invalid file changes nothing (every error is logged with its key). Settings
the running process cannot change (the socket and its permissions, the milter name and timeout,
the metrics listener) keep their old value, and the log says so.

Signals: libmilter takes SIGHUP, SIGTERM and SIGINT in a thread of its own and stops on any of
them. So libmilter runs in a second thread (:func:`run_milter`), which leaves the main thread the
only one without those signals blocked: the kernel hands a process-directed signal to the main
thread first, and Python runs our handlers there (SIGHUP reloads; SIGTERM/SIGINT ask libmilter to
stop gracefully, as it would have)."""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from mailpolicy import events, metrics, systemd
from mailpolicy.checks import CHECKS
from mailpolicy.config import Config, ConfigError, read
from mailpolicy.model import Mode
from mailpolicy.session import Setup

log = logging.getLogger("mailpolicy.runtime")

# Settings a running process cannot change: (section, key).
RESTART_ONLY = (
    ("milter", "socket"),
    ("milter", "socket_group"),
    ("milter", "socket_mode"),
    ("milter", "client_user"),
    ("milter", "name"),
    ("milter", "timeout"),
    ("metrics", "listen"),
)


_RESTART_KEYS = tuple(f"{section}.{key}" for section, key in RESTART_ONLY)


def restart_only_changes(old: Config, new: Config) -> tuple[Config, list[str]]:
    """``new`` with every restart-only setting put back to its running value, and a message for
    each one that differed."""
    kept = []
    milter, metrics_ = new.milter, new.metrics
    for section, key in RESTART_ONLY:
        was, now = getattr(getattr(old, section), key), getattr(getattr(new, section), key)
        if was == now:
            continue
        if section == "milter":
            milter = dataclasses.replace(milter, **{key: was})
        else:
            metrics_ = dataclasses.replace(metrics_, **{key: was})
        kept.append(f"{section}.{key}: changed to {now!r}, which needs a restart; still {was!r}")
    return dataclasses.replace(new, milter=milter, metrics=metrics_), kept


class Runtime:
    def __init__(
        self,
        path: str,
        config: Config,
        config_hash: str,
        preflight: Callable[[Config], list[str]],
        apply_dns: Callable[[Config], None],
    ):
        self.path = path
        self._preflight = preflight
        self._apply_dns = apply_dns
        self.config = config
        self._setup = Setup.from_config(config, config_hash)
        self.loaded_at = time.time()
        self._lock = threading.Lock()
        metrics.set_restart_pending(_RESTART_KEYS, ())  # (at start-up nothing waits for a restart)
        self._publish()

    def current(self) -> Setup:
        """The setup for a transaction starting now (one attribute read: safe from any thread)."""
        return self._setup

    def _publish(self) -> None:
        """Metrics of the running configuration; every known series of it exported at zero."""
        metrics.LAST_RELOAD.set(self.loaded_at)
        metrics.CONFIG_INFO.info({"hash": self._setup.config_hash, "path": self.path})
        metrics.set_policy_modes({p.name: p.mode.value for p in self.config.policies.values()})
        s = self._setup
        metrics.init_series(
            [(p.name, p.mode.value) for p in self.config.active()],
            checks={name: spec.results for name, spec in CHECKS.items()},
            methods={m.name: m.results for m in (*s.mail_methods, *s.eom_methods)},
        )

    def reload(self) -> bool:
        """Re-read the configuration file; True when the new one runs now."""
        with self._lock:
            systemd.reloading()
            log.info("reloading the configuration from %s", self.path, extra={"path": self.path})
            try:
                new, new_hash = read(self.path)
                problems = self._preflight(new)
            except ConfigError as exc:
                problems = exc.errors
            if problems:
                for problem in problems:
                    key = problem.removeprefix(f"{self.path}: ").split(":", 1)[0]
                    log.error("reload refused: %s", problem, extra={"key": key})
                metrics.child(metrics.RELOADS, "error").inc()
                log.error(
                    "reload failed: %d problem(s); the running configuration (%s) is unchanged",
                    len(problems),
                    self._setup.config_hash,
                )
                systemd.ready(f"reload failed, still running configuration {self._setup.config_hash}")
                return False
            new, kept = restart_only_changes(self.config, new)
            metrics.set_restart_pending(_RESTART_KEYS, (message.split(":", 1)[0] for message in kept))
            for message in kept:
                log.warning("reload: %s", message, extra={"key": message.split(":", 1)[0]})
            old = self.config
            for name, was in old.policies.items():
                now = new.policies.get(name)
                if was.mode is Mode.ENFORCE and now is not None and now.mode is not Mode.ENFORCE:
                    # Deliberate, or a half-written or emptied file (every key then takes its
                    # default, monitor): either way the admin should see it.
                    log.warning(
                        "reload: policies.%s.mode: enforce -> %s: this policy no longer refuses mail",
                        name,
                        now.mode.value,
                        extra={"key": f"policies.{name}.mode"},
                    )
            lc = new.log
            if (new.milter.hostname, lc) != (old.milter.hostname, old.log):
                events.setup(new.milter.hostname, lc.stdout, lc.file, lc.level, lc.file_mode, lc.file_group)
            else:
                events.reopen()
            if new.dns != old.dns:
                self._apply_dns(new)
            self.config = new
            self._setup = Setup.from_config(new, new_hash)
            self.loaded_at = time.time()
            self._publish()
            metrics.child(metrics.RELOADS, "ok").inc()
            modes = ", ".join(f"{p.name}={p.mode.value}" for p in new.policies.values())
            log.info("configuration %s loaded; policies: %s", new_hash, modes)
            systemd.ready(f"running configuration {new_hash}; {modes}")
            return True


class Signals:
    """SIGHUP -> reload (in the main thread, never inside the handler), SIGTERM/SIGINT -> stop."""

    def __init__(self, runtime: Runtime, stop: Callable[[], None]):
        self.runtime = runtime
        self._stop = stop
        self.reload_requested = threading.Event()
        self.stopping = False

    def install(self) -> None:
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.reload_requested.set()

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            self.stopping = True
            log.info("%s received: stopping", signal.Signals(signum).name)
            systemd.stopping()
            self._stop()

    def wait(self, worker: threading.Thread) -> None:
        """Serve signals until the libmilter thread ends."""
        while worker.is_alive():
            worker.join(0.2)
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                try:
                    self.runtime.reload()
                except Exception:  # a reload must never take the milter down
                    metrics.child(metrics.RELOADS, "error").inc()
                    log.exception("reload failed; the running configuration is unchanged")


def run_milter(main: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """Start libmilter's main loop in its own thread; errors it raises are collected."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            main()
        except BaseException as exc:  # reported by the caller after the thread ends
            errors.append(exc)

    t = threading.Thread(target=target, name="libmilter", daemon=True)
    t.start()
    return t, errors
