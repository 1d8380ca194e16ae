"""The sources' publisher without a broker: oversize events refused, retriable errors retried."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiokafka.errors import NotLeaderForPartitionError, TopicAuthorizationFailedError

from connectors import kafka_io
from connectors.kafka_io import KafkaTarget, Publisher
from connectors.kafka_limits import MessageLimits


class Producer:
    """Acks every message, except that the first ``failures`` sends fail with ``error``."""

    def __init__(self, failures: int = 0, error: type[Exception] = NotLeaderForPartitionError) -> None:
        self.failures, self.error = failures, error
        self.acked: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> Any:
        future = asyncio.get_running_loop().create_future()
        if self.failures:
            self.failures -= 1
            future.set_exception(self.error())
        else:
            self.acked.append((topic, key, value))
            future.set_result(None)
        return future


async def publisher(producer: Producer, monkeypatch: pytest.MonkeyPatch) -> Publisher:
    async def limits(topics: Any) -> dict[str, int]:
        return {"src.tims.customer": 2_000}

    async def exists(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(kafka_io, "ensure_source_topics", exists)
    monkeypatch.setattr(kafka_io, "RETRY_DELAY", 0.0)
    out = Publisher(KafkaTarget("unused"))
    await out.stop()  # the real producer, never started
    out._producer = producer  # type: ignore[assignment]
    out.limits = MessageLimits("unused", lookup=limits)
    return out


async def test_an_event_too_large_is_quarantined_and_the_rest_published(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = Producer()
    out = await publisher(producer, monkeypatch)
    sent = await out.send_many("src.tims.customer", [("C1", {"n": 1}), ("C2", {"note": "x" * 3_000}), ("C3", {"n": 3})])
    assert sent == 2 and out.quarantined == 1
    assert [(topic, key) for topic, key, _ in producer.acked] == [
        ("quarantine.tims", b"tims"), ("src.tims.customer", b"C1"), ("src.tims.customer", b"C3")]
    entry = json.loads(producer.acked[0][2])
    assert entry["reason"].startswith("publish refused: src.tims.customer: message of 3,0")
    assert entry["context"] == {"topic": "src.tims.customer", "key": "C2"}


async def test_a_retriable_broker_error_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = Producer(failures=2)
    out = await publisher(producer, monkeypatch)
    assert await out.send_many("src.tims.customer", [("C1", {"n": 1}), ("C2", {"n": 2})]) == 2
    assert [key for _, key, _ in producer.acked][-2:] == [b"C1", b"C2"]


async def test_other_broker_errors_stop_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    out = await publisher(Producer(failures=1, error=TopicAuthorizationFailedError), monkeypatch)
    with pytest.raises(TopicAuthorizationFailedError):
        await out.send_many("src.tims.customer", [("C1", {"n": 1})])
