"""The orders flow's stage messages, typed (docs/adr/0021).

``orders.merge`` (key: the order's row key) takes source events and rechecks; ``orders.waiting``
(key: a reference, ``account:<id>``, ``customer:<id>``, ``product2:<id>``, or ``total:<order>``
for lines that do not add up yet) takes the orders that wait for it, the news that it is
linked, and the end of a grace.
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, TypeAdapter

from topologies.messages import EventMessage, StageMessage

__all__ = ["MergeEvent", "Recheck", "Park", "Linked", "Expire", "MERGE", "WAITING"]

MergeEvent = EventMessage


class Recheck(StageMessage):
    """A reference the order waited for is linked: evaluate the order again."""

    kind: Literal["recheck"]
    #: the order's grace for its lines is over: what still does not add up is quarantined
    final: bool = False
    #: the links that released the order (reference → linked id): the order's stage may read the
    #: replicated link map before its own copy has caught up with them
    links: dict[str, str] = Field(default_factory=dict)


class Park(StageMessage):
    """The order ``key`` waits for the message key's reference (since ``since``, epoch ms)."""

    kind: Literal["park"]
    key: str = Field(min_length=1)
    since: int = Field(ge=0)


class Linked(StageMessage):
    """The message key's reference is linked now: release what waits for it."""

    kind: Literal["linked"]
    #: the id it is linked to (absent in messages from before it was carried)
    value: str | None = None


class Expire(StageMessage):
    """The message key's orders have waited their grace (``total:<key>``): recheck them, finally."""

    kind: Literal["expire"]


MERGE = TypeAdapter(Union[Recheck, EventMessage])
WAITING = TypeAdapter(Union[Park, Linked, Expire])
