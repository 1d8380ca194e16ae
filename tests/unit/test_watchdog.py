"""The stall watchdog's bookkeeping (stream_app/watchdog.py)."""

from __future__ import annotations

from stream_app.watchdog import StallWatch


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_partition_with_waiting_messages_and_a_still_offset_is_stalled_after_the_delay() -> None:
    clock = Clock()
    watch = StallWatch(after=60, clock=clock)
    assert watch.observe(["a0", "a1"], {"a0": 5, "a1": 7}, {"a0": 9, "a1": 7}) == []
    clock.now = 59
    assert watch.observe(["a0", "a1"], {"a0": 5, "a1": 7}, {"a0": 12, "a1": 9}) == []
    clock.now = 61
    # a0 has not moved for 61 s with messages waiting; a1 only has messages waiting since t=59
    assert watch.observe(["a0", "a1"], {"a0": 5, "a1": 7}, {"a0": 12, "a1": 9}) == ["a0"]


def test_progress_or_no_waiting_messages_restarts_the_clock() -> None:
    clock = Clock()
    watch = StallWatch(after=60, clock=clock)
    watch.observe(["a0"], {"a0": 5}, {"a0": 9})
    clock.now = 50
    watch.observe(["a0"], {"a0": 6}, {"a0": 9})  # it moved
    clock.now = 100
    assert watch.observe(["a0"], {"a0": 6}, {"a0": 9}) == []
    clock.now = 200
    assert watch.observe(["a0"], {"a0": 9}, {"a0": 9}) == []  # caught up
    clock.now = 400
    assert watch.observe(["a0"], {"a0": 9}, {"a0": 10}) == []  # waiting again: a new clock


def test_a_never_committed_partition_counts_and_a_recovered_one_gets_a_full_delay_again() -> None:
    clock = Clock()
    watch = StallWatch(after=60, clock=clock)
    watch.observe(["b0"], {}, {"b0": 3})
    clock.now = 61
    assert watch.observe(["b0"], {}, {"b0": 3}) == ["b0"]
    watch.recovered("b0")
    clock.now = 100
    assert watch.observe(["b0"], {}, {"b0": 3}) == []
    clock.now = 122
    assert watch.observe(["b0"], {}, {"b0": 3}) == ["b0"]


def test_partitions_no_longer_held_are_forgotten() -> None:
    clock = Clock()
    watch = StallWatch(after=60, clock=clock)
    watch.observe(["a0"], {"a0": 1}, {"a0": 5})
    clock.now = 100
    assert watch.observe([], {"a0": 1}, {"a0": 5}) == []
    assert watch.observe(["a0"], {"a0": 1}, {"a0": 5}) == []  # held again: a new clock


def test_the_consumer_state_report_survives_internals_it_does_not_know() -> None:
    import asyncio

    from stream_app.watchdog import consumer_state

    class Bare:  # an app whose consumer has none of the attributes probed
        consumer = object()
        flow_control = object()

    state = consumer_state(Bare(), ("t", 0))
    assert set(state) >= {"flow_active", "faust_paused", "aiokafka", "fetcher", "consumer_thread"}
    assert all(str(v).startswith("?") for k, v in state.items() if k != "fetcher")

    async def waiting() -> None:
        await asyncio.sleep(10)

    async def with_a_task() -> list[str]:
        class Service:
            _futures = {asyncio.ensure_future(waiting())}

        await asyncio.sleep(0)
        app = type("App", (), {"consumer": object(), "flow_control": object(), "_fetcher": Service()})()
        stacks = consumer_state(app, ("t", 0))["fetcher"]
        for fut in Service._futures:
            fut.cancel()
        return stacks

    [stack] = asyncio.run(with_a_task())
    assert "waiting@test_watchdog.py" in stack


def test_a_stalled_partition_stays_flagged_until_its_offset_moves() -> None:
    clock = Clock()
    watch = StallWatch(after=5, clock=clock)
    watch.observe(["tp"], {"tp": 10}, {"tp": 20})
    clock.now += 6
    assert watch.observe(["tp"], {"tp": 10}, {"tp": 20}) == ["tp"] and watch.flagged == {"tp"}
    watch.recovered("tp")
    clock.now += 1
    watch.observe(["tp"], {"tp": 10}, {"tp": 20})
    assert watch.flagged == {"tp"}  # recovery started, no progress yet
    watch.observe(["tp"], {"tp": 15}, {"tp": 20})
    assert watch.flagged == set()
