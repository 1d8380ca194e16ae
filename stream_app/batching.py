"""What agents that take batches of events need from Faust.

Faust picks a table key's partition (for the changelog, and the RocksDB partition it reads)
from the stream's *current event*. An agent that takes a batch (``noack_take``) has events from
several partitions in hand, so each table read or write must run with its key's own event as
the current one.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Iterator

import faust.streams
from faust.types import EventT

__all__ = ["as_current"]


@contextlib.contextmanager
def as_current(event: EventT) -> Iterator[None]:
    """Make ``event`` the current event for the duration of the block."""
    token = faust.streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)
