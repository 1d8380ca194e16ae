"""Kafka cluster operations: topics, offsets, consumer groups, reading partitions through.

The sources (connectors/) and the worker's commands (stream_app/: rebuild, replay, dlq, the lag
metric) need the same few operations; they all live here so that aiokafka's quirks are handled
once. :class:`KafkaAdmin` keeps one admin client and one group-less consumer (for offset
lookups) across a series of calls, for callers that ask often (the lag metric) or ask many
things at once; the module-level functions of the same names open one for a single call.

Offset operations take topic names and answer per partition of the topics that exist; a topic
that does not exist has no partitions, never an error. Code elsewhere does not reach into
aiokafka's private attributes: an operation that needs one belongs here, with a comment why.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.protocol.metadata import MetadataRequest

from connectors.kafka_security import client_options

__all__ = [
    "KafkaAdmin", "follow", "KafkaAdminError", "GroupNotEmptyError", "topic_configs",
    "list_topics", "ensure_topics", "delete_topics", "partitions", "beginning_offsets", "end_offsets",
    "offsets_for_time", "committed_offsets", "commit_offsets", "live_members", "lag", "read_to_end",
    "delete_records", "max_message_bytes",
]


class KafkaAdminError(RuntimeError):
    """A cluster operation could not be done; the message says why."""


class GroupNotEmptyError(KafkaAdminError):
    """Kafka lets a group's offsets be set from outside only while the group has no member."""


def topic_configs(*, compacted: bool = False, keep_forever: bool = False) -> dict[str, str]:
    """A new topic's settings: compacted (last value per key), kept forever (``retention.ms=-1``,
    for topics a state rebuild reads from the start), or the broker's default retention."""
    if compacted:
        return {"cleanup.policy": "compact"}
    return {"retention.ms": "-1"} if keep_forever else {}


@contextlib.asynccontextmanager
async def _consumer(bootstrap: str, group: str | None, client_id: str) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = await _started_consumer(bootstrap, group, client_id)
    try:
        yield consumer
    finally:
        await consumer.stop()


async def _started_consumer(bootstrap: str, group: str | None, client_id: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", client_id=client_id,
                                **client_options())
    await consumer.start()
    # aiokafka 0.14: stopping a consumer before its coordinator task ever ran raises CancelledError
    await asyncio.sleep(0)
    return consumer


class KafkaAdmin:
    """A session of cluster operations over one admin client and one offsets consumer, both
    started on first use and stopped by :meth:`close` (or ``async with``). One task at a time."""

    def __init__(self, bootstrap: str, client_id: str = "connect-admin") -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> KafkaAdmin:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the clients; the next operation starts new ones."""
        offsets, admin = self._offsets, self._admin
        self._offsets = self._admin = None
        try:
            if offsets is not None:
                await offsets.stop()
        finally:
            if admin is not None:
                await admin.close()

    async def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=self.client_id,
                                        **client_options())
            await admin.start()
            self._admin = admin
        return self._admin

    async def _offsets_consumer(self) -> AIOKafkaConsumer:
        if self._offsets is None:
            self._offsets = await _started_consumer(self.bootstrap, None, self.client_id)
        return self._offsets

    # -- topics ------------------------------------------------------------------------------------

    async def list_topics(self) -> set[str]:
        return set(await (await self._admin_client()).list_topics())

    async def ensure_topics(self, names: Iterable[str], *, partitions: int, replication: int = 1,
                            keep_forever: Collection[str] = (), compacted: bool = False) -> list[str]:
        """Create those of ``names`` that do not exist yet (the broker may not auto-create), the
        ``keep_forever`` ones without a time limit; returns the names created. A topic that exists
        keeps its settings."""
        existing = await self.list_topics()
        keep = set(keep_forever)
        new = [NewTopic(name, partitions, replication,
                        topic_configs=topic_configs(compacted=compacted, keep_forever=name in keep))
               for name in dict.fromkeys(names) if name not in existing]
        if new:
            try:
                await (await self._admin_client()).create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another process created it meanwhile
            # so that partitions() and offset lookups see them at once; a client that only produces
            # or consumes would wait for them anyway, hence no error when this gives up
            await self._wait_listed([topic.name for topic in new], listed=True, timeout=30.0)
        return [topic.name for topic in new]

    async def delete_topics(self, names: Iterable[str], timeout: float = 60.0, *, wait: bool = True) -> None:
        """Delete topics and (unless ``wait`` is false) wait until the cluster no longer lists them
        (deletion is asynchronous: recreating a name too early fails)."""
        names = list(dict.fromkeys(names))
        if not names:
            return
        await (await self._admin_client()).delete_topics(names)
        if wait and not await self._wait_listed(names, listed=False, timeout=timeout):
            raise KafkaAdminError(f"topics still not deleted after {timeout:.0f}s: {', '.join(names)}")

    async def add_partitions(self, counts: Mapping[str, int]) -> None:
        """Grow each topic to its count of partitions (Kafka only adds: the existing keys stay where
        they are, new keys may land on the new partitions)."""
        from aiokafka.admin import NewPartitions

        if counts:
            await (await self._admin_client()).create_partitions(
                {name: NewPartitions(total_count=count) for name, count in counts.items()})

    async def _wait_listed(self, names: list[str], *, listed: bool, timeout: float) -> bool:
        """Wait until the cluster's metadata lists all (or none) of ``names``: creation and deletion
        reach it a moment after the controller accepted them. False on timeout."""
        wanted = set(names) if listed else set()
        deadline = time.monotonic() + timeout
        while (set(names) & await self.list_topics()) != wanted:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.25)
        return True

    async def max_message_bytes(self, topics: Iterable[str]) -> dict[str, int]:
        """Each existing topic's ``max.message.bytes``: its own setting, else the broker's
        ``message.max.bytes`` (the broker answers with the value in force). Topics that do not
        exist are left out."""
        names = list(dict.fromkeys(topics))
        if not names:
            return {}
        wanted = {"max.message.bytes": None}
        responses = await (await self._admin_client()).describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, wanted) for name in names])
        found: dict[str, int] = {}
        for response in responses:
            for resource in response.to_object()["resources"]:
                for entry in resource["config_entries"] if not resource["error_code"] else ():
                    if entry["config_names"] == "max.message.bytes" and entry["config_value"]:
                        found[resource["resource_name"]] = int(entry["config_value"])
        return found

    async def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        """Every partition of those ``topics`` that exist, in the order given.

        Asked of the cluster each time, so a topic created a moment ago is seen (a consumer's
        cached metadata would need aiokafka's private ``_client.force_metadata_update()``). The
        metadata request names only these topics and says "do not create them": a request naming
        a missing topic makes a broker with auto-creation create it unless it says so, and the
        admin client's ``describe_topics`` cannot. Describing every topic instead cost the lag
        metric 13 % of a worker's CPU on a cluster of 2,000 topics (docs/adr/0038)."""
        wanted = list(dict.fromkeys(topics))
        if not wanted:
            return []
        admin = await self._admin_client()
        # private: the admin client has no public metadata call that names topics without
        # allowing their creation (MetadataRequest v4+ carries the flag)
        response = await admin._send_request(MetadataRequest(wanted, allow_auto_topic_creation=False))
        described = {t["topic"]: t for t in response.to_object()["topics"]}
        found: list[TopicPartition] = []
        for name in wanted:
            topic = described.get(name)
            if topic is not None and not topic.get("error_code"):
                found.extend(TopicPartition(name, p) for p in sorted(p["partition"] for p in topic["partitions"]))
        return found

    # -- offsets -----------------------------------------------------------------------------------

    async def beginning_offsets(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        """The first offset retention kept, per partition."""
        return await self._offsets_of(await self.partitions(topics), first=True)

    async def end_offsets(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        """The offset the next message will get, per partition."""
        return await self._offsets_of(await self.partitions(topics), first=False)

    async def _offsets_of(self, tps: list[TopicPartition], *, first: bool) -> dict[TopicPartition, int]:
        if not tps:
            return {}
        consumer = await self._offsets_consumer()
        return dict(await (consumer.beginning_offsets(tps) if first else consumer.end_offsets(tps)))

    async def offsets_for_time(self, topics: Iterable[str], timestamp_ms: int) -> dict[TopicPartition, int]:
        """Per partition, the first offset whose message is at or after ``timestamp_ms`` (epoch
        ms); the end offset where no message is that recent."""
        tps = await self.partitions(topics)
        if not tps:
            return {}
        consumer = await self._offsets_consumer()
        found = await consumer.offsets_for_times({tp: timestamp_ms for tp in tps})
        ends = await self._offsets_of([tp for tp in tps if found.get(tp) is None], first=False)
        return {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in tps}

    async def delete_records(self, before: Mapping[TopicPartition, int]) -> None:
        """Delete each partition's records before the given offset (Kafka DeleteRecords)."""
        if before:
            admin = await self._admin_client()
            await admin.delete_records({tp: RecordsToDelete(offset) for tp, offset in before.items()})

    # -- consumer groups ---------------------------------------------------------------------------

    async def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        """Every offset the group has committed (one request)."""
        found = await (await self._admin_client()).list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in found.items() if meta is not None and meta.offset >= 0}

    async def live_members(self, group: str) -> int:
        """How many consumers are members of the group now (0 for an unknown group)."""
        [response] = await (await self._admin_client()).describe_consumer_groups([group])
        groups = response.to_object()["groups"]
        return sum(len(g["members"]) for g in groups if g["group"] == group)

    async def commit_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Set the group's committed offsets, where its consumers will start next time.

        Raises :class:`GroupNotEmptyError` while the group has live members: their own commits
        would overwrite these, and the broker refuses commits from outside an active group."""
        if not offsets:
            return
        if await self.live_members(group):
            raise GroupNotEmptyError(f"consumer group {group!r} has live members")
        async with _consumer(self.bootstrap, group, self.client_id) as consumer:
            consumer.assign(list(offsets))
            await consumer.commit(dict(offsets))

    async def lag(self, group: str, topics: Iterable[str], *,
                  with_committed_topics: bool = False) -> dict[TopicPartition, int]:
        """Per partition: end offset minus the group's committed offset (minus the first retained
        offset where the group never committed). ``with_committed_topics`` adds every topic the
        group committed on, so a topic its consumers stopped reading still shows what it left."""
        committed = await self.committed_offsets(group)
        names = list(topics)
        if with_committed_topics:
            names += sorted({tp.topic for tp in committed})
        ends = await self.end_offsets(names)
        starts = await self._offsets_of([tp for tp in ends if tp not in committed], first=True)
        return {tp: max(0, end - committed.get(tp, starts.get(tp, 0))) for tp, end in ends.items()}

    # -- reading -----------------------------------------------------------------------------------

    async def read_to_end(self, topics: Iterable[str], *, since: Mapping[TopicPartition, int] | None = None,
                          only: Collection[TopicPartition] | None = None) -> AsyncIterator[ConsumerRecord]:
        """Every record of ``topics`` (of the partitions in ``only``, when given), from each
        partition's start (or its offset in ``since``) up to its end as it was when the reading
        began, oldest first per partition; without a group.

        To leave the loop early, wrap it in ``contextlib.aclosing`` so its consumer stops at once."""
        tps = [tp for tp in await self.partitions(topics) if only is None or tp in only]
        if not tps:
            return
        async with _consumer(self.bootstrap, None, self.client_id) as consumer:
            starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
            for tp, offset in (since or {}).items():
                if tp in starts:
                    starts[tp] = max(starts[tp], offset)
            consumer.assign(tps)
            # An explicit seek: seek_to_beginning() right after assign() races the default offset
            # reset and sometimes leaves the position at the end (aiokafka 0.14).
            for tp in tps:
                consumer.seek(tp, starts[tp])
            pending = {tp for tp in tps if ends[tp] > starts[tp]}
            while pending:
                batch = await consumer.getmany(*pending, timeout_ms=1000)
                for tp, records in batch.items():
                    for record in records:
                        if record.offset < ends[tp]:
                            yield record
                pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}


async def follow(bootstrap: str, topic: str, *, client_id: str = "connect-follow", idle_ms: int = 500,
                 since: Callable[[dict[TopicPartition, int], dict[TopicPartition, int]], dict[TopicPartition, int]]
                 | None = None) -> AsyncIterator[tuple[list[ConsumerRecord], bool]]:
    """Read one topic from its start and keep following it, without a group: yields each batch
    with whether the reader has reached the end the topic had when reading began (then empty
    batches every ``idle_ms`` while nothing new arrives). For state every process holds whole.

    ``since(starts, ends)``, when given, says where to begin instead, per partition (a reader
    that kept what it read before goes on from there); it sees the partitions' first and end
    offsets, and offsets outside them are moved inside."""
    async with KafkaAdmin(bootstrap, client_id=client_id) as kafka:
        tps = await kafka.partitions([topic])
    if not tps:
        raise KafkaAdminError(f"{topic}: no such topic")
    async with _consumer(bootstrap, None, client_id) as consumer:
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        if since is not None:
            chosen = since(dict(starts), dict(ends))
            starts = {tp: min(max(chosen.get(tp, starts[tp]), starts[tp]), ends[tp]) for tp in tps}
        consumer.assign(tps)
        for tp in tps:  # explicit seeks: see read_to_end
            consumer.seek(tp, starts[tp])
        caught_up = all(ends[tp] <= starts[tp] for tp in tps)
        while True:
            batch = await consumer.getmany(*tps, timeout_ms=idle_ms)
            if not caught_up:
                caught_up = all([await consumer.position(tp) >= ends[tp] for tp in tps])
            yield [record for records in batch.values() for record in records], caught_up


# -- one call each ---------------------------------------------------------------------------------

async def list_topics(bootstrap: str) -> set[str]:
    async with KafkaAdmin(bootstrap) as kafka:
        return await kafka.list_topics()


async def ensure_topics(bootstrap: str, names: Iterable[str], *, partitions: int, replication: int = 1,
                        keep_forever: Collection[str] = (), compacted: bool = False) -> list[str]:
    async with KafkaAdmin(bootstrap) as kafka:
        return await kafka.ensure_topics(names, partitions=partitions, replication=replication,
                                         keep_forever=keep_forever, compacted=compacted)


async def delete_topics(bootstrap: str, names: Iterable[str], timeout: float = 60.0) -> None:
    async with KafkaAdmin(bootstrap) as kafka:
        await kafka.delete_topics(names, timeout)


async def max_message_bytes(bootstrap: str, topics: Iterable[str]) -> dict[str, int]:
    async with KafkaAdmin(bootstrap) as kafka:
        return await kafka.max_message_bytes(topics)


async def partitions(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    async with KafkaAdmin(bootstrap) as kafka:
        return await kafka.partitions(topics)


async def beginning_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    async with KafkaAdmin(bootstrap) as kafka:
        return await kafka.beginning_offsets(topics)


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    async with KafkaAdmin(bootstrap) as kafka:
        return await kafka.end_offsets(topics)


async def offsets_for_time(bootstrap: str, topics: Iterable[str], timestamp_ms: int) -> dict[TopicPartition, int]:
    async with KafkaAdmin(bootstrap) as kafka:
        return await kafka.offsets_for_time(topics, timestamp_ms)


async def delete_records(bootstrap: str, before: Mapping[TopicPartition, int]) -> None:
    async with KafkaAdmin(bootstrap) as kafka:
        await kafka.delete_records(before)


async def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    async with KafkaAdmin(bootstrap) as kafka:
        return await kafka.committed_offsets(group)


async def live_members(bootstrap: str, group: str) -> int:
    async with KafkaAdmin(bootstrap) as kafka:
        return await kafka.live_members(group)


async def commit_offsets(bootstrap: str, group: str, offsets: Mapping[TopicPartition, int]) -> None:
    async with KafkaAdmin(bootstrap) as kafka:
        await kafka.commit_offsets(group, offsets)


async def lag(bootstrap: str, group: str, topics: Iterable[str], *,
              with_committed_topics: bool = False) -> dict[TopicPartition, int]:
    async with KafkaAdmin(bootstrap) as kafka:
        return await kafka.lag(group, topics, with_committed_topics=with_committed_topics)


async def read_to_end(bootstrap: str, topics: Iterable[str], *,
                      since: Mapping[TopicPartition, int] | None = None) -> AsyncIterator[ConsumerRecord]:
    async with KafkaAdmin(bootstrap) as kafka, contextlib.aclosing(kafka.read_to_end(topics, since=since)) as records:
        async for record in records:
            yield record
