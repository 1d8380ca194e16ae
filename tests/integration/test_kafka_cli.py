"""`stream-app kafka` as an operator runs it, against the broker the session uses."""

from __future__ import annotations

import os
import subprocess

import pytest

from stream_app.kafka_local import KAFKA_VERSION
from tests.support.worker import STREAM_APP

pytestmark = pytest.mark.integration


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STREAM_APP, "kafka", *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, **(env or {})})


def test_up_is_idempotent_and_status_names_address_and_version(kafka_bootstrap: str) -> None:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        result = run("up")
        assert result.returncode == 0, result.stderr
        assert f"external broker at {kafka_bootstrap}" in result.stdout
        assert "answering" in result.stdout
        return
    result = run("up")
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout
    status = run("status")
    assert status.returncode == 0, status.stderr
    assert f"bootstrap: {kafka_bootstrap}" in status.stdout
    assert f"version: {KAFKA_VERSION}" in status.stdout


def test_external_broker_is_used_and_nothing_started(kafka_bootstrap: str) -> None:
    result = run("up", env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    assert result.returncode == 0, result.stderr
    assert "nothing started here" in result.stdout


def test_unreachable_external_broker_fails_clearly() -> None:
    result = run("up", "--timeout", "3", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.returncode == 1
    assert "NOT answering" in result.stdout
