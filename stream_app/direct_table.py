"""Direct table stages: a keyed stage that keeps a table, outside Faust (docs/adr/0038).

A direct stage (``stream_app.direct``) skips Faust's per-message path but keeps no state. The
customer sync's ``merge`` keeps the golden records; through Faust it cost a consumed message, a
table write and its changelog record, each handled one by one. Here the stage keeps its table
itself, the way Faust does, in bulk:

- **The table** (:class:`DirectTable`) is partitioned like the stage's topic. Each partition the
  stage's consumer holds has a local store (RocksDB through rocksdict under
  ``<tables>/direct/<changelog>/<partition>``, or a dict with ``CONNECT_STORE=memory``) and the
  offset of its changelog read so far. The changelog is named as Faust names a table's,
  ``<app id>-<table>-changelog``, with Faust's key and value encoding (JSON), so what reads
  changelogs (rebuild, privacy export, the console) reads it unchanged, and a deployment whose
  Faust agent kept the table goes on from the same records.
- **Recovery.** Before the stage takes records again after it was given partitions, it reads
  each new partition's changelog from the offset its local store kept (from the start when it
  kept none, or when the topic no longer matches it) to the end. The stage reports
  ``recovering`` meanwhile, so ``/readyz`` waits for the rows.
- **A batch** (:class:`TableBatch`, the same ``BatchLike`` a Faust stage's handler gets): each row
  is read once, changed in a working copy by the batch's events in offset order; the batch's
  sends are awaited, then each changed row is written once to the changelog, and once those are
  acked, to the local stores with the changelog offsets; only then are the input offsets
  committed. A batch interrupted anywhere is redone whole by whoever holds its partitions next,
  as with Faust (handlers dedupe redone events).
- **Rebalances.** The consumer's revocation waits for the batch in flight to finish, then closes
  the revoked partitions' stores (kept on disk: a partition that comes back reads only what was
  written since).
- **Standbys.** With ``CONNECT_TABLE_STANDBY_REPLICAS`` ≥ 1 the stage also follows the changelog
  of every partition it does not hold, into warm copies on disk: a partition that moves here
  after a failure or a rolling restart reads only the last records.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from connectors import kafka_admin, kafka_security
from stream_app.codecs import encode
from stream_app.direct import RETRY_DELAY, DirectEvent, DirectStage, _stop_quietly as _stop, collecting_sends
from stream_app.replicated import DiskEntries, MemoryEntries

if TYPE_CHECKING:
    from stream_app.app import ConnectApp

__all__ = ["DirectTable", "DirectTableStage", "TableBatch", "table_key"]

log = logging.getLogger(__name__)
#: records per progress line while a partition is recovered
PROGRESS_EVERY = 100_000


def table_key(key: str) -> str:
    """A key as Faust writes a ``key_type=str`` table's keys to its changelog: JSON text."""
    return json.dumps(key)


Send = Callable[[Any, str, Any], Awaitable[Any]]


class DirectTable:
    """A table kept by a direct table stage: one local store per partition the stage holds."""

    def __init__(self, app: "ConnectApp", name: str) -> None:
        self.app, self.name = app, name
        self.changelog = f"{app.conf.id}-{name}-changelog"
        app.owned.changelog(self.changelog)
        self._stores: dict[int, MemoryEntries | DiskEntries] = {}
        #: changelog records read by the last recovery of each partition (tests, logs)
        self.recovered: dict[int, int] = {}
        #: stores of partitions the stage does not hold, kept warm from the changelog (standbys)
        self._standby: dict[int, MemoryEntries | DiskEntries] = {}

    # -- reading ---------------------------------------------------------------------------------
    def holds(self, partition: int) -> bool:
        return partition in self._stores

    def get(self, key: str, partition: int) -> Any:
        raw = self._stores[partition].get(table_key(key))
        return None if raw is None else json.loads(raw)

    def __len__(self) -> int:
        return sum(len(store) for store in self._stores.values())

    # -- partitions ------------------------------------------------------------------------------
    def _open(self, partition: int) -> MemoryEntries | DiskEntries:
        settings = self.app.settings
        if not str(getattr(settings.store, "value", settings.store)).startswith("rocksdb"):
            return MemoryEntries()
        path = Path(self.app.conf.tabledir) / "direct" / self.changelog / str(partition)
        try:
            return DiskEntries(path)
        except Exception as exc:  # noqa: BLE001 - the partition still works, in memory, read whole
            log.warning("%s[%d]: local store %s not opened (%s: %s); keeping it in memory", self.name, partition,
                        path, type(exc).__name__, exc)
            return MemoryEntries()

    async def recover(self, partition: int, kafka: kafka_admin.KafkaAdmin) -> int:
        """Open the partition's store and read its changelog up to the end, over ``kafka`` (the
        stage's admin client for the assignment); returns the records read."""
        store = self._stores.get(partition) or self._standby.pop(partition, None) or self._open(partition)
        tp = TopicPartition(self.changelog, partition)
        read = 0
        start = (await kafka.beginning_offsets([self.changelog])).get(tp, 0)
        end = (await kafka.end_offsets([self.changelog])).get(tp, 0)
        kept = store.next_offset()
        if kept is not None and not start <= kept <= end:
            log.warning("%s[%d]: the local store read up to offset %d, outside the changelog (%d..%d); "
                        "reading it again from the start", self.name, partition, kept, start, end)
            store.clear()
            kept = None
        since = start if kept is None else kept
        if since < end:
            log.info("%s[%d]: recovering %d changelog records (offsets %d..%d)", self.name, partition,
                     end - since, since, end)
            pending: list[tuple[bytes | None, bytes | None]] = []
            async for record in kafka.read_to_end([self.changelog], since={tp: since}, only=[tp]):
                pending.append((record.key, record.value))
                read += 1
                if len(pending) >= 10_000:
                    store.apply(pending, record.offset + 1)
                    pending = []
                if read % PROGRESS_EVERY == 0:
                    log.info("%s[%d]: %d of about %d records recovered", self.name, partition, read, end - since)
            store.apply(pending, end)
        self._stores[partition] = store
        self.recovered[partition] = read
        log.info("%s[%d]: ready, %d rows (%d changelog records read)", self.name, partition, len(store), read)
        return read

    def release(self, partition: int) -> None:
        """The stage no longer holds the partition: close its store (kept on disk)."""
        store = self._stores.pop(partition, None)
        if store is not None:
            store.close()

    def close(self) -> None:
        for partition in list(self._stores):
            self.release(partition)
        for store in self._standby.values():
            store.close()
        self._standby.clear()

    # -- standbys --------------------------------------------------------------------------------
    def standby_offset(self, partition: int) -> int | None:
        """Where the warm copy of a partition the stage does not hold has read its changelog to."""
        if partition in self._stores:  # held meanwhile: its own store is open
            return None
        if partition not in self._standby:
            self._standby[partition] = self._open(partition)
        return self._standby[partition].next_offset()

    def standby_apply(self, partition: int, records: list[Any]) -> None:
        """Changelog records of a partition the stage does not hold, into its warm copy."""
        if records and partition not in self._stores:
            if partition not in self._standby:
                self._standby[partition] = self._open(partition)
            self._standby[partition].apply([(r.key, r.value) for r in records], records[-1].offset + 1)

    # -- writing ---------------------------------------------------------------------------------
    async def write(self, rows: dict[tuple[int, str], Any]) -> None:
        """Write changed rows (``(partition, key) → value``, None deletes) to the changelog, wait for
        the acks, then to the local stores with the offsets after them."""
        producer = self.app.producer
        sent = []
        for (partition, key), value in rows.items():
            key_bytes, data = table_key(key).encode(), (None if value is None else encode(value))
            sent.append((partition, key_bytes, data,
                         await producer.send(self.changelog, key_bytes, data, partition, None, None)))
        acks = await asyncio.gather(*(future for *_, future in sent))
        applied: dict[int, tuple[list[tuple[bytes | None, bytes | None]], int]] = {}
        for (partition, key_bytes, data, _), ack in zip(sent, acks):
            records, offset = applied.setdefault(partition, ([], 0))
            records.append((key_bytes, data))
            applied[partition] = (records, max(offset, getattr(ack, "offset", -1) + 1))
        for partition, (records, next_offset) in applied.items():
            store = self._stores.get(partition)
            if store is not None:  # else revoked meanwhile: the new owner reads the changelog
                store.apply(records, next_offset)


class TableBatch:
    """The working state of one batch of a direct table stage (``topologies.flow.BatchLike``)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._rows: dict[tuple[str, str], Any] = {}
        self._changed: dict[tuple[str, str], tuple[DirectTable, int]] = {}
        self._sent: list[Any] = []
        self.notes: dict[Any, Any] = {}

    def get(self, table: DirectTable, key: str, event: DirectEvent) -> Any:
        slot = (table.name, key)
        if slot not in self._rows:
            self._rows[slot] = table.get(key, event.partition)  # decoded afresh: a working copy
        return self._rows[slot]

    def put(self, table: DirectTable, key: str, value: Any, event: DirectEvent) -> None:
        slot = (table.name, key)
        self._rows[slot] = value
        self._changed[slot] = (table, event.partition)

    def forget(self, table: DirectTable, key: str) -> None:
        self._rows.pop((table.name, key), None)
        self._changed.pop((table.name, key), None)

    async def send(self, topic: Any, key: str, value: Any) -> None:
        self._sent.append(await self._send(topic, key, value))

    async def settle(self) -> None:
        """The sends' acks, then each changed row once to its table."""
        if self._sent:
            await asyncio.gather(*self._sent)
        by_table: dict[str, tuple[DirectTable, dict[tuple[int, str], Any]]] = {}
        for (name, key), (table, partition) in self._changed.items():
            by_table.setdefault(name, (table, {}))[1][(partition, key)] = self._rows[(name, key)]
        for table, rows in by_table.values():
            await table.write(rows)
        self._sent.clear()
        self._changed.clear()


BatchHandle = Callable[[TableBatch, DirectEvent], Awaitable[None]]


class DirectTableStage(DirectStage):
    """A keyed stage over its own tables: batches as :class:`TableBatch`, partitions recovered
    as soon as they are given (before records are taken), revocation after the batch in flight."""

    def __init__(self, app: "ConnectApp", flow: str, stage: str, topics: list[str], handle: BatchHandle,
                 tables: list[DirectTable], send: Send,
                 before: Callable[[], Awaitable[None]] | None = None) -> None:
        if len(topics) != 1:
            raise ValueError(f"direct table stage {flow}.{stage} reads {topics}: its tables are partitioned like "
                             "one topic")
        super().__init__(app, flow, stage, topics, handle, before)  # type: ignore[arg-type]
        self.batch_handle, self.tables, self.send = handle, tables, send
        #: held while a batch is handled, settled and committed; revocation waits for it
        self.lock = asyncio.Lock()
        #: partitions assigned and not revoked since (recovered or not yet)
        self.owned: set[int] = set()
        #: closed while an operator has the flow paused (stream_app/control.py): the stage waits
        #: before it takes a batch, not inside one, so a rebalance meanwhile is not held up
        self.gate: asyncio.Event | None = None

    def listener(self, consumer: AIOKafkaConsumer) -> ConsumerRebalanceListener:
        # a new consumer (the first, or one started again after a failure) holds nothing yet:
        # what the last one held may have moved on meanwhile, so it is read again when it comes back
        self.owned.clear()
        for table in self.tables:
            table.close()
        return _Keep(self, consumer)

    async def _one_batch(self, consumer: AIOKafkaConsumer) -> None:
        if self.gate is not None and not self.gate.is_set():
            await self.gate.wait()
        # every partition held is recovered before records are taken, not at its first record:
        # `/readyz` says ready only once the rows are there, so a rolling restart waits for them
        async with self.lock:
            await self._recovered(sorted(self.owned))
        fetched = await consumer.getmany(timeout_ms=1000, max_records=self.batch_size)
        if not fetched:
            return
        async with self.lock:
            fetched = {tp: records for tp, records in fetched.items() if tp.partition in self.owned}
            await self._recovered([tp.partition for tp in fetched])  # assigned during that fetch
            batch = TableBatch(self.send)
            with collecting_sends() as sends:
                for event in self.events(fetched):
                    await self.batch_handle(batch, event)
            try:
                await asyncio.gather(*sends)
                await batch.settle()
            except KafkaError as exc:
                await self.redo(consumer, fetched, exc)
                return
            await self.commit(consumer, fetched)

    #: until the group gives the stage its partitions (none is an answer too)
    subscribed_state = "joining"

    def missing(self, partitions: Iterable[int]) -> list[tuple[DirectTable, int]]:
        """The (table, partition) pairs of ``partitions`` not recovered yet."""
        return [(table, partition) for partition in partitions for table in self.tables if not table.holds(partition)]

    async def _recovered(self, partitions: list[int]) -> None:
        """Recover what the stage's tables lack of ``partitions``, over one admin client; the
        stage reports ``recovering`` meanwhile."""
        missing = self.missing(partitions)
        if missing:
            self.state = "recovering"
            async with kafka_admin.KafkaAdmin(self.app.settings.kafka_bootstrap_servers,
                                              client_id=f"{self.group}.recovery") as kafka:
                for table, partition in missing:
                    await table.recover(partition, kafka)
        if self.state == "recovering" and not self.missing(self.owned):
            self.state = "consuming"  # (``joining`` ends in the assignment callback, below)

    async def run(self) -> None:
        settings = self.app.settings
        # created up front by `stream-app worker`; here too for a worker started otherwise
        await self.until_done("creating the changelog topics", lambda: kafka_admin.ensure_topics(
            settings.kafka_bootstrap_servers, [t.changelog for t in self.tables], partitions=settings.topic_partitions,
            replication=settings.topic_replication_factor, compacted=True))
        standby = asyncio.create_task(self._follow_standbys()) if settings.table_standby_replicas > 0 else None
        try:
            await super().run()
        finally:
            if standby is not None:
                standby.cancel()
                await asyncio.gather(standby, return_exceptions=True)
            for table in self.tables:
                table.close()

    async def _follow_standbys(self) -> None:
        """Keep a warm copy of every partition this stage does not hold (with
        ``CONNECT_TABLE_STANDBY_REPLICAS`` ≥ 1): a partition that moves here then reads only the
        last few changelog records. Started again after a failure."""
        bootstrap = self.app.settings.kafka_bootstrap_servers
        tables = {table.changelog: table for table in self.tables}
        while True:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                        auto_offset_reset="earliest", client_id=f"{self.group}.standby",
                                        **kafka_security.client_options())
            try:
                await consumer.start()
                partitions = sorted({tp.partition for tp in await kafka_admin.partitions(bootstrap, list(tables))})
                following: set[int] = set()
                while True:
                    wanted = {p for p in partitions if p not in self.owned}
                    if wanted != following:
                        tps = [TopicPartition(name, p) for name in tables for p in sorted(wanted)]
                        consumer.assign(tps)
                        for tp in tps:
                            kept = tables[tp.topic].standby_offset(tp.partition)
                            if kept is None:
                                await consumer.seek_to_beginning(tp)
                            else:
                                consumer.seek(tp, kept)
                        following = wanted
                    fetched = await consumer.getmany(timeout_ms=1000, max_records=5000)
                    async with self.lock:
                        for tp, records in fetched.items():
                            if tp.partition not in self.owned:
                                tables[tp.topic].standby_apply(tp.partition, records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - standbys only save recovery time
                log.warning("direct stage %s.%s: standby reader failed (%s: %s); starting again in %.0f s", self.flow,
                            self.stage, type(exc).__name__, exc, RETRY_DELAY)
                await asyncio.sleep(RETRY_DELAY)
            finally:
                await _stop(consumer)


class _Keep(ConsumerRebalanceListener):
    """Revocation after the batch in flight; the stage's partitions and their floors (as
    ``stream_app.direct``'s take-over)."""

    def __init__(self, stage: DirectTableStage, consumer: AIOKafkaConsumer) -> None:
        self.stage, self.consumer = stage, consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.stage.lock:
            for tp in revoked:
                self.stage.owned.discard(tp.partition)
                for table in self.stage.tables:
                    table.release(tp.partition)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        floors = self.stage.floors
        for tp in assigned:
            self.stage.owned.add(tp.partition)
            if tp in floors and await self.consumer.committed(tp) is None:
                self.consumer.seek(tp, floors[tp])
        # told at once (the stage reads the rows before its next fetch): `/readyz` must not say
        # ready in between
        self.stage.state = "recovering" if self.stage.missing(self.stage.owned) else "consuming"
