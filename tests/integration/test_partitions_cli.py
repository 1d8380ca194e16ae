"""`stream-app partitions --to N` on the real broker: it grows the app's own topics (not another
environment's, not the one-partition ones), and refuses while workers run, while they have
messages left to read (unless --force), and when asked for fewer partitions than a topic has."""

from __future__ import annotations

import asyncio
import os
import subprocess
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from connectors.kafka_admin import KafkaAdmin
from tests.support.kafka import produce_json
from tests.support.names import unique
from tests.support.worker import STREAM_APP

pytestmark = pytest.mark.integration


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STREAM_APP, "partitions", *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120)


async def counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    async with KafkaAdmin(bootstrap) as kafka:
        found: dict[str, int] = {}
        for tp in await kafka.partitions(topics):
            found[tp.topic] = found.get(tp.topic, 0) + 1
    return found


async def test_partitions_grow_the_apps_topics_only_when_it_is_safe(app_env: dict[str, str]) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    env: dict[str, Any] = {**app_env, "CONNECT_TOPIC_PARTITIONS": "2"}
    owned = [f"{prefix}{name}" for name in ("src.tims.customer", "sink.tims.customer", "dlq.tims",
                                            "customer_sync.merge")]
    kept = [f"{prefix}state.customer_sync.erased", f"{unique('other')}.src.tims.customer"]
    async with KafkaAdmin(bootstrap) as kafka:
        await kafka.ensure_topics(owned + kept[1:], partitions=2)
        await kafka.ensure_topics(kept[:1], partitions=1, compacted=True)

    dry = cli(env, "--to", "4", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert all(f"{topic}: 2 → 4 partitions" in dry.stdout for topic in owned), dry.stdout
    assert not any(topic in dry.stdout for topic in kept) and "nothing changed" in dry.stdout

    shrink = cli(env, "--to", "1", "--yes")
    assert shrink.returncode == 1 and "cannot take partitions away" in shrink.stderr, shrink.stderr

    # a worker of the app's group is running: refused
    consumer = AIOKafkaConsumer(owned[0], bootstrap_servers=bootstrap, group_id=app_env["CONNECT_APP_ID"])
    await consumer.start()
    try:
        await asyncio.wait_for(consumer.getmany(timeout_ms=2000), 20)
        running = await asyncio.to_thread(cli, env, "--to", "4", "--yes")
    finally:
        await consumer.stop()
    assert running.returncode == 1 and "workers are running" in running.stderr, running.stderr

    # messages the workers have not read: refused, unless --force
    await produce_json(bootstrap, owned[0], [("k", {"n": 1}), ("j", {"n": 2})])
    behind = cli(env, "--to", "4", "--yes")
    assert behind.returncode == 1 and "left to read" in behind.stderr, behind.stderr
    assert await counts(bootstrap, owned) == dict.fromkeys(owned, 2), "a refused change changed nothing"

    done = cli(env, "--to", "4", "--yes", "--force")
    assert done.returncode == 0, done.stderr
    assert "CONNECT_TOPIC_PARTITIONS=4" in done.stdout and "stream-app rebuild" in done.stdout
    assert await counts(bootstrap, owned + kept) == {**dict.fromkeys(owned, 4), kept[0]: 1, kept[1]: 2}
    again = cli(env, "--to", "4", "--dry-run")
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout
