"""The products flow's stage message: a source event on its way to its item's ``merge``."""

from __future__ import annotations

from pydantic import TypeAdapter

from topologies.messages import EventMessage

__all__ = ["MergeEvent", "MERGE"]

MergeEvent = EventMessage
MERGE = TypeAdapter(EventMessage)
