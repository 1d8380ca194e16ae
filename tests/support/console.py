"""The ops console in tests: users for its settings, a console subprocess, and Chromium.

Chromium is the Debian package driven by the Debian ``chromium-driver`` (Selenium is told where
both are, so it never fetches a browser or a driver); a machine without them fails the browser
tests, it never skips them (.ci/run and ``make test`` install them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from stream_app.console.auth import hash_password
from tests.support.worker import STREAM_APP, free_port

__all__ = ["PASSWORD", "console_users", "ConsoleProcess", "chromium", "artefacts_dir", "stop_group"]

PASSWORD = "console-test-password"


def console_users() -> str:
    """CONNECT_CONSOLE_USERS with an operator ``olga`` and a viewer ``vic`` (both :data:`PASSWORD`)."""
    encoded = hash_password(PASSWORD, n=2**12)
    return json.dumps({"olga": {"role": "operator", "password": encoded},
                       "vic": {"role": "viewer", "password": encoded}})


class ConsoleProcess:
    """``stream-app console`` as a subprocess on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env, "CONNECT_CONSOLE_PORT": str(self.port)}
        self.env.setdefault("CONNECT_CONSOLE_USERS", console_users())
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "ConsoleProcess":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([STREAM_APP, "console"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if "console: http" in self.log_path.read_text(errors="replace"):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"the console did not start:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            stop_group(self.proc, 20)


def stop_group(proc: "subprocess.Popen[bytes]", timeout: float) -> None:
    """SIGTERM to the process group a subprocess leads, SIGKILL after ``timeout`` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def artefacts_dir(name: str) -> Path:
    """Where screenshots go: ``$CONNECT_TEST_ARTEFACTS/<name>`` (default: the system's temp folder)."""
    base = Path(os.environ.get("CONNECT_TEST_ARTEFACTS") or Path(tempfile.gettempdir()) / "connect-test-artefacts")
    path = base / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def chromium() -> Any:
    """A headless Chromium (Debian's) under Selenium; fails the test when it is not installed."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
    if browser is None or driver is None:
        pytest.fail("Chromium and chromium-driver are needed (Debian: apt-get install chromium chromium-driver; "
                    ".ci/run and `make test` install them)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                     "--disable-gpu"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)
