"""Batched agents: what a stage that takes ``noack_take`` batches needs from Faust.

Faust picks a table key's partition (for the changelog, and the RocksDB partition it reads)
from the stream's *current event*. An agent that takes a batch has events from several
partitions in hand, so each table read or write must run with its key's own event as the
current one (:func:`as_current`).

:func:`run_batches` runs a stage in batches (docs/adr/0011): each event is handled in turn
against a :class:`Batch` (working copies of table rows, sends whose acks are collected), then
the batch settles (one wait for every ack, then the table writes), and only then are its events
acked, in order, so the offsets Faust commits never pass an event whose work is not safe.
``take()`` is never used: it acks a batch whose generator is closed mid-way (docs/adr/0007).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import weakref
from typing import Any, Awaitable, Callable, Iterator

import faust.streams
from faust.types import EventT, StreamT

__all__ = ["as_current", "Batch", "Send", "Handler", "run_batches"]

#: ``send(topic, key, value)`` publishes and returns the future of the broker's ack
Send = Callable[[Any, str, Any], Awaitable[Any]]


@contextlib.contextmanager
def as_current(event: EventT) -> Iterator[None]:
    """Make ``event`` the current event for the duration of the block."""
    token = faust.streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)


class Batch:
    """The working state of one batch, settled as a whole by :meth:`settle`.

    A table row is read once per batch, as a copy, under the event that first asks for it;
    later events of the batch read and change that copy, so events for one key see each
    other's changes in offset order while the table itself stays as it was until the batch
    settles: an interrupted batch leaves nothing half-done, whatever the store."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._rows: dict[tuple[str, str], Any] = {}
        self._changed: dict[tuple[str, str], tuple[Any, EventT]] = {}
        self._sent: list[Any] = []
        #: what a handler keeps about the batch between its events (e.g. events per key)
        self.notes: dict[Any, Any] = {}

    def get(self, table: Any, key: str, event: EventT) -> Any:
        slot = (table.name, key)
        if slot not in self._rows:
            with as_current(event):
                self._rows[slot] = copy.deepcopy(table.get(key))
        return self._rows[slot]

    def put(self, table: Any, key: str, value: Any, event: EventT) -> None:
        """Write ``value`` when the batch settles, under ``event`` (the latest event for the key:
        it came from the partition that owns the key); ``None`` deletes the row."""
        slot = (table.name, key)
        self._rows[slot] = value
        self._changed[slot] = (table, event)

    def forget(self, table: Any, key: str) -> None:
        """Drop the working copy of one row (the next ``get`` reads the table again) and any
        pending write of it: for an event whose handling failed half-way."""
        self._rows.pop((table.name, key), None)
        self._changed.pop((table.name, key), None)

    async def send(self, topic: Any, key: str, value: Any) -> None:
        """Publish now; the batch's writes wait for the ack (they would stop a redone event from
        publishing it again)."""
        self._sent.append(await self._send(topic, key, value))

    async def settle(self) -> None:
        """One wait for every ack, then the writes, each under its own event."""
        if self._sent:
            await asyncio.gather(*self._sent)
        for (_, key), (table, event) in self._changed.items():
            with as_current(event):
                value = self._rows[(table.name, key)]
                if value is None:  # a deleted row: a tombstone in the changelog, not a null value
                    table.pop(key, None)
                else:
                    table[key] = value
        self._sent.clear()
        self._changed.clear()


Handler = Callable[[Batch, EventT], Awaitable[None]]


async def run_batches(stream: StreamT, handle: Handler, send: Send, *, size: int, linger: float) -> None:
    """A batched stage: ``handle`` each event of a batch in turn, settle the batch, then ack its
    events in order."""
    async for events in stream.noack_take(size, within=linger):
        batch = Batch(send)
        for event in events:
            await handle(batch, event)
        await batch.settle()
        for event in events:
            await stream.ack(event)
