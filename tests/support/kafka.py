"""Produce to and read from a real broker in tests."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from connectors.kafka_admin import KafkaAdmin, ensure_topics
from stream_app.kafka_local import LocalKafka
from tests.support.worker import free_port_pair

__all__ = ["produce_json", "read_json", "create_topics", "topic_sizes", "rejections", "private_broker"]


@asynccontextmanager
async def private_broker() -> AsyncIterator[LocalKafka]:
    """A broker of the test's own (ports, data), which it may kill; removed after it."""
    broker = LocalKafka(port=free_port_pair(), heap="512m")
    try:
        await asyncio.to_thread(broker.up, 180.0, lambda *_: None)
        yield broker
    finally:
        broker.reset(lambda *_: None)


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 4) -> None:
    await ensure_topics(bootstrap, names, partitions=partitions)


async def produce_json(bootstrap: str, topic: str, records: Iterable[tuple[str, Any]]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    count = 0
    try:
        batch = []
        for key, value in records:
            batch.append(await producer.send(topic, json.dumps(value).encode(), key=key.encode()))
            count += 1
        await asyncio.gather(*batch)
    finally:
        await producer.stop()
    return count


async def read_json(
    bootstrap: str,
    topic: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60.0,
    quiet_after: float = 0.0,
) -> list[dict[str, Any]]:
    """Read the topic from the start until ``until(values)`` holds (then, optionally, keep
    reading until nothing new arrived for ``quiet_after`` seconds). Raises TimeoutError with
    what was read so far."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
        enable_auto_commit=False, metadata_max_age_ms=1000,
    )
    await consumer.start()
    values: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        satisfied_at: float | None = None
        last_new = time.monotonic()
        while True:
            now = time.monotonic()
            if satisfied_at is None and until(values):
                satisfied_at = now
            if satisfied_at is not None and now - last_new >= quiet_after:
                return values
            if now > deadline:
                raise TimeoutError(f"{topic}: condition not met after {timeout}s; read {len(values)} messages")
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    values.append(json.loads(record.value))
                    last_new = time.monotonic()
    finally:
        await consumer.stop()


async def topic_sizes(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Messages in each topic (0 for a topic that does not exist)."""
    async with KafkaAdmin(bootstrap) as kafka:
        starts, ends = await kafka.beginning_offsets(topics), await kafka.end_offsets(topics)
    sizes = dict.fromkeys(topics, 0)
    for tp, end in ends.items():
        sizes[tp.topic] += end - starts[tp]
    return sizes


async def rejections(bootstrap: str, topics: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Messages on each of ``topics`` (dead-letter and quarantine topics) that has any, and the
    eight commonest reasons they give (for a failure message)."""
    sizes = {topic: n for topic, n in (await topic_sizes(bootstrap, topics)).items() if n}
    reasons: dict[str, int] = {}
    for topic in sizes:
        for value in await read_json(bootstrap, topic, until=lambda vs: True, timeout=10, quiet_after=1):
            reason = str(value.get("reason") or value.get("error") or value)[:160] if isinstance(value, dict) \
                else str(value)[:160]
            reasons[reason] = reasons.get(reason, 0) + 1
    return sizes, dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:8])


async def app_lag(bootstrap: str, group: str, prefix: str, topics: Iterable[str]) -> int:
    """How far the app whose Faust group is ``group`` is behind on ``topics`` (named without the
    prefix): each topic in the group(s) that read it, Faust's or a direct stage's (docs/adr/0028)."""
    from stream_app.flows import AppGroups
    from stream_app.settings import load_settings

    groups = AppGroups.of(load_settings(topic_prefix=prefix, kafka_bootstrap_servers=bootstrap), group)
    return sum((await groups.lag(bootstrap, [prefix + topic for topic in topics])).values())


async def run_stage_until(stage: Any, done: Callable[[], bool], timeout: float = 60, settle: float = 0.0) -> None:
    """Run a direct stage (``stage.run()``) until ``done()``, then ``settle`` seconds more (its last
    commit), then stop it; its failure, or ``done()`` not reached in time, fails the test."""
    task = asyncio.create_task(stage.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not done():
            if task.done():
                task.result()
            assert asyncio.get_running_loop().time() < deadline, "the stage did not get there in time"
            await asyncio.sleep(0.2)
        await asyncio.sleep(settle)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
