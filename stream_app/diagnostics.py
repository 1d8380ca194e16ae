"""A round-trip agent for health checks and the platform's own tests.

``diag.ping`` → ``diag.pong``: each ping comes back with where it was read from (partition,
offset) and how many times this key has been processed, which makes redone or lost work
visible from outside the worker.
"""

from __future__ import annotations

import os

from stream_app.app import app
from stream_app.topics import owned_topic

__all__ = ["ping_topic", "pong_topic", "echo"]

ping_topic = owned_topic("diag.ping")
pong_topic = owned_topic("diag.pong")
processed_per_key = app.Table("diag-processed", default=int, key_type=bytes)


@app.agent(ping_topic, concurrency=1)
async def echo(stream):
    async for event in stream.events():
        processed_per_key[event.key] += 1
        message = event.message
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
