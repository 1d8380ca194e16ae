"""stream_app.faust_fixes: resuming flow that runs keeps what the agents' queues hold."""

from __future__ import annotations

import inspect

from mode.utils.queues import FlowControlEvent, FlowControlQueue

from stream_app import faust_fixes
from stream_app.app import create_app
from stream_app.settings import load_settings


async def test_a_resume_while_flowing_keeps_the_queued_messages() -> None:
    faust_fixes.apply()
    faust_fixes.apply()  # idempotent
    flow = FlowControlEvent(initially_suspended=True)
    queue: FlowControlQueue[int] = FlowControlQueue(flow_control=flow, clear_on_resume=True)

    flow.resume()  # recovery resumes the flow and starts fetching
    for offset in (34, 35, 36):
        queue.put_nowait(offset)
    flow.resume()  # ... and resumes again once the stream partitions were sought

    assert [queue.get_nowait() for _ in range(queue.qsize())] == [34, 35, 36]


async def test_a_resume_after_a_suspend_still_starts_clean() -> None:
    faust_fixes.apply()
    flow = FlowControlEvent(initially_suspended=False)
    queue: FlowControlQueue[int] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    queue.put_nowait(7)

    flow.suspend()  # a rebalance: what is queued is stale, the seek delivers it again
    flow.resume()

    assert queue.empty() and flow.is_active()


def test_the_app_and_faust_still_use_that_flow_control() -> None:
    """If an upgrade of faust-streaming moves away from it, the fix is void."""
    app = create_app(load_settings(), flows=False, sinks=False, metrics=False)
    assert isinstance(app.flow_control, FlowControlEvent)
    assert "flow_control.resume()" in inspect.getsource(
        __import__("faust.tables.recovery", fromlist=["Recovery"]).Recovery.on_recovery_completed)


def test_the_consumer_thread_seeks_through_the_fix() -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    faust_fixes.apply()
    assert "seek_to_committed_or_earliest" in inspect.getsource(AIOKafkaConsumerThread.seek_to_committed)
    # Faust still relies on that seek to fetch again what it dropped.
    from faust.transport.consumer import Consumer
    assert "self.seek_to_committed()" in inspect.getsource(Consumer.perform_seek)


async def test_the_idle_stream_check_skips_a_partition_without_a_position() -> None:
    """Faust's check would read aiokafka's position, whose assertion crashed a worker."""
    from types import SimpleNamespace

    from aiokafka.consumer.subscription_state import TopicPartitionState
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
    from faust.types import TP

    faust_fixes.apply()
    state = TopicPartitionState(None)  # assigned, position still being reset
    assert not state.has_valid_position
    assignment = SimpleNamespace(state_value=lambda tp: state)
    inner = SimpleNamespace(_fetcher=SimpleNamespace(_subscriptions=SimpleNamespace(
        subscription=SimpleNamespace(assignment=assignment))))
    thread = SimpleNamespace(_ensure_consumer=lambda: inner)  # nothing else: Faust's own check would raise
    assert AIOKafkaConsumerThread.verify_event_path(thread, 0.0, TP("t", 0)) is None  # type: ignore[arg-type]
    import faust.transport.drivers.aiokafka as driver
    assert "committed_offset = tp_state.position" in inspect.getsource(driver)  # the read the fix guards
