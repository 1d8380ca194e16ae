"""A direct stage (stream_app/direct.py, docs/adr/0028) on the real broker: where a new group
starts, what it commits, and a batch whose send failed is redone before anything is committed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaTimeoutError

from connectors import kafka_admin
from stream_app.direct import DirectEvent, DirectStage, collect_send, direct_group
from stream_app.settings import load_settings
from tests.support.kafka import create_topics, produce_json, run_stage_until
from tests.support.names import unique

pytestmark = pytest.mark.integration


def fake_app(bootstrap: str, group: str) -> Any:
    """What a direct stage reads of the app: its Faust group id and the settings."""
    settings = load_settings(kafka_bootstrap_servers=bootstrap, flow_batch_size=50, broker_session_timeout=10,
                             broker_heartbeat_interval=1)
    return SimpleNamespace(conf=SimpleNamespace(id=group), settings=settings)


async def test_a_new_group_starts_where_the_faust_group_stands_and_commits_what_it_handled(kafka_bootstrap: str) -> None:
    group, topic = f"test-{unique()}", f"t{unique()}.src.tims.customer"
    await create_topics(kafka_bootstrap, [topic], partitions=2)
    await produce_json(kafka_bootstrap, topic, [(f"k{i}", {"i": i}) for i in range(40)])
    ends = await kafka_admin.end_offsets(kafka_bootstrap, [topic])
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    # The Faust agent read part of partition 0 before the stage moved out of Faust; nothing of 1.
    await kafka_admin.commit_offsets(kafka_bootstrap, group, {p0: 5})
    seen: list[DirectEvent] = []

    async def handle(event: DirectEvent) -> None:
        seen.append(event)

    stage = DirectStage(fake_app(kafka_bootstrap, group), "customer_sync", "ingest", [topic], handle)
    assert stage.group == direct_group(group, "customer_sync", "ingest") == f"{group}.customer_sync.ingest"
    await run_stage_until(stage, lambda: len(seen) >= 40 - 5 and stage.batches > 0)
    await asyncio.sleep(1)

    assert sorted((e.partition, e.offset) for e in seen) == sorted(
        [(0, o) for o in range(5, ends[p0])] + [(1, o) for o in range(ends[p1])])
    assert all(isinstance(e.value, dict) and e.key.startswith(b"k") for e in seen)
    assert await kafka_admin.committed_offsets(kafka_bootstrap, stage.group) == ends
    assert await kafka_admin.committed_offsets(kafka_bootstrap, group) == {p0: 5}, "the Faust group is left alone"


async def test_a_batch_whose_send_failed_is_redone_and_committed_only_once_sent(kafka_bootstrap: str) -> None:
    group, topic = f"test-{unique()}", f"t{unique()}.src.pardot.prospect"
    out = f"{topic}.out"
    await create_topics(kafka_bootstrap, [topic, out], partitions=1)
    await produce_json(kafka_bootstrap, topic, [(f"k{i}", {"i": i}) for i in range(11)])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    handled: list[int] = []
    failures = [1]
    committed_while_failing: list[dict[TopicPartition, int]] = []

    async def handle(event: DirectEvent) -> None:
        handled.append(event.offset)
        if event.offset == 3 and failures:
            failures.pop()
            committed_while_failing.append(await kafka_admin.committed_offsets(kafka_bootstrap, stage.group))
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(KafkaTimeoutError("simulated: the broker did not ack"))
            collect_send(failed)
            return
        collect_send(await producer.send(out, b"x", key=event.key))

    stage = DirectStage(fake_app(kafka_bootstrap, group), "customer_sync", "ingest", [topic], handle)
    try:
        await run_stage_until(stage, lambda: stage.batches > 0 and 10 in handled[handled.index(3) + 1:] if 3 in handled else False)
        await asyncio.sleep(1)
    finally:
        await producer.stop()

    assert committed_while_failing == [{}], "nothing is committed before the failed batch is redone"
    assert handled.count(0) == 2 and handled.count(3) == 2, "the whole batch is redone"
    assert await kafka_admin.committed_offsets(kafka_bootstrap, stage.group) == {TopicPartition(topic, 0): 11}
    assert sum((await kafka_admin.end_offsets(kafka_bootstrap, [out])).values()) == len(handled) - 1, (
        "every handled record was sent, the redone ones again (at least once), but the failed send")
