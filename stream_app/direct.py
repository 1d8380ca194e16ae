"""Direct stages: a stateless stage read with a plain aiokafka consumer group, outside Faust.

Faust handles each message it consumes one at a time: the fetcher thread hands it over, the
conductor decodes it into an event and queues it, the stream iterates, acks and tracks its
offset. That costs about 0.3 ms of CPU per message on the development machine (ADR 0011, 0016),
six times what a plain consumer needs. A stage that keeps no table (``ingest``: validate a
source event, look its customer up in the replicated index, forward it) needs none of Faust's
per-message machinery, so it runs here instead (docs/adr/0028):

- its own consumer group, ``<group>.<flow>.<stage>`` (:func:`direct_group`), so the broker
  balances its partitions over the workers as it does Faust's;
- a batch of up to ``CONNECT_FLOW_BATCH_SIZE`` records at a time, each decoded once with the
  ``safe_json`` codec and handled behind the flow's stage boundary (an undecodable message, or
  one that makes the handler raise, is quarantined with the reason; counted in, then processed
  or quarantined);
- the batch's outputs (forwards and quarantine entries) are produced through the app's
  producer; once the broker has acked every one of them, the batch's offsets are committed:
  at-least-once, as Faust's stages are. A failed send moves the batch's partitions back to
  where the batch started and redoes it; a rebalance that took partitions away meanwhile only
  makes their new owner redo what was not committed (downstream stages are idempotent).
- A partition the stage's group has never committed starts where the app's Faust group stands on
  it, if it does: a deployment whose Faust agent read the topic before goes on from there
  instead of reading the topic's whole history again; else at the earliest offset.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from connectors import kafka_admin, kafka_security
from stream_app.codecs import SafeJson

if TYPE_CHECKING:
    from stream_app.app import ConnectApp

__all__ = ["DirectEvent", "DirectStage", "direct_group", "collecting_sends", "collect_send"]

log = logging.getLogger(__name__)
#: seconds before a stage whose consumer failed starts it again
RETRY_DELAY = 1.0
#: the futures of the sends made by the current task's batch (None outside a direct stage)
_SENDS: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("direct_stage_sends", default=None)
_CODEC = SafeJson()


def direct_group(group: str, flow: str, stage: str) -> str:
    """The consumer group of a direct stage of the app whose Faust group is ``group``."""
    return f"{group}.{flow}.{stage}"


def collect_send(future: Any) -> Any:
    """Remember ``future`` (a send's ack) when a direct stage's batch is being handled."""
    sends = _SENDS.get()
    if sends is not None:
        sends.append(future)
    return future


class collecting_sends:
    """Within the block, the current task's sends are collected (``with collecting_sends() as sends``)."""

    def __enter__(self) -> list[Any]:
        self._sends: list[Any] = []
        self._token = _SENDS.set(self._sends)
        return self._sends

    def __exit__(self, *exc: object) -> None:
        _SENDS.reset(self._token)


@dataclass(frozen=True)
class DirectEvent:
    """What a stage handler reads of a message (the part of Faust's ``EventT`` the stages use)."""

    key: bytes | None
    value: Any
    topic: str
    partition: int
    offset: int


Handle = Callable[[DirectEvent], Awaitable[None]]


class DirectStage:
    """One stateless stage on its own consumer group; runs as a task of the worker."""

    def __init__(self, app: "ConnectApp", flow: str, stage: str, topics: list[str], handle: Handle,
                 before: Callable[[], Awaitable[None]] | None = None) -> None:
        self.app, self.flow, self.stage, self.topics = app, flow, stage, topics
        self.handle, self.before = handle, before
        self.group = direct_group(app.conf.id, flow, stage)
        settings = app.settings
        self.batch_size = settings.flow_batch_size
        self._options = dict(
            bootstrap_servers=settings.kafka_bootstrap_servers, group_id=self.group,
            client_id=self.group,
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=self.batch_size,
            session_timeout_ms=int(settings.broker_session_timeout * 1000),
            heartbeat_interval_ms=int(settings.broker_heartbeat_interval * 1000),
            metadata_max_age_ms=5000)
        #: batches whose offsets were committed (read by tests and the stats page)
        self.batches = 0
        #: ``starting`` (waiting for what ``before`` waits for), ``consuming``, or ``restarting``
        #: after its consumer failed (``/readyz`` reports it); a direct table stage also says
        #: ``joining`` until its group gave it partitions and ``recovering`` while it reads them
        self.state = "starting"
        #: where the Faust group stood on a partition this group had never committed: records
        #: before it were handled already, and are skipped (a fetch may have started earlier)
        self.floors: dict[TopicPartition, int] = {}

    #: the state once the consumer has subscribed
    subscribed_state = "consuming"

    async def run(self) -> None:
        """Take batches until the worker stops; a consumer that fails is started again."""
        if self.before is not None:
            await self.before()
        self.floors.update(await self._floors())
        while True:
            consumer = AIOKafkaConsumer(**self._options, **kafka_security.client_options())
            try:
                await consumer.start()
                consumer.subscribe(self.topics, listener=self.listener(consumer))
                self.state = self.subscribed_state
                log.info("direct stage %s.%s: consuming %s as group %s", self.flow, self.stage,
                         ", ".join(self.topics), self.group)
                while True:
                    await self._one_batch(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the stage starts over from its commits
                self.state = "restarting"
                log.warning("direct stage %s.%s: consumer failed (%s: %s); starting again in %.0f s",
                            self.flow, self.stage, type(exc).__name__, exc, RETRY_DELAY)
                await asyncio.sleep(RETRY_DELAY)
            finally:
                await _stop_quietly(consumer)

    async def until_done(self, what: str, step: Callable[[], Awaitable[Any]]) -> Any:
        """``step()``, tried again every ``RETRY_DELAY`` seconds until it succeeds: a start-up step
        that fails because the broker is away for a moment must not end the worker."""
        while True:
            try:
                return await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged; tried again until the worker stops
                self.state = "restarting"
                log.warning("direct stage %s.%s: %s failed (%s: %s); trying again in %.0f s", self.flow, self.stage,
                            what, type(exc).__name__, exc, RETRY_DELAY)
                await asyncio.sleep(RETRY_DELAY)

    def listener(self, consumer: AIOKafkaConsumer) -> ConsumerRebalanceListener:
        """What the consumer calls on a rebalance."""
        return _TakeOver(consumer, self.floors)

    async def _floors(self) -> dict[TopicPartition, int]:
        """Where the Faust group stands on the partitions this group has never committed (the
        stage moved out of Faust: the records before were handled there)."""
        bootstrap = self.app.settings.kafka_bootstrap_servers
        try:
            ours = await kafka_admin.committed_offsets(bootstrap, self.group)
            faust = await kafka_admin.committed_offsets(bootstrap, self.app.conf.id)
        except Exception as exc:  # noqa: BLE001 - without them, new partitions start at the earliest offset
            log.warning("direct stage %s.%s: committed offsets not read (%s: %s); partitions this group never "
                        "committed start at their earliest offset", self.flow, self.stage, type(exc).__name__, exc)
            return {}
        floors = {tp: offset for tp, offset in faust.items() if tp.topic in self.topics and tp not in ours}
        for tp, offset in sorted(floors.items()):
            log.info("direct stage %s.%s: %s[%d] starts at offset %d, where group %s stands", self.flow, self.stage,
                     tp.topic, tp.partition, offset, self.app.conf.id)
        return floors

    async def _one_batch(self, consumer: AIOKafkaConsumer) -> None:
        fetched = await consumer.getmany(timeout_ms=1000, max_records=self.batch_size)
        if not fetched:
            return
        with collecting_sends() as sends:
            for event in self.events(fetched):
                await self.handle(event)
        try:
            await asyncio.gather(*sends)
        except KafkaError as exc:
            await self.redo(consumer, fetched, exc)
            return
        await self.commit(consumer, fetched)

    def events(self, fetched: dict[TopicPartition, list[Any]]) -> Iterator[DirectEvent]:
        """The batch's records as events, decoded once; those before a partition's floor skipped."""
        for tp, records in fetched.items():
            floor = self.floors.get(tp, 0)
            for record in records:
                if record.offset >= floor:
                    yield DirectEvent(record.key, _CODEC._loads(record.value), record.topic, record.partition,
                                      record.offset)

    async def redo(self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[Any]],
                   exc: Exception) -> None:
        """A send failed: back to the batch's start on the partitions still held, after a pause."""
        log.warning("direct stage %s.%s: a send failed (%s: %s); redoing the batch", self.flow, self.stage,
                    type(exc).__name__, exc)
        for tp, records in fetched.items():
            if tp in consumer.assignment():
                consumer.seek(tp, records[0].offset)
        await asyncio.sleep(RETRY_DELAY)

    async def commit(self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[Any]]) -> None:
        """Commit the offsets after the batch; a commit refused after a rebalance is left to the
        partitions' new owner, which redoes what is not committed."""
        if not fetched:
            return
        try:
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in fetched.items()})
        except (CommitFailedError, IllegalStateError) as exc:
            log.info("direct stage %s.%s: commit refused after a rebalance (%s); the new owner redoes it",
                     self.flow, self.stage, type(exc).__name__)
            return
        self.batches += 1


class _TakeOver(ConsumerRebalanceListener):
    """On assignment: a partition with a floor (see :meth:`DirectStage._floors`) that this group
    has not committed yet is moved to it, so the history before it is not even fetched."""

    def __init__(self, consumer: AIOKafkaConsumer, floors: dict[TopicPartition, int]) -> None:
        self.consumer, self.floors = consumer, floors

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        for tp in assigned:
            if tp in self.floors and await self.consumer.committed(tp) is None:
                self.consumer.seek(tp, self.floors[tp])


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    try:
        await consumer.stop()
    except Exception as exc:  # noqa: BLE001 - stopping a consumer that never started
        log.debug("direct stage consumer stop: %s", exc)
