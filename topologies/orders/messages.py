"""The orders flow's stage messages, typed (docs/adr/0021).

``orders.merge`` (key: the order's row key) takes source events and rechecks; ``orders.waiting``
(key: a reference, ``account:<id>``, ``customer:<id>`` or ``product2:<id>``) takes the orders
that wait for it and the news that it is linked.
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, TypeAdapter

from topologies.messages import EventMessage, StageMessage

__all__ = ["MergeEvent", "Recheck", "Park", "Linked", "MERGE", "WAITING"]

MergeEvent = EventMessage


class Recheck(StageMessage):
    """A reference the order waited for is linked: evaluate the order again."""

    kind: Literal["recheck"]


class Park(StageMessage):
    """The order ``key`` waits for the message key's reference (since ``since``, epoch ms)."""

    kind: Literal["park"]
    key: str = Field(min_length=1)
    since: int = Field(ge=0)


class Linked(StageMessage):
    """The message key's reference is linked now: release what waits for it."""

    kind: Literal["linked"]


MERGE = TypeAdapter(Union[Recheck, EventMessage])
WAITING = TypeAdapter(Union[Park, Linked])
