"""Run ``stream-app worker`` as a real subprocess, the way an operator would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["WorkerProcess", "free_port", "free_port_pair"]

READY_MARK = "[^Worker]: Ready"
STREAM_APP = str(Path(sys.executable).with_name("stream-app"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_pair() -> int:
    """A port whose successor is free too (a local broker's controller listens on port + 1)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


class WorkerProcess:
    """One worker with its own web port, data dir and log file; env names the app and topics."""

    def __init__(self, env: dict[str, str], log_path: Path, name: str = "worker", loglevel: str = "info") -> None:
        self.env = {**os.environ, **env}
        self.loglevel = loglevel
        self.env.setdefault("CONNECT_WEB_PORT", str(free_port()))
        self.log_path = log_path
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self, ready_timeout: float = 90.0) -> "WorkerProcess":
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [STREAM_APP, "worker", "--loglevel", self.loglevel],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.wait_for_log(READY_MARK, ready_timeout)
        return self

    def log_text(self) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            fh.seek(self._log_offset)
            return fh.read().decode(errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_text():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"{self.name}: {text!r} not in its log after {timeout}s:\n{self.log_text()[-4000:]}")

    def stop(self, timeout: float = 60.0) -> int:
        """Graceful stop (SIGTERM): the worker commits its offsets on the way out."""
        return self._signal(signal.SIGTERM, timeout)

    def kill(self) -> int:
        """SIGKILL: no chance to commit, as in a crash."""
        return self._signal(signal.SIGKILL, 30.0)

    def _signal(self, sig: int, timeout: float) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> "WorkerProcess":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        if exc_type is not None:  # the test failed inside: its report shows what the worker did
            lines = self.log_text().splitlines()
            print(f"--- last {min(len(lines), 200)} lines of {self.name}'s log ({self.log_path}) ---")
            print("\n".join(lines[-200:]))
