"""Session fixtures shared by every test level.

The broker: KAFKA_BOOTSTRAP_SERVERS when set, else the local broker that ``stream-app kafka up``
manages (started here if it is not running). A broker that cannot be reached fails the tests
that need it: it never skips them.
"""

from __future__ import annotations

import asyncio
import os
import threading
import warnings
from pathlib import Path
from typing import Iterator

import pytest

from connectors.kafka_admin import KafkaAdmin
from stream_app.kafka_local import KAFKA_VERSION, LocalKafka, wait_for_broker
from tests.support.names import issued, unique

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
        _BROKER.update(describe=f"external at {external}", bootstrap=external)
        return external
    broker = LocalKafka()
    status = broker.up(timeout=120, echo=lambda *_: None)
    _BROKER.update(describe=status.describe(), bootstrap=status.bootstrap)
    return status.bootstrap


@pytest.fixture
def app_env(tmp_path: Path, kafka_bootstrap: str) -> dict[str, str]:
    """Environment for a worker subprocess with its own app id (consumer group), topics and data."""
    run = unique()
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


@pytest.fixture(autouse=True)
def _delete_the_tests_topics() -> Iterator[None]:
    """After each test, delete the topics named with the tokens it took from ``unique``
    (tests/support/names.py): the shared broker must not collect every run's topics."""
    issued()
    yield
    tokens = issued()
    if not tokens or "bootstrap" not in _BROKER:
        return

    async def delete() -> None:
        async with KafkaAdmin(_BROKER["bootstrap"], client_id="tests-cleanup") as kafka:
            mine = [t for t in await kafka.list_topics() if any(token in t for token in tokens)]
            await kafka.delete_topics(mine, wait=False)

    failure: list[BaseException] = []
    # a thread of its own: the test's event loop may still be around
    thread = threading.Thread(target=lambda: _capture(failure, lambda: asyncio.run(delete())), daemon=True)
    thread.start()
    thread.join(30)
    if failure or thread.is_alive():
        warnings.warn(f"the test's topics were not deleted: {failure[0] if failure else 'timed out'}", stacklevel=1)


def _capture(into: list[BaseException], run) -> None:  # type: ignore[no-untyped-def]
    try:
        run()
    except BaseException as exc:  # noqa: BLE001 - reported by the caller
        into.append(exc)
