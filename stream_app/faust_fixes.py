"""Corrections to faust-streaming behaviour that loses messages; applied when the app is built.

**Resuming flow that is not suspended clears no queue.** Faust's flow control
(``mode.utils.queues.FlowControlEvent``) empties every agent's input queue on ``resume()``,
meant for the moment a rebalance is over: what was queued before it is stale, and the seek to
the committed offsets delivers it again. But recovery resumes the flow twice. When a worker
has tables to restore, recovery resumes it and starts the fetcher early; messages of the
stream partitions then reach the agents' queues while ``Recovery.on_recovery_completed`` seeks
those partitions, and that method then calls ``resume()`` again. The second call empties
queues of messages that are current, already counted as read: the seek has happened, nothing
delivers them again, and their offsets are committed once later messages are processed.

Seen as a worker restarted after a SIGKILL never processing a block of 2 to 20 consecutive
offsets per partition (``tests/integration/test_worker.py::test_killed_worker_loses_nothing``,
about one run in two here): traced, every lost message had been put into the agent's queue
and was gone after "Resume stream partitions". docs/adr/0012.

The fix: ``resume()`` clears the queues only when the flow was suspended. A real rebalance
suspends the flow first (and Faust clears the queues then too), so it still starts clean.

**Seeking to the committed offset also rewinds a partition that has none.** Whenever Faust
drops what it fetched (queues cleared on a rebalance, a batch abandoned because the flow
stopped or the generation changed) it relies on ``perform_seek`` to fetch it again from the
committed offsets. aiokafka's ``seek_to_committed`` seeks only partitions whose committed
offset is above 0: a partition with no commit yet (a new group, or a worker killed before its
first commit) keeps its fetch position past the dropped messages, so they are never processed
and, with nothing ever committed, nothing says so. Seen as a worker restarted after a SIGKILL
whose four ``diag.ping`` partitions had no commit: aiokafka's position stood at the end offset,
Faust's read offset was unset, and nothing was consumed (the stall watchdog logged that
state). The fix sends such partitions to the earliest offset, which is where a group without a
commit starts (``consumer_auto_offset_reset`` is ``earliest``): at-least-once, as a commit of 0
would be. docs/adr/0012.

**The idle-stream check reads a position that is not there yet.** Faust's consumer runs a
livelock detector that, for every assigned partition, reads aiokafka's fetch position; aiokafka
asserts that the position is set, and it is not for a partition assigned a moment ago whose
position is still being reset. The AssertionError crashes the consumer and the worker exits.
Seen in bench/scaleout.py as the second of two workers finished its first recovery. The fix
skips such a partition for that round: the check is diagnosis only, the next round sees it.

**Declaring a topic reads the metadata of every topic in the cluster.** Faust's producer asks
for a metadata refresh after each topic it declares; its aiokafka client tracks no topic of
its own (it sends to topics it already knows from that refresh), and a client that tracks none
asks for all of them. A worker declares some twenty topics as it starts: on a broker holding
2,000 topics each refresh took 0.2-0.3 s of CPU, about 6 s of a start (counted in
bench/topology_bench.py's worker, docs/adr/0038). The fix has the producer's client track each
topic once Faust has declared it, so the refreshes after the first name only the app's topics.
A topic is tracked only after its creation: a metadata request naming a missing topic creates
it on a broker with auto-creation, without the partitions and configuration Faust asks for.
"""

from __future__ import annotations

from typing import Any, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Producer
from mode.utils.queues import FlowControlEvent

__all__ = ["apply", "seek_to_committed_or_earliest"]

_MARK = "_connect_clears_only_when_suspended"


def apply() -> None:
    """Install the corrections (idempotent)."""
    _apply_seek_rewinds_uncommitted()
    _apply_event_path_check_waits_for_a_position()
    _apply_declared_topics_tracked()
    if getattr(FlowControlEvent.resume, _MARK, False):
        return

    def resume(self: FlowControlEvent) -> None:
        """Resume production into the managed queues; empty them only if it was suspended."""
        was_suspended = not self.is_active()
        self._suspend.clear()
        self._resume.set()
        if was_suspended:
            self.clear()

    setattr(resume, _MARK, True)
    FlowControlEvent.resume = resume  # type: ignore[method-assign]


async def seek_to_committed_or_earliest(consumer: AIOKafkaConsumer) -> Mapping[TopicPartition, Any]:
    """Seek every assigned partition to its committed offset, and the ones without a commit
    (none, or 0) to their earliest offset; returns the committed offsets as aiokafka does."""
    committed = await consumer.seek_to_committed()
    uncommitted = [tp for tp, offset in committed.items() if not offset]
    if uncommitted:
        await consumer.seek_to_beginning(*uncommitted)
    return committed


def _apply_seek_rewinds_uncommitted() -> None:
    if getattr(AIOKafkaConsumerThread.seek_to_committed, _MARK, False):
        return

    async def seek_to_committed(self: AIOKafkaConsumerThread) -> Mapping[TopicPartition, Any]:
        """Seek partitions to the last committed offset, or the earliest when there is none."""
        return await self.call_thread(seek_to_committed_or_earliest, self._ensure_consumer())

    setattr(seek_to_committed, _MARK, True)
    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]


def _apply_event_path_check_waits_for_a_position() -> None:
    original = AIOKafkaConsumerThread.verify_event_path
    if getattr(original, _MARK, False):
        return

    def verify_event_path(self: AIOKafkaConsumerThread, now: float, tp: Any) -> None:
        """Faust's idle-stream check, for partitions whose fetch position is known."""
        try:
            assignment = self._ensure_consumer()._fetcher._subscriptions.subscription.assignment
            state = assignment.state_value(TopicPartition(tp.topic, tp.partition))
        except AttributeError:  # no assignment yet
            return None
        if state is None or not state.has_valid_position:
            return None
        return original(self, now, tp)

    setattr(verify_event_path, _MARK, True)
    AIOKafkaConsumerThread.verify_event_path = verify_event_path  # type: ignore[method-assign]


def _apply_declared_topics_tracked() -> None:
    original = Producer.create_topic
    if getattr(original, _MARK, False):
        return

    async def create_topic(self: Producer, topic: str, *args: Any, **kwargs: Any) -> None:
        """Faust's declaration, then the topic tracked by the producer's metadata refreshes."""
        await original(self, topic, *args, **kwargs)
        producer = self._producer
        if producer is not None:
            await producer.client.add_topic(topic)

    setattr(create_topic, _MARK, True)
    Producer.create_topic = create_topic  # type: ignore[method-assign]
