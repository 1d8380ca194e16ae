"""The customer sync's stage messages, typed.

On the wire they stay the JSON objects earlier versions wrote (a ``kind`` field tells them
apart), so a replay or a rebuild reads old messages too. A message that is not one of these
(not an object, a wrong kind, a missing field) fails validation and is quarantined by the
stage that reads it, instead of raising inside the agent.

``event`` is kept as the source event's JSON: each stage forwards it unchanged, and only the
stages that need its fields validate it as a ``SourceEvent``.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "IdentifyEvent", "IdentifyLink", "IdentifyErase", "MergeEvent", "MergeTimsLink", "MergeErase", "TimsLinkEntry",
    "IDENTIFY", "MERGE",
]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class IdentifyEvent(_Message):
    """A source event with no known reference and no email, keyed by its own reference
    (``tries[0]``); ``tries`` are the references it names, its own first. It is parked under
    its own reference until one of them is linked to a customer."""

    kind: Literal["event"] = "event"
    event: dict[str, Any]
    tries: list[str] = Field(min_length=1)


class IdentifyLink(_Message):
    """A source reference now belongs to ``customer_key`` (from merge)."""

    kind: Literal["link"]
    ref: str = Field(min_length=1)
    customer_key: str = Field(min_length=1)


class IdentifyErase(_Message):
    """The person behind the message key's reference was erased (``stream-app privacy erase``):
    forget the events parked under it and its link."""

    kind: Literal["erase"]


class MergeEvent(_Message):
    kind: Literal["event"] = "event"
    event: dict[str, Any]


class MergeTimsLink(_Message):
    """The TIMS writer created the customer's TIMS record."""

    kind: Literal["tims_link"]
    tims_id: str = Field(min_length=1)


class MergeErase(_Message):
    """The customer was erased (``stream-app privacy erase``): delete the golden record."""

    kind: Literal["erase"]


class TimsLinkEntry(BaseModel):
    """An entry of ``links.tims`` as the TIMS sink writes it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    record_key: str = Field(min_length=1)
    tims_id: str = Field(min_length=1)
    #: the TIMS object written; other flows' objects (items, sales orders) are not customers
    object: str = "customer"


#: validators of each stage's input: ``IDENTIFY.validate_python(value)`` → one of the models
IDENTIFY = TypeAdapter(Union[IdentifyLink, IdentifyErase, IdentifyEvent])
MERGE = TypeAdapter(Union[MergeTimsLink, MergeErase, MergeEvent])
