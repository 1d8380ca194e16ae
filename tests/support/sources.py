"""``stream-app source <system> --metrics-port N`` as a subprocess, the way an operator runs it."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.support.worker import STREAM_APP, free_port

__all__ = ["SourceProcess"]


class SourceProcess:
    """``stream-app source <system> --metrics-port N`` with its own log."""

    def __init__(self, system: str, env: dict[str, str], log_path: Path) -> None:
        self.system, self.port, self.log_path = system, free_port(), log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [STREAM_APP, "source", system, "--metrics-port", str(self.port)],
                env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"source {self.system} exited with {self.proc.returncode}:\n"
                               f"{self.log_path.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
