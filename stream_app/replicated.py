"""A map every worker holds whole: for lookups a stage makes on keys its partition does not own.

Faust's tables are partitioned: a stage reads only the rows of the partitions it holds, so a
lookup by another key costs a hop through a re-keyed topic (ADR 0019). A
:class:`ReplicatedMap` is written rarely and read on every event: each write goes to a
compacted topic with one partition, and every worker reads that topic from its start and keeps
following it outside the consumer group (``connectors.kafka_admin.follow``), so a lookup is a
local dict read and costs Faust nothing.

The topic is named like a table changelog of the app (``<app id>-<name>-changelog``), so a new
``CONNECT_APP_VERSION`` starts it empty and ``stream-app rebuild --wipe`` deletes it with the
tables. Entries are text keys and text values (``null`` deletes). A worker's own writes are
visible to it at once; other workers see them once their reader gets there (milliseconds).
Stages that must not decide on a partial map wait for :meth:`ReplicatedMap.ready`: the reader
has read what the topic held when the worker started.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from connectors.kafka_admin import ensure_topics, follow

if TYPE_CHECKING:
    from stream_app.app import ConnectApp

__all__ = ["ReplicatedMap"]

log = logging.getLogger(__name__)
#: seconds before an interrupted reader starts over
RETRY_DELAY = 1.0


class ReplicatedMap:
    """``name``'s entries, read whole by this worker; written through :meth:`entry`."""

    def __init__(self, app: "ConnectApp", name: str) -> None:
        self.app = app
        self.name = name
        self.topic_name = f"{app.conf.id}-{name}-changelog"
        self.topic = app.topic(self.topic_name, key_serializer="raw", value_serializer="raw", partitions=1,
                               internal=True)
        app.owned.compact(self.topic_name)
        self._values: dict[str, str] = {}
        self._ready = asyncio.Event()
        app.task(self._follow)

    def get(self, key: str) -> str | None:
        return self._values.get(key)

    def __len__(self) -> int:
        return len(self._values)

    def entry(self, key: str, value: str) -> tuple[Any, str, bytes]:
        """What to send to make ``key`` map to ``value`` everywhere: ``(topic, key, value)`` for a
        send the caller awaits as it does its other outputs. This worker sees it at once."""
        self._values[key] = value
        return self.topic, key, value.encode()

    async def ready(self) -> None:
        await self._ready.wait()

    async def _follow(self) -> None:
        """Read the topic and keep following it. A broker that goes away (a restart) interrupts
        the reader, not the worker: it starts over from the topic's start (entries only ever
        replace each other, so reading them again changes nothing) once the broker answers."""
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next attempt reads everything again
                log.warning("%s: reader interrupted (%s: %s); starting over in %.0f s", self.name,
                            type(exc).__name__, exc, RETRY_DELAY)
                await asyncio.sleep(RETRY_DELAY)

    async def _read(self) -> None:
        settings = self.app.settings
        bootstrap = settings.kafka_bootstrap_servers
        # created up front by `stream-app worker`; here too for a worker started otherwise
        await ensure_topics(bootstrap, [self.topic_name], partitions=1,
                            replication=settings.topic_replication_factor, compacted=True)
        async for records, caught_up in follow(bootstrap, self.topic_name, client_id=f"{self.app.conf.id}-{self.name}"):
            for record in records:
                self._apply(record.key, record.value)
            if caught_up and not self._ready.is_set():
                log.info("%s: %d entries read; ready", self.name, len(self._values))
                self._ready.set()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        text = key.decode(errors="replace")
        if value is None:
            self._values.pop(text, None)
        else:
            self._values[text] = value.decode(errors="replace")
