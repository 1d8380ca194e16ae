"""Session fixtures shared by every test level.

The broker: KAFKA_BOOTSTRAP_SERVERS when set, else the local broker that ``stream-app kafka up``
manages (started here if it is not running). A broker that cannot be reached fails the tests
that need it: it never skips them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from stream_app.kafka_local import KAFKA_VERSION, LocalKafka, wait_for_broker

_BROKER: dict[str, str] = {}


def pytest_report_header(config: pytest.Config) -> str:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        return f"kafka broker: external at {external} (KAFKA_BOOTSTRAP_SERVERS)"
    return f"kafka broker: local Apache Kafka {KAFKA_VERSION} (pinned in stream_app/kafka_local.py)"


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if _BROKER:
        terminalreporter.write_line(f"kafka broker used: {_BROKER['describe']}")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        if not wait_for_broker(external, timeout=60):
            pytest.fail(f"KAFKA_BOOTSTRAP_SERVERS={external} does not answer metadata requests")
        _BROKER["describe"] = f"external at {external}"
        return external
    broker = LocalKafka()
    status = broker.up(timeout=120, echo=lambda *_: None)
    _BROKER["describe"] = status.describe()
    return status.bootstrap


@pytest.fixture
def app_env(tmp_path: Path, kafka_bootstrap: str) -> dict[str, str]:
    """Environment for a worker subprocess with its own app id (consumer group), topics and data."""
    run = uuid.uuid4().hex[:8]
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CONNECT_APP_ID": f"test-{run}",
        "CONNECT_TOPIC_PREFIX": f"t{run}.",
        "CONNECT_DATA_DIR": str(tmp_path / "data"),
        "CONNECT_TOPIC_PARTITIONS": "4",
        "CONNECT_BROKER_COMMIT_INTERVAL": "0.5",
        "CONNECT_BROKER_SESSION_TIMEOUT": "10",
        "CONNECT_BROKER_HEARTBEAT_INTERVAL": "1",
    }
