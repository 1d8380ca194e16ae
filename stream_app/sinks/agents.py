"""Sink agents: one Faust agent (concurrency 1) per enabled ``sink.<system>.<object>`` topic.

Each agent takes batches with ``stream.noack_take(batch_size, within=linger)`` and acks the
batch's events only after :class:`~stream_app.sinks.engine.SinkEngine` has written them, the
version table has advanced, and the dead letters, links and quarantined messages have been
acked by the broker; the producer is flushed first, so the table's changelog is in Kafka
before the offsets that depend on it are committed. ``take()`` is not used: it acks the
batch in a ``finally`` that also runs when the generator is closed (worker stop, agent
crash), which would commit offsets of commands that were never written (docs/adr/0007).

The version table ``sink-applied-versions`` (per top-level field, see the engine) is keyed by ``SinkCommand.partition_key``, the
sink topics' Kafka key, so it is co-partitioned with them. Faust picks a table key's
partition from the *current event*; a batch spans partitions, so every read and write of
the table runs with that key's own event as the current one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, MutableMapping, Sequence

from faust.types import AppT, EventT, StreamT, TopicT

from connectors.kafka_limits import MessageLimits, OversizeMessage
from stream_app.codecs import KEEP_BYTES, bounded, encode
from stream_app.batching import as_current
from stream_app.sinks.engine import (
    Applied, MalformedCommand, MessagePosition, Received, SinkBatchResult, SinkEngine, SinkStats, VersionGuard,
    parse_command,
)
from stream_app.sinks.registry import (
    SinkOptions, SinkSpec, build_writer, enabled_sinks, sink_options,
)
from connectors.spec import ConnectorContext
from stream_app.run_source import connector_context

if TYPE_CHECKING:
    from stream_app.app import ConnectApp

__all__ = ["SinkRuntime", "TableGuard", "PublishMany", "install", "install_sinks", "QUARANTINE_TOPIC", "VERSION_TABLE"]

log = logging.getLogger(__name__)

QUARANTINE_TOPIC = "quarantine.sink"
VERSION_TABLE = "sink-applied-versions"
_RAW_LIMIT = 10_000

#: ``publish_many(topic, [(key, value), ...])`` returns once the broker acked every message
PublishMany = Callable[[str, Sequence[tuple[str, dict[str, Any]]]], Awaitable[None]]


class TableGuard:
    """A VersionGuard over the Faust table, each key read and written as its own event."""

    def __init__(self, table: MutableMapping[str, Any], events: Mapping[str, EventT]) -> None:
        self.table = table
        self.events = events

    def applied(self, key: str) -> Applied | None:
        with as_current(self.events[key]):
            return Applied.from_stored(self.table.get(key))

    def advance(self, key: str, applied: Applied) -> None:
        with as_current(self.events[key]):
            self.table[key] = applied.to_json()


@dataclass
class SinkRuntime:
    """What one sink agent runs per batch; built once per enabled sink."""

    spec: SinkSpec
    engine: SinkEngine
    options: SinkOptions
    guard_for: Callable[[Mapping[str, EventT]], VersionGuard]
    publish_many: PublishMany
    flush: Callable[[], Awaitable[Any]]

    @property
    def stats(self) -> SinkStats:
        return self.engine.stats

    async def consume(self, stream: StreamT) -> None:
        """The agent's body. The writer stays open when the agent is restarted by Faust's
        supervisor; it is closed with the app (``close_writers``)."""
        await self.engine.writer.start()
        async for events in stream.noack_take(self.options.batch_size, within=self.options.linger):
            await self.handle(events)
            for event in events:
                await stream.ack(event)

    async def handle(self, events: Sequence[EventT]) -> None:
        started = time.monotonic()
        self.stats.messages += len(events)
        received: list[Received] = []
        latest: dict[str, EventT] = {}
        quarantined: list[tuple[str, dict[str, Any]]] = []
        for event in events:
            message = event.message
            source = MessagePosition(message.topic, message.partition, message.offset)
            try:
                command = parse_command(event.value, message.key, self.spec.system, self.spec.object)
            except MalformedCommand as exc:
                quarantined.append(self._quarantine_entry(event, source, exc.reason))
                continue
            except Exception as exc:  # noqa: BLE001 - a message must not crash the sink (ADR 0017)
                log.exception("sink %s.%s: reading a message raised; quarantined", self.spec.system, self.spec.object)
                quarantined.append(self._quarantine_entry(event, source, f"reading raised {type(exc).__name__}: {exc}"))
                continue
            received.append(Received(command, source))
            latest[command.partition_key] = event
        before = (self.stats.calls, self.stats.retries)
        result = await self._run(received, latest) if received else None
        if quarantined:
            await self.publish_many(QUARANTINE_TOPIC, quarantined)
            self.stats.quarantined += len(quarantined)
        if result is not None and result.dead_letters:
            await self.publish_many(self.spec.dlq_topic, [(d["partition_key"], d) for d in result.dead_letters])
        if result is not None and result.links and self.spec.links_topic:
            await self.publish_many(self.spec.links_topic, [(link["record_key"], link) for link in result.links])
        await self.flush()
        self._account(len(received), result)
        log.info(
            "sink %s.%s: %d message(s), %d stale, %d written in %d call(s), %d retried, %d dead-lettered, "
            "%d quarantined (%.2fs)", self.spec.system, self.spec.object, len(events),
            len(result.stale) if result else 0, len(result.written) if result else 0,
            self.stats.calls - before[0], self.stats.retries - before[1],
            len(result.dead_letters) if result else 0, len(quarantined), time.monotonic() - started)

    async def _run(self, received: list[Received], latest: Mapping[str, EventT]) -> SinkBatchResult:
        """The engine on one batch; an error it did not expect (a bug in a writer, say) dead-letters
        the batch's commands with that error instead of killing the agent with them unacked.
        Commands that had landed before it are replayed harmlessly (the version guard)."""
        try:
            return await self.engine.run(received, self.guard_for(latest))
        except Exception as exc:  # noqa: BLE001 - the batch goes to the DLQ, the sink goes on
            log.exception("sink %s.%s: a batch raised; its %d command(s) go to %s", self.spec.system,
                          self.spec.object, len(received), self.spec.dlq_topic)
            result = SinkBatchResult()
            now = int(time.time() * 1000)
            result.dead_letters = [_unexpected(item, exc, now) for item in received]
            self.stats.dead_lettered += len(received)
            return result

    def _account(self, received: int, result: SinkBatchResult | None) -> None:
        """Count what became of a batch's readable messages, once its outputs are acked: a dead
        letter stands for its command and those folded into it; the rest were processed."""
        dead = sum(1 + len(entry.get("folded") or ()) for entry in result.dead_letters) if result else 0
        self.stats.messages_dead_lettered += dead
        self.stats.messages_processed += received - dead

    def _quarantine_entry(self, event: EventT, source: MessagePosition, reason: str) -> tuple[str, dict[str, Any]]:
        raw = event.value
        text = raw.decode(errors="replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
        key = event.message.key
        key_text = key.decode(errors="replace") if isinstance(key, (bytes, bytearray)) else key
        return (key_text or self.spec.topic, {
            "source": "sink", "reason": reason, "raw": text[:_RAW_LIMIT],
            "context": {"topic": source.topic, "partition": source.partition, "offset": source.offset,
                        "key": key_text, "sink": f"{self.spec.system}.{self.spec.object}"},
            "quarantined_at": int(time.time() * 1000),
        })


def _unexpected(item: Received, exc: Exception, now_ms: int) -> dict[str, Any]:
    """The DLQ entry of a command whose batch raised: the error, and all needed to replay it."""
    command = item.command
    return {"reason": "sink_error", "error_code": "INTERNAL_ERROR", "error": f"{type(exc).__name__}: {exc}"[:2000],
            "attempts": 0, "dead_lettered_at": now_ms, "system": command.system, "object": command.object,
            "partition_key": command.partition_key, "command": command.model_dump(mode="json"), "folded": [],
            "sources": [asdict(item.source)] if item.source is not None else []}


def _publisher(topics: Mapping[str, TopicT], limits: MessageLimits) -> PublishMany:
    """``publish_many`` over the sinks' output topics. Each message is measured against its
    topic's limit first; one too large (a dead letter of a command near the limit, say) goes to
    ``quarantine.sink`` instead, bounded, with the topic, its size and the limit (docs/adr/0020)."""
    declared: set[str] = set()

    async def send(name: str, key: str, value: dict[str, Any]) -> Any:
        topic = topics[name]
        if name not in declared:  # a backlog can be read before declare_owned_topics ran
            await topic.maybe_declare()
            declared.add(name)
        key_bytes, data = key.encode(), encode(value)
        await limits.check(topic.get_topic_name(), key_bytes, data)
        return await topic.send(key=key_bytes, value=data, value_serializer="raw")

    async def publish_many(name: str, entries: Sequence[tuple[str, dict[str, Any]]]) -> None:
        pending = []
        for key, value in entries:
            try:
                pending.append(await send(name, key, value))
            except OversizeMessage as exc:
                log.error("sink output refused before producing: %s; quarantined", exc)
                room = await limits.limit(topics[QUARANTINE_TOPIC].get_topic_name())
                pending.append(await send(QUARANTINE_TOPIC, key, {
                    "source": "sink", "reason": str(exc), "raw": bounded(value, min(KEEP_BYTES, room // 2)),
                    "context": {"topic": name, "key": key}, "quarantined_at": int(time.time() * 1000)}))
        await asyncio.gather(*pending)
    return publish_many


def install(faust_app: AppT, specs: Sequence[SinkSpec], options: SinkOptions,
            writer_for: Callable[[SinkSpec], Any], table: MutableMapping[str, int],
            publish_many: PublishMany, flush: Callable[[], Awaitable[Any]],
            source_for: Callable[[SinkSpec], Any]) -> dict[str, SinkRuntime]:
    """One agent per sink on ``faust_app``; ``source_for(spec)`` is the channel it reads."""
    runtimes: dict[str, SinkRuntime] = {}
    for spec in specs:
        engine = SinkEngine(writer_for(spec), options.policy(), publish_links=spec.links_topic is not None)
        runtime = SinkRuntime(spec, engine, options, lambda events: TableGuard(table, events), publish_many, flush)

        async def consume(stream: StreamT, runtime: SinkRuntime = runtime) -> None:
            await runtime.consume(stream)

        consume.__name__ = consume.__qualname__ = spec.agent_name.replace("-", "_")
        faust_app.agent(source_for(spec), name=spec.agent_name, concurrency=1)(consume)
        runtimes[spec.agent_name] = runtime
    return runtimes


def _client_stats(client: Any) -> dict[str, Any]:
    """What a shared API client counts (calls, retries, token refreshes, quota), for the stats page."""
    stats, tokens, budget = getattr(client, "stats", None), getattr(client, "tokens", None), getattr(client, "budget", None)
    out: dict[str, Any] = {"calls": getattr(client, "calls", 0)}
    if stats is not None:
        out.update(retries=stats.retries, auth_refreshes=stats.auth_refreshes, gave_up=stats.gave_up)
    if tokens is not None:
        out["token_refreshes"] = getattr(tokens, "refreshes", 0)
    if budget is not None:
        out["budget_waits"] = budget.waits
        out["api_usage"] = {"used": budget.usage.used, "limit": budget.usage.limit}
    return out


def _stats(runtimes: Mapping[str, SinkRuntime], context: ConnectorContext) -> dict[str, Any]:
    """The sinks' counts, and those of the clients their writers share (by system: the cache key
    ``<system>.<what>``)."""
    out: dict[str, Any] = {"sinks": {name: runtime.stats.as_dict() for name, runtime in runtimes.items()}}
    for key, shared in list(context.cache.items()):
        if hasattr(shared, "calls"):
            out[key.split(".", 1)[0]] = _client_stats(shared)
    return out


async def _close_shared(context: ConnectorContext) -> None:
    """Close what the writers shared (clients and their token providers), once each."""
    closed: set[int] = set()
    for shared in list(context.cache.values()):
        for thing in (shared, getattr(shared, "tokens", None)):
            close = getattr(thing, "aclose", None)
            if close is not None and id(thing) not in closed:
                closed.add(id(thing))
                await close()


def install_sinks(app: "ConnectApp") -> dict[str, SinkRuntime]:
    """The sinks ``CONNECT_SINK_OBJECTS`` enables, installed on ``app``; returns them by agent name.
    Writers are built now, so a wrong connector setting stops start-up with a clear message."""
    settings = app.settings
    specs = enabled_sinks(settings)
    if not specs:
        return {}
    # JSON values: {"floor": n, "fields": {name: version}}; a bare int (stored before versions
    # were kept per field) still reads as one version for the whole record. value_type=None:
    # Faust would cast an int-typed value with int().
    table = app.Table(VERSION_TABLE, key_type=str, value_type=None,
                      help="versions each sink applied per target record and field")
    outputs = {QUARANTINE_TOPIC: app.owned.topic(QUARANTINE_TOPIC)}
    for spec in specs:
        for name in (spec.dlq_topic, spec.links_topic):
            if name and name not in outputs:
                outputs[name] = app.owned.topic(name)
    context = connector_context(settings)
    writers = {spec: build_writer(spec, settings, context) for spec in specs}
    runtimes = install(
        app, specs, sink_options(settings), writers.__getitem__, table, _publisher(outputs, app.limits),
        lambda: app.producer.flush(), lambda spec: app.owned.topic(spec.topic, value_serializer="raw"),
    )

    async def sink_stats(view: Any, request: Any) -> Any:
        return view.json(_stats(runtimes, context))

    app.page("/sinks/stats/")(sink_stats)

    async def close_writers(sender: Any, **kwargs: Any) -> None:
        for writer in writers.values():
            await writer.close()
        await _close_shared(context)

    app.on_before_shutdown.connect(close_writers)
    return runtimes
