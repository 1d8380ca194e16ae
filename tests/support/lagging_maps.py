"""Fakes for playing a flow's stages on workers whose copies of a replicated map differ: each
worker has its own copy (:class:`MapCopy`), the tables and topics are shared (:class:`Bus`), and
a test delivers the stage messages itself, to the worker it chooses (docs/adr/0021 and 0026,
addenda: a message must carry the links a stage decides by, as the other worker may lag)."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from types import SimpleNamespace
from typing import Any

from stream_app.flows import BoundMetrics

__all__ = ["MapCopy", "Bus", "Context", "Batch"]


class MapCopy:
    """One worker's copy of a replicated map; ``entry`` writes only to this copy (another worker
    reads it later, or, in these tests, not at all)."""

    def __init__(self, values: dict[str, str] | None = None, name: str = "links") -> None:
        self.values, self.name = dict(values or {}), name

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def any(self) -> bool:
        return bool(self.values)

    def entry(self, key: str, value: str) -> tuple[Any, str, bytes]:
        self.values[key] = value
        return SimpleNamespace(name=self.name), key, value.encode()

    async def ready(self) -> None:
        return None


class Bus:
    """The topics between the workers: messages queued in the order they were sent."""

    def __init__(self) -> None:
        self.queue: deque[tuple[str, str, Any]] = deque()
        self.quarantined: list[str] = []

    async def send(self, topic: Any, key: str, value: Any) -> Any:
        self.queue.append((topic.name, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def on(self, topic: str) -> list[tuple[str, Any]]:
        return [(key, value) for name, key, value in self.queue if name == topic]


class Context:
    """One worker's flow context: its own map copy; tables and topics shared through ``bus``."""

    settings = SimpleNamespace(salesforce_client_name="connect", tims_client_name="connect")

    def __init__(self, flow: str, bus: Bus, tables: dict[str, dict[str, Any]], links: MapCopy) -> None:
        self.bus, self.tables, self.links = bus, tables, links
        self.counters: Counter[str] = Counter()
        self.metrics = BoundMetrics(flow)

    def topic(self, *names: str, **options: Any) -> Any:
        return SimpleNamespace(name=names[0])

    def table(self, name: str, **options: Any) -> Any:
        return self.tables.setdefault(name, {})

    def replicated(self, name: str, *, lasting: bool = False) -> MapCopy:
        return self.links

    async def send(self, topic: Any, key: str, value: Any) -> Any:
        return await self.bus.send(topic, key, value)

    async def quarantine(self, reason: str, raw: Any) -> None:
        self.bus.quarantined.append(reason)


class Batch:
    """A batch of one event, straight onto the shared tables."""

    def __init__(self, ctx: Context) -> None:
        self.ctx, self.notes = ctx, {}

    def get(self, table: Any, key: str, event: Any) -> Any:
        return table.get(key)

    def put(self, table: Any, key: str, value: Any, event: Any) -> None:
        table[key] = value

    def forget(self, table: Any, key: str) -> None:
        return None

    async def send(self, topic: Any, key: str, value: Any) -> None:
        await self.ctx.send(topic, key, value)
