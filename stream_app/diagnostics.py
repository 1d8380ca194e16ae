"""A round-trip agent for health checks and the platform's own tests.

``diag.ping`` → ``diag.pong``: each ping comes back with where it was read from (partition,
offset) and how many times this key has been processed, which makes redone or lost work
visible from outside the worker.

A ping ``{"pause_partition": true}`` makes the worker stop fetching the partition it came from,
as the stall seen once in a kill test did: the tests use it to check that the watchdog
(stream_app/watchdog.py) notices and recovers such a partition.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream_app.app import ConnectApp

__all__ = ["install", "PING_TOPIC", "PONG_TOPIC"]

PING_TOPIC = "diag.ping"
PONG_TOPIC = "diag.pong"


def install(app: "ConnectApp") -> None:
    ping_topic = app.owned.topic(PING_TOPIC)
    pong_topic = app.owned.topic(PONG_TOPIC)
    processed_per_key = app.Table("diag-processed", default=int, key_type=bytes)

    async def echo(stream: Any) -> None:
        async for event in stream.events():
            processed_per_key[event.key] += 1
            message = event.message
            if isinstance(event.value, dict) and event.value.get("pause_partition"):
                app.consumer.pause_partitions([message.tp])
            await pong_topic.send(
                key=event.key,
                value={
                    **(event.value if isinstance(event.value, dict) else {"value": event.value}),
                    "partition": message.partition,
                    "offset": message.offset,
                    "times_processed": processed_per_key[event.key],
                    "worker_pid": os.getpid(),
                },
            )

    echo.__qualname__ = "stream_app.diagnostics.echo"
    app.agent(ping_topic, name="stream_app.diagnostics.echo", concurrency=1)(echo)
