"""`stream-app replay` on the real broker: dry run, offsets by number and by time, refusal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.direct import direct_group
from tests.support.kafka import create_topics, produce_json
from tests.support.worker import STREAM_APP

pytestmark = pytest.mark.integration


def replay(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STREAM_APP, "replay", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(2)}
    finally:
        await consumer.stop()


async def consume_all(bootstrap: str, group: str, topic: str, count: int) -> None:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        seen = 0
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000)
            seen += sum(len(v) for v in batch.values())
        await consumer.commit()
    finally:
        await consumer.stop()


async def test_replay_resets_offsets_after_a_dry_run(app_env: dict[str, str]) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    # a source topic is read by the customer sync's direct ingest stage, in a group of its own
    group = direct_group(app_env["CONNECT_APP_ID"], "customer_sync", "ingest")
    topic = f"{prefix}src.tims.customer"
    await create_topics(bootstrap, [topic], partitions=2)
    await produce_json(bootstrap, topic, [(f"k{i}", {"i": i}) for i in range(20)])
    middle = int(time.time() * 1000)
    await asyncio.sleep(1.2)
    await produce_json(bootstrap, topic, [(f"k{i}", {"i": i}) for i in range(20, 30)])
    await consume_all(bootstrap, group, topic, 30)
    before = await committed(bootstrap, group, topic)
    assert sum(before.values()) == 30

    dry = replay(app_env, "--topic", "src.tims.customer", "--from-offset", "0", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "total: 30 messages to reprocess" in dry.stdout and "nothing changed" in dry.stdout
    assert await committed(bootstrap, group, topic) == before

    by_time = replay(app_env, "--topic", "src.tims.customer", "--from-time",
                     time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(middle / 1000 + 1)) + "Z")
    assert by_time.returncode == 0, by_time.stderr
    assert "total: 10 messages to reprocess" in by_time.stdout
    middle_offsets = await committed(bootstrap, group, topic)
    assert sum(middle_offsets.values()) == 20

    one = replay(app_env, "--topic", topic, "--partition", "1", "--from-offset", "0")
    assert one.returncode == 0, one.stderr
    after = await committed(bootstrap, group, topic)
    assert after == {0: middle_offsets[0], 1: 0}


async def test_replay_refuses_while_workers_run(app_env: dict[str, str]) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    group = direct_group(app_env["CONNECT_APP_ID"], "customer_sync", "ingest")
    topic = f"{prefix}src.pardot.prospect"
    await create_topics(bootstrap, [topic], partitions=2)
    member = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group)
    await member.start()
    try:
        await member.getmany(timeout_ms=3000)
        refused = await asyncio.to_thread(replay, app_env, "--topic", topic, "--from-offset", "0")
    finally:
        await member.stop()
    assert refused.returncode == 1
    assert "live members: stop every worker first" in refused.stderr


async def test_a_topic_two_flows_read_is_replayed_in_both_their_groups(app_env: dict[str, str]) -> None:
    bootstrap, prefix, app = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"], app_env["CONNECT_APP_ID"]
    topic = f"{prefix}src.salesforce.Account"  # the customer sync's and the orders' ingest read it
    await create_topics(bootstrap, [topic], partitions=2)
    await produce_json(bootstrap, topic, [(f"k{i}", {"i": i}) for i in range(12)])
    groups = [direct_group(app, "customer_sync", "ingest"), direct_group(app, "orders", "ingest")]
    for group in groups:
        await consume_all(bootstrap, group, topic, 12)
    done = replay(app_env, "--topic", "src.salesforce.Account", "--from-offset", "0")
    assert done.returncode == 0, done.stderr
    for group in groups:
        assert f"total: 12 messages to reprocess by group {group}" in done.stdout
        assert await committed(bootstrap, group, topic) == {0: 0, 1: 0}
    assert await committed(bootstrap, app, topic) == {0: None, 1: None}, "the Faust group does not read it"


def test_bad_arguments_say_what_to_fix(app_env: dict[str, str]) -> None:
    both = replay(app_env, "--topic", "nope.topic", "--from-offset", "0")
    assert both.returncode == 1 and "no topic 'nope.topic'" in both.stderr
