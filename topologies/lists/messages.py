"""The lists flow's stage messages, typed (docs/adr/0026).

``lists.merge`` is keyed three ways: ``who:<Lead or Contact Id>`` (a person's memberships),
``prospect:<Pardot id>`` (list memberships of a prospect not yet synced with Salesforce, held
until it is) and ``segment:<TIMS id>`` (a segment's publication, and the people waiting for its
list and Campaign to exist).

Each message that ``merge`` decides by the replicated ``people`` map carries the entries it is about
(``links``, reference → value): ``merge`` may run on a worker whose copy of the map has not read
them yet, and reads them first (``topologies.told_links``, docs/adr/0026, addendum).
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, TypeAdapter

from topologies.messages import EventMessage, StageMessage

__all__ = ["Recheck", "Linked", "Park", "LinkedEvent", "MERGE"]


class Recheck(StageMessage):
    """To ``who:``: something the person's memberships waited for is known now (the prospect, a
    segment's list or Campaign): bring every target in line again."""

    kind: Literal["recheck"]
    #: the links that released the person (absent in messages from before they were carried)
    links: dict[str, str] = Field(default_factory=dict)


class Linked(StageMessage):
    """To ``prospect:`` (its Lead or Contact is known now) or ``segment:`` (its list or Campaign is
    known now): release what waits."""

    kind: Literal["linked"]
    #: the links learned (absent in messages from before they were carried)
    links: dict[str, str] = Field(default_factory=dict)


class Park(StageMessage):
    """To ``segment:``: the person ``who`` waits for the segment's list or Campaign."""

    kind: Literal["park"]
    who: str = Field(min_length=1)


class LinkedEvent(EventMessage):
    """A source event on its way to ``merge``, with the links its sender read for it (a
    CampaignMember's Campaign, a list's segment, a prospect's Lead or Contact)."""

    links: dict[str, str] = Field(default_factory=dict)


MERGE = TypeAdapter(Union[Recheck, Linked, Park, LinkedEvent])
