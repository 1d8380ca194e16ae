"""A direct table stage (stream_app/direct_table.py, docs/adr/0038) on the real broker: its rows
are right after a restart on its own local store, after losing the store (read from the
changelog), and when another stage instance takes a partition over (cold, or warm from its
standby copy); the changelog is what a Faust table's would be."""

from __future__ import annotations

import asyncio
import json
import shutil
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from stream_app.direct import DirectEvent
from stream_app.direct_table import DirectTable, DirectTableStage, TableBatch
from stream_app.rebuild import read_table
from stream_app.settings import load_settings
from tests.support.kafka import create_topics, produce_json, read_json, run_stage_until
from tests.support.names import unique

pytestmark = pytest.mark.integration


class Producer:
    """The app producer's ``send`` (Faust's argument order) over aiokafka's."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   timestamp: Any, headers: Any) -> Any:
        return await self.producer.send(topic, value, key=key, partition=partition)


class Owned:
    def changelog(self, name: str) -> None:
        return None


def fake_app(bootstrap: str, group: str, tabledir: Path, producer: AIOKafkaProducer, standbys: int = 0) -> Any:
    settings = load_settings(kafka_bootstrap_servers=bootstrap, flow_batch_size=50, broker_session_timeout=10,
                             broker_heartbeat_interval=1, topic_partitions=2, table_standby_replicas=standbys)
    return SimpleNamespace(conf=SimpleNamespace(id=group, tabledir=str(tabledir)), settings=settings,
                           owned=Owned(), producer=Producer(producer))


class Counting:
    """A stage that counts the messages per key in its table and sends each new count out."""

    def __init__(self, bootstrap: str, group: str, topic: str, out: str, tabledir: Path,
                 producer: AIOKafkaProducer, standbys: int = 0) -> None:
        self.app = fake_app(bootstrap, group, tabledir, producer, standbys)
        self.table = DirectTable(self.app, "counts")
        self.out, self.handled = out, 0

        async def send(topic: Any, key: str, value: Any) -> Any:
            return await producer.send(topic, json.dumps(value).encode(), key=key.encode())

        self.stage = DirectTableStage(self.app, "test", "merge", [topic], self.handle, [self.table], send)

    async def handle(self, batch: TableBatch, event: DirectEvent) -> None:
        key = event.key.decode() if event.key else ""
        row = batch.get(self.table, key, event) or {"n": 0}
        row["n"] += 1
        await batch.send(self.out, key, {"key": key, "n": row["n"]})
        batch.put(self.table, key, row, event)
        self.handled += 1


@asynccontextmanager
async def stage_topics(bootstrap: str) -> AsyncIterator[tuple[str, str, str, AIOKafkaProducer]]:
    """A group, its two-partition input topic, an output topic and a started producer."""
    group, topic, out = f"test-{unique()}", f"t{unique()}.merge", f"t{unique()}.out"
    await create_topics(bootstrap, [topic, out], partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        yield group, topic, out, producer
    finally:
        await producer.stop()


async def test_rows_survive_a_restart_a_lost_store_and_a_take_over(kafka_bootstrap: str, tmp_path: Path) -> None:
    keys = [f"k{i}" for i in range(20)]
    async with stage_topics(kafka_bootstrap) as (group, topic, out, producer):
        async def round_of(n: int) -> None:
            await produce_json(kafka_bootstrap, topic, [(key, {"round": n}) for key in keys])

        # 1. two rounds, one stage instance on its own store
        await round_of(1)
        await round_of(2)
        first = Counting(kafka_bootstrap, group, topic, out, tmp_path / "a", producer)
        await run_stage_until(first.stage, lambda: first.handled >= 40, timeout=90, settle=1.5)
        changelog = first.table.changelog
        assert changelog == f"{group}-counts-changelog"
        stored = await read_table(kafka_bootstrap, changelog)
        assert {json.loads(k): json.loads(v) for k, v in stored.items()} == {key: {"n": 2} for key in keys}

        # 2. restarted on the same store: reads only what the changelog got since, counts on
        await round_of(3)
        again = Counting(kafka_bootstrap, group, topic, out, tmp_path / "a", producer)
        await run_stage_until(again.stage, lambda: again.handled >= 20, timeout=90, settle=1.5)
        assert again.handled == 20, "only the new round is handled"

        # 3. the store lost: the rows come back from the changelog
        shutil.rmtree(tmp_path / "a")
        await round_of(4)
        fresh = Counting(kafka_bootstrap, group, topic, out, tmp_path / "a", producer)
        await run_stage_until(fresh.stage, lambda: fresh.handled >= 20, timeout=90, settle=1.5)

        # 4. another machine's store, stale for every partition: it takes over and reads what it missed
        await round_of(5)
        other = Counting(kafka_bootstrap, group, topic, out, tmp_path / "b", producer)
        await run_stage_until(other.stage, lambda: other.handled >= 20, timeout=90, settle=1.5)
    counts = await read_json(kafka_bootstrap, out, until=lambda values: len(values) >= 100, timeout=30)
    latest: dict[str, int] = {}
    for value in counts:
        latest[value["key"]] = max(latest.get(value["key"], 0), value["n"])
    assert latest == {key: 5 for key in keys}
    assert sorted(value["n"] for value in counts if value["key"] == "k0") == [1, 2, 3, 4, 5]
    stored = await read_table(kafka_bootstrap, changelog)
    assert {json.loads(k): json.loads(v) for k, v in stored.items()} == {key: {"n": 5} for key in keys}


async def test_partitions_are_recovered_when_assigned_before_any_record(kafka_bootstrap: str, tmp_path: Path) -> None:
    keys = [f"k{i}" for i in range(20)]
    async with stage_topics(kafka_bootstrap) as (group, topic, out, producer):
        await produce_json(kafka_bootstrap, topic, [(key, {"round": 1}) for key in keys])
        first = Counting(kafka_bootstrap, group, topic, out, tmp_path / "a", producer)
        await run_stage_until(first.stage, lambda: first.handled >= 20, timeout=90, settle=1.5)
        # a worker that lost its store, with nothing new to read: its rows come back all the same
        fresh = Counting(kafka_bootstrap, group, topic, out, tmp_path / "b", producer)
        rows: list[Any] = []

        def recovered() -> bool:  # read while the stage runs (a stopped one closes its stores)
            if not all(fresh.table.holds(p) for p in (0, 1)):
                return False
            rows.extend(row for key in keys for p in (0, 1) if (row := fresh.table.get(key, p)) is not None)
            return True

        await run_stage_until(fresh.stage, recovered, timeout=90)
        assert fresh.handled == 0
        assert sum(fresh.table.recovered.values()) == 20
        assert rows == [{"n": 1}] * 20


async def test_a_standby_takes_a_partition_over_warm(kafka_bootstrap: str, tmp_path: Path) -> None:
    keys = [f"k{i}" for i in range(40)]
    async with stage_topics(kafka_bootstrap) as (group, topic, out, producer):
        a = Counting(kafka_bootstrap, group, topic, out, tmp_path / "a", producer)
        b = Counting(kafka_bootstrap, group, topic, out, tmp_path / "b", producer, standbys=1)
        a_task, b_task = asyncio.create_task(a.stage.run()), asyncio.create_task(b.stage.run())
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while not (a.stage.owned and b.stage.owned):
                assert asyncio.get_running_loop().time() < deadline, "the two did not share the partitions"
                await asyncio.sleep(0.2)
            held_by_a = set(a.stage.owned)
            await produce_json(kafka_bootstrap, topic, [(key, {"round": 1}) for key in keys])
            while a.handled + b.handled < len(keys):
                assert asyncio.get_running_loop().time() < deadline + 30, "not handled in time"
                await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # b's standby reader follows a's changelog
            a_task.cancel()
            await asyncio.gather(a_task, return_exceptions=True)
            await produce_json(kafka_bootstrap, topic, [(key, {"round": 2}) for key in keys])
            while b.handled < len(keys) + (len(keys) - a.handled):
                assert asyncio.get_running_loop().time() < deadline + 90, "b did not take a's partitions over"
                await asyncio.sleep(0.2)
            assert held_by_a <= b.stage.owned
            assert all(b.table.recovered[p] == 0 for p in held_by_a), b.table.recovered
        finally:
            for task in (a_task, b_task):
                task.cancel()
            await asyncio.gather(a_task, b_task, return_exceptions=True)
    counts = await read_json(kafka_bootstrap, out, until=lambda values: len(values) >= 2 * len(keys), timeout=30)
    assert sorted(value["n"] for value in counts if value["key"] == "k0") == [1, 2]
    assert {value["key"] for value in counts if value["n"] == 2} == set(keys)
