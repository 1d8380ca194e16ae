"""A direct table stage's batch and table without a broker (docs/adr/0038): rows read once per
batch as working copies, the sends' acks before any table write, one changelog record per changed
row in Faust's encoding, then the local store with the offsets after them."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from stream_app.direct import DirectEvent
from stream_app.direct_table import DirectTable, TableBatch, table_key
from stream_app.replicated import MemoryEntries


class Producer:
    """Records what is produced; each ack names the next offset of its partition."""

    def __init__(self, log: list[str]) -> None:
        self.log, self.records, self.offsets = log, [], {}

    async def send(self, topic: str, key: bytes, value: bytes | None, partition: int | None, *_: Any) -> Any:
        self.records.append((topic, partition, key, value))
        offset = self.offsets.get(partition, 100)
        self.offsets[partition] = offset + 1
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        ack.set_result(SimpleNamespace(offset=offset))
        self.log.append(f"changelog {key.decode()}")
        return ack


class Owned:
    def __init__(self) -> None:
        self.changelogs: list[str] = []

    def changelog(self, name: str) -> None:
        self.changelogs.append(name)


def table(log: list[str]) -> DirectTable:
    app = SimpleNamespace(conf=SimpleNamespace(id="app-v1", tabledir="/nonexistent"), owned=Owned(),
                          producer=Producer(log), settings=SimpleNamespace(store="memory://"))
    made = DirectTable(app, "customer_master")  # type: ignore[arg-type]
    made._stores = {0: MemoryEntries(), 1: MemoryEntries()}
    return made


def event(partition: int, offset: int = 0) -> DirectEvent:
    return DirectEvent(b"k", {}, "customer_sync.merge", partition, offset)


def test_the_changelog_is_named_and_encoded_as_a_faust_tables() -> None:
    rows = table([])
    assert rows.changelog == "app-v1-customer_master-changelog"
    assert rows.app.owned.changelogs == ["app-v1-customer_master-changelog"]
    assert table_key("c-1") == '"c-1"'


def test_a_batch_reads_a_row_once_and_writes_it_once_after_every_ack() -> None:
    async def run() -> None:
        log: list[str] = []
        rows = table(log)
        rows._stores[1].apply([(b'"c-1"', json.dumps({"n": 1}).encode())], 7)

        async def send(topic: Any, key: str, value: Any) -> Any:
            ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.01, lambda: (log.append(f"ack {key}"), ack.set_result(None)))
            return ack

        batch = TableBatch(send)
        first = batch.get(rows, "c-1", event(1))
        first["n"] += 1
        batch.put(rows, "c-1", first, event(1))
        again = batch.get(rows, "c-1", event(1, 1))
        assert again is first and again["n"] == 2
        assert rows.get("c-1", 1) == {"n": 1}, "the table is untouched until the batch settles"
        again["n"] += 1
        batch.put(rows, "c-1", again, event(1, 1))
        batch.put(rows, "c-2", {"n": 9}, event(0))
        await batch.send(SimpleNamespace(), "sink-1", {})
        await batch.settle()
        assert log[0] == "ack sink-1", log
        assert sorted(log[1:]) == ['changelog "c-1"', 'changelog "c-2"']
        produced = rows.app.producer.records
        assert [(p, k, json.loads(v)) for _, p, k, v in produced] == [(1, b'"c-1"', {"n": 3}), (0, b'"c-2"', {"n": 9})]
        assert rows.get("c-1", 1) == {"n": 3} and rows.get("c-2", 0) == {"n": 9}
        assert rows._stores[1].next_offset() is None  # a memory store keeps no offset; a disk store does

    asyncio.run(run())


def test_a_deleted_row_is_a_tombstone_and_a_forgotten_one_is_not_written() -> None:
    async def run() -> None:
        rows = table([])
        rows._stores[0].apply([(b'"gone"', b'{"n": 1}'), (b'"kept"', b'{"n": 1}')], 3)

        async def send(topic: Any, key: str, value: Any) -> Any:
            raise AssertionError("nothing is sent")

        batch = TableBatch(send)
        batch.put(rows, "gone", None, event(0))
        changed = batch.get(rows, "kept", event(0))
        changed["n"] = 5
        batch.put(rows, "kept", changed, event(0))
        batch.forget(rows, "kept")
        assert batch.get(rows, "kept", event(0)) == {"n": 1}, "forgotten: read from the table again"
        await batch.settle()
        assert [(k, v) for _, _, k, v in rows.app.producer.records] == [(b'"gone"', None)]
        assert rows.get("gone", 0) is None and rows.get("kept", 0) == {"n": 1}

    asyncio.run(run())


def test_a_partition_revoked_while_its_rows_were_written_is_left_to_its_new_owner() -> None:
    async def run() -> None:
        rows = table([])
        batch = TableBatch(lambda *a: None)  # type: ignore[arg-type, return-value]
        batch.put(rows, "c-1", {"n": 1}, event(1))
        rows.release(1)
        await batch.settle()
        assert rows.app.producer.records[0][1] == 1, "the changelog still gets the row"
        assert not rows.holds(1) and rows.holds(0)

    asyncio.run(run())


def test_the_key_partitioner_puts_keys_where_kafkas_default_does() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    from stream_app.app import KeyPartitioner

    ours, theirs = KeyPartitioner(), DefaultPartitioner()
    for n in range(2_000):
        key = f"customer-{n}".encode()
        for partitions in ([0, 1, 2, 3], list(range(12))):
            assert ours(key, partitions, partitions) == theirs(key, partitions, partitions)
            assert ours(key, partitions, partitions) == theirs(key, partitions, partitions)  # remembered
    assert ours(None, [0, 1], [1]) == 1


async def test_a_start_up_step_that_fails_is_tried_again_until_it_succeeds(monkeypatch: Any) -> None:
    from stream_app import direct

    monkeypatch.setattr(direct, "RETRY_DELAY", 0.01)
    stage = direct.DirectStage.__new__(direct.DirectStage)  # only what until_done reads
    stage.flow, stage.stage, stage.state = "customer_sync", "merge", "starting"
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("broker away")
        return "done"

    assert await stage.until_done("creating the changelog topics", flaky) == "done"
    assert len(calls) == 3 and stage.state == "restarting"


async def test_the_stage_says_joining_then_recovering_until_the_rows_of_its_partitions_are_read() -> None:
    from aiokafka import TopicPartition

    from stream_app.direct_table import DirectTableStage, _Keep

    rows = table([])
    rows._stores = {}  # holds nothing yet
    read: list[int] = []

    async def recover(partition: int, kafka: Any = None) -> int:
        read.append(partition)
        rows._stores[partition] = MemoryEntries()
        return 0

    rows.recover = recover  # type: ignore[method-assign]
    stage = DirectTableStage.__new__(DirectTableStage)  # only what the states need
    stage.tables, stage.owned, stage.floors, stage.lock = [rows], set(), {}, asyncio.Lock()
    stage.group = "app-v1.customer_sync.merge"
    stage.app = SimpleNamespace(settings=SimpleNamespace(kafka_bootstrap_servers="unused:9092"))
    stage.state = stage.subscribed_state
    keep = _Keep(stage, SimpleNamespace())

    await stage._recovered(sorted(stage.owned))  # the loop runs before the group has answered
    assert stage.state == "joining"
    await keep.on_partitions_assigned([TopicPartition("t.customer_sync.merge", 0), TopicPartition("t.customer_sync.merge", 1)])
    assert stage.state == "recovering"
    await stage._recovered(sorted(stage.owned))
    assert stage.state == "consuming" and read == [0, 1]

    # a rebalance (aiokafka revokes everything, then assigns the new set): partition 1 moved away
    await keep.on_partitions_revoked([TopicPartition("t.customer_sync.merge", 0), TopicPartition("t.customer_sync.merge", 1)])
    await keep.on_partitions_assigned([TopicPartition("t.customer_sync.merge", 0)])
    assert stage.state == "recovering" and stage.owned == {0}
    await stage._recovered(sorted(stage.owned))
    assert stage.state == "consuming" and read == [0, 1, 0]
    await keep.on_partitions_revoked([TopicPartition("t.customer_sync.merge", 0)])
    await keep.on_partitions_assigned([])  # more workers than partitions: ready with none
    assert stage.state == "consuming"
