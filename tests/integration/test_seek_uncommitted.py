"""stream_app.faust_fixes on the real broker: a seek to the committed offsets rewinds a partition
the group never committed, so what Faust fetched and dropped is fetched again (ADR 0012)."""

from __future__ import annotations


import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.faust_fixes import seek_to_committed_or_earliest
from tests.support.kafka import create_topics, produce_json
from tests.support.names import unique

pytestmark = pytest.mark.integration


async def test_a_partition_without_a_commit_is_sought_back_to_its_first_message(kafka_bootstrap: str) -> None:
    topic = unique("seek-")
    await create_topics(kafka_bootstrap, [topic], partitions=2)
    await produce_json(kafka_bootstrap, topic, [(f"k{i}", {"i": i}) for i in range(40)])
    committed_tp, fresh_tp = TopicPartition(topic, 0), TopicPartition(topic, 1)

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=f"g-{topic}",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([committed_tp, fresh_tp])
        read: dict[TopicPartition, int] = {}
        while set(read) != {committed_tp, fresh_tp}:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                read[tp] = read.get(tp, 0) + len(records)
        await consumer.commit({committed_tp: 2})
        assert await consumer.position(fresh_tp) > 0  # fetched, never committed

        plain = await consumer.seek_to_committed()
        assert plain[fresh_tp] is None and await consumer.position(fresh_tp) > 0, \
            "aiokafka now rewinds uncommitted partitions itself: the fix may be dropped"

        offsets = await seek_to_committed_or_earliest(consumer)
        assert offsets == {committed_tp: 2, fresh_tp: None}
        assert await consumer.position(committed_tp) == 2
        assert await consumer.position(fresh_tp) == 0
    finally:
        await consumer.stop()
