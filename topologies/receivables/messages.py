"""The receivables flow's stage messages, typed (docs/adr/0032).

``receivables.merge`` (key: the TIMS customer id) takes the customer's TIMS invoice, payment and
customer events, the news that one of its target records (Account, Contact, prospect) is
linked, what such a record showed of our fields, and the calendar's reviews.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import Field, TypeAdapter

from topologies.messages import EventMessage, StageMessage

__all__ = ["MergeEvent", "Linked", "Observed", "Review", "Release", "MERGE"]

MergeEvent = EventMessage


class Linked(StageMessage):
    """The customer's ``target`` record (``salesforce.Account`` …) is ``id``."""

    kind: Literal["linked"]
    target: str = Field(min_length=1)
    id: str = Field(min_length=1)


class Observed(StageMessage):
    """A target record showed these values of the fields we write there."""

    kind: Literal["observed"]
    target: str = Field(min_length=1)
    id: str = Field(min_length=1)
    fields: dict[str, Any]
    #: the change was ours (its origin names our client): an echo; None: cannot tell
    ours: bool | None = None


class Review(StageMessage):
    """The date turned: figures that depend on it (overdue, days past due) are computed again."""

    kind: Literal["review"]


class Release(StageMessage):
    """An operator released a change an anomaly rule held (``record`` or ``invoices:<id>``,
    ``payments:<id>``): it counts from now on."""

    kind: Literal["release"]
    subject: str = Field(min_length=1)
    operator: str | None = None


MERGE = TypeAdapter(Union[Linked, Observed, Review, Release, EventMessage])
