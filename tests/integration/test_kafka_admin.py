"""connectors/kafka_admin.py against the real broker: topics, offsets, groups, reading through."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from connectors import kafka_admin
from connectors.kafka_admin import GroupNotEmptyError, KafkaAdmin, KafkaAdminError
from tests.support import names

pytestmark = pytest.mark.integration


def unique(name: str) -> str:
    return f"{names.unique('ka')}.{name}"


async def produce(bootstrap: str, topic: str, records: Iterable[tuple[int, str, int | None]]) -> None:
    """(partition, value, timestamp ms or None) each, acked."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, value, timestamp_ms in records:
            await producer.send_and_wait(topic, value.encode(), key=value.encode(), partition=partition,
                                         timestamp_ms=timestamp_ms)
    finally:
        await producer.stop()


async def retention_ms(bootstrap: str, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    [resource] = response.to_object()["resources"]
    return {e["config_names"]: e["config_value"] for e in resource["config_entries"]}["retention.ms"]


async def test_ensure_topics_creates_the_missing_ones_and_keeps_the_named_ones_forever(kafka_bootstrap: str) -> None:
    source, other = unique("src.tims.customer"), unique("sink.tims.customer")
    created = await kafka_admin.ensure_topics(kafka_bootstrap, [source, other, source], partitions=3,
                                              keep_forever=[source])
    assert created == [source, other]
    assert await kafka_admin.ensure_topics(kafka_bootstrap, [source, other], partitions=3) == []
    assert {source, other} <= await kafka_admin.list_topics(kafka_bootstrap)
    assert await kafka_admin.partitions(kafka_bootstrap, [other, source, unique("missing")]) == [
        *(TopicPartition(other, p) for p in range(3)), *(TopicPartition(source, p) for p in range(3))]
    assert await retention_ms(kafka_bootstrap, source) == "-1"
    assert await retention_ms(kafka_bootstrap, other) != "-1"


async def test_delete_topics_returns_once_they_are_gone(kafka_bootstrap: str) -> None:
    names = [unique("a"), unique("b")]
    await kafka_admin.ensure_topics(kafka_bootstrap, names, partitions=1)
    await kafka_admin.delete_topics(kafka_bootstrap, names)
    assert not set(names) & await kafka_admin.list_topics(kafka_bootstrap)
    assert await kafka_admin.end_offsets(kafka_bootstrap, names) == {}


async def test_offsets_of_existing_and_missing_topics(kafka_bootstrap: str) -> None:
    topic = unique("offsets")
    await kafka_admin.ensure_topics(kafka_bootstrap, [topic], partitions=2)
    await produce(kafka_bootstrap, topic, [(0, "a", None), (0, "b", None), (1, "c", None)])
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    async with KafkaAdmin(kafka_bootstrap) as kafka:
        assert await kafka.end_offsets([topic, unique("missing")]) == {p0: 2, p1: 1}
        assert await kafka.beginning_offsets([topic]) == {p0: 0, p1: 0}
        await kafka.delete_records({p0: 1})
        assert await kafka.beginning_offsets([topic]) == {p0: 1, p1: 0}


async def test_offsets_for_a_time(kafka_bootstrap: str) -> None:
    topic = unique("times")
    await kafka_admin.ensure_topics(kafka_bootstrap, [topic], partitions=2)
    await produce(kafka_bootstrap, topic, [(0, "old", 1_000_000), (0, "new", 2_000_000), (1, "old", 1_000_000)])
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    assert await kafka_admin.offsets_for_time(kafka_bootstrap, [topic], 1_500_000) == {p0: 1, p1: 1}
    assert await kafka_admin.offsets_for_time(kafka_bootstrap, [topic], 0) == {p0: 0, p1: 0}
    assert await kafka_admin.offsets_for_time(kafka_bootstrap, [topic], 3_000_000) == {p0: 2, p1: 1}


async def test_read_to_end_reads_every_partition_from_its_start_or_a_given_offset(kafka_bootstrap: str) -> None:
    topic, empty = unique("read"), unique("empty")
    await kafka_admin.ensure_topics(kafka_bootstrap, [topic, empty], partitions=3)
    await produce(kafka_bootstrap, topic, [(0, "a", None), (0, "b", None), (2, "c", None), (0, "d", None)])

    read = [(r.partition, r.offset, r.value) async for r in kafka_admin.read_to_end(kafka_bootstrap, [topic, empty])]
    assert sorted(read) == [(0, 0, b"a"), (0, 1, b"b"), (0, 2, b"d"), (2, 0, b"c")]
    assert [v for p, _, v in read if p == 0] == [b"a", b"b", b"d"]  # in order within a partition

    since = {TopicPartition(topic, 0): 2, TopicPartition(topic, 2): 1}
    assert [r.value async for r in kafka_admin.read_to_end(kafka_bootstrap, [topic], since=since)] == [b"d"]
    assert [r async for r in kafka_admin.read_to_end(kafka_bootstrap, [empty, unique("missing")])] == []


async def test_commit_committed_and_lag_of_a_group(kafka_bootstrap: str) -> None:
    topic, other, group = unique("lag"), unique("lag-other"), unique("group")
    await kafka_admin.ensure_topics(kafka_bootstrap, [topic, other], partitions=2)
    await produce(kafka_bootstrap, topic, [(0, "a", None), (0, "b", None), (0, "c", None), (1, "d", None)])
    await produce(kafka_bootstrap, other, [(0, "e", None)])
    p0, p1, o0 = TopicPartition(topic, 0), TopicPartition(topic, 1), TopicPartition(other, 0)

    async with KafkaAdmin(kafka_bootstrap) as kafka:
        assert await kafka.committed_offsets(group) == {}
        assert await kafka.lag(group, [topic]) == {p0: 3, p1: 1}  # never committed: from the start
        await kafka.commit_offsets(group, {p0: 1, o0: 0})
        assert await kafka.committed_offsets(group) == {p0: 1, o0: 0}
        assert await kafka.lag(group, [topic]) == {p0: 2, p1: 1}
        assert await kafka.lag(group, [topic], with_committed_topics=True) == {
            p0: 2, p1: 1, o0: 1, TopicPartition(other, 1): 0}
        await kafka.close()  # a closed session opens new clients on its next call
        assert await kafka.live_members(group) == 0


async def test_offsets_of_a_group_with_a_live_member_are_not_set(kafka_bootstrap: str) -> None:
    topic, group = unique("busy"), unique("busy-group")
    await kafka_admin.ensure_topics(kafka_bootstrap, [topic], partitions=1)
    member = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group)
    await member.start()
    try:
        await member.getmany(timeout_ms=3000)  # joins the group
        assert await kafka_admin.live_members(kafka_bootstrap, group) == 1
        with pytest.raises(GroupNotEmptyError, match="has live members") as refused:
            await kafka_admin.commit_offsets(kafka_bootstrap, group, {TopicPartition(topic, 0): 0})
        assert isinstance(refused.value, KafkaAdminError)
    finally:
        await member.stop()


async def test_max_message_bytes_is_the_topics_own_or_the_brokers(kafka_bootstrap: str) -> None:
    own, default = unique("small"), unique("default")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(own, 1, 1, topic_configs={"max.message.bytes": "20000"}),
                                   NewTopic(default, 1, 1)])
    finally:
        await admin.close()
    # a topic created a moment ago may not be in the broker's metadata yet (seen under load)
    deadline = asyncio.get_running_loop().time() + 15
    while len(await kafka_admin.partitions(kafka_bootstrap, [own, default])) < 2:
        assert asyncio.get_running_loop().time() < deadline, "the created topics never appeared"
        await asyncio.sleep(0.2)
    found = await kafka_admin.max_message_bytes(kafka_bootstrap, [own, default, unique("missing")])
    assert found[own] == 20_000 and found[default] >= 1_000_000 and len(found) == 2
