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

Where the app keeps its tables in RocksDB (``CONNECT_STORE=rocksdb``, the default), the map is
kept on disk beside them (``<tables>/replicated/<topic>``, via rocksdict) with the offset read up
to, so a million customers' entries do not sit in the worker's memory and a restarted worker
reads only what was written since it stopped (docs/adr/0028). A store that cannot be opened, or
whose offset is beyond the topic's end (the topic was recreated), starts over empty. With the
memory store the map is a dict, read from the topic's start each time.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition

from connectors.kafka_admin import ensure_topics, follow

if TYPE_CHECKING:
    from stream_app.app import ConnectApp

__all__ = ["ReplicatedMap", "MemoryEntries", "DiskEntries"]

log = logging.getLogger(__name__)
#: seconds before an interrupted reader starts over
RETRY_DELAY = 1.0


class MemoryEntries:
    """The entries in a dict; nothing is kept between runs."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self._values.get(key)

    def put(self, key: str, value: str) -> None:
        self._values[key] = value

    def apply(self, records: list[tuple[bytes | None, bytes | None]], next_offset: int) -> None:
        for key, value in records:
            if key is None:
                continue
            text = key.decode(errors="replace")
            if value is None:
                self._values.pop(text, None)
            else:
                self._values[text] = value.decode(errors="replace")

    def next_offset(self) -> int | None:
        return None

    def clear(self) -> None:
        self._values.clear()

    def __len__(self) -> int:
        return len(self._values)

    def any(self) -> bool:
        """Whether there may be an entry (False only when surely none)."""
        return bool(self._values)

    def close(self) -> None:
        pass


#: the key under which a disk store keeps the next offset to read (entry keys are never empty)
_OFFSET_KEY = b""


class DiskEntries:
    """The entries in a RocksDB database (rocksdict), with the next offset to read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open()
        #: False only while the store surely holds no entry (deletes do not make it False again)
        self._any = self._scan_any()

    def _scan_any(self) -> bool:
        return any(key != _OFFSET_KEY for key in self._db.keys())

    def _open(self) -> Any:
        from rocksdict import Options, Rdict  # only workers with the RocksDB store need it

        return Rdict(str(self.path), Options(raw_mode=True))

    def get(self, key: str) -> str | None:
        value = self._db.get(key.encode())
        return None if value is None else value.decode(errors="replace")

    def put(self, key: str, value: str) -> None:
        self._db[key.encode()] = value.encode()
        self._any = True

    def apply(self, records: list[tuple[bytes | None, bytes | None]], next_offset: int) -> None:
        """The records and the offset after them, in one write."""
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if not key:
                continue
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
                self._any = True
        batch.put(_OFFSET_KEY, str(next_offset).encode())
        self._db.write(batch)

    def next_offset(self) -> int | None:
        value = self._db.get(_OFFSET_KEY)
        return None if value is None else int(value)

    def clear(self) -> None:
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._db = self._open()
        self._any = False

    def __len__(self) -> int:
        return sum(1 for key in self._db.keys() if key != _OFFSET_KEY)

    def any(self) -> bool:
        """Whether there may be an entry (False only when surely none)."""
        return self._any

    def close(self) -> None:
        self._db.close()


class ReplicatedMap:
    """``name``'s entries, read whole by this worker; written through :meth:`entry`."""

    def __init__(self, app: "ConnectApp", name: str, topic_name: str | None = None) -> None:
        self.app = app
        self.name = name
        #: a changelog of the app's group by default; a flow's lasting map names its own topic
        self.topic_name = topic_name or f"{app.conf.id}-{name}-changelog"
        self.topic = app.topic(self.topic_name, key_serializer="raw", value_serializer="raw", partitions=1,
                               internal=True)
        app.owned.compact(self.topic_name)
        #: opened on first use, not when the app is built: a command that builds the app and never
        #: runs the worker (help, a refused setting) leaves the local store alone
        self._store: MemoryEntries | DiskEntries | None = None
        self._ready = asyncio.Event()
        app.task(self._follow)

    def _open(self) -> MemoryEntries | DiskEntries:
        settings = getattr(self.app, "settings", None)
        if settings is None or not str(getattr(settings.store, "value", settings.store)).startswith("rocksdb"):
            return MemoryEntries()
        path = Path(self.app.conf.tabledir) / "replicated" / self.topic_name
        try:
            return DiskEntries(path)
        except Exception as exc:  # noqa: BLE001 - the map still works, in memory and read whole
            log.warning("%s: local store %s not opened (%s: %s); keeping the map in memory", self.name, path,
                        type(exc).__name__, exc)
            return MemoryEntries()

    @property
    def _entries(self) -> MemoryEntries | DiskEntries:
        if self._store is None:
            self._store = self._open()
        return self._store

    def get(self, key: str) -> str | None:
        return self._entries.get(key)

    def __len__(self) -> int:
        return len(self._entries)

    def any(self) -> bool:
        """Whether the map may hold an entry: False only when it surely holds none (a cheap
        test before lookups that nearly always miss, as the list of people erased)."""
        return self._entries.any()

    def entry(self, key: str, value: str) -> tuple[Any, str, bytes]:
        """What to send to make ``key`` map to ``value`` everywhere: ``(topic, key, value)`` for a
        send the caller awaits as it does its other outputs. This worker sees it at once."""
        self._entries.put(key, value)
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
        async for records, caught_up in follow(bootstrap, self.topic_name, client_id=f"{self.app.conf.id}-{self.name}",
                                               since=self._since):
            if records:
                self._entries.apply([(record.key, record.value) for record in records], records[-1].offset + 1)
            if caught_up and not self._ready.is_set():
                log.info("%s: %d entries; ready", self.name, len(self._entries))
                self._ready.set()

    def _since(self, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Where to read from: after what the local store holds, when it is consistent with the
        topic; else from the start, with the store emptied."""
        kept = self._entries.next_offset()
        if kept is None:
            return starts
        if any(kept > end or kept < starts[tp] for tp, end in ends.items()):
            log.warning("%s: the local store read up to offset %d, outside the topic (%s); reading it again "
                        "from the start", self.name, kept, ", ".join(f"{starts[tp]}..{ends[tp]}" for tp in ends))
            self._entries.clear()
            return starts
        log.info("%s: %d offsets kept locally; reading from there", self.name, kept)
        return {tp: kept for tp in ends}
