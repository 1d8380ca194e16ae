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
    "MergeAbsorb", "MergeAbsorbed", "MergeUnmerge", "MergeRestore", "MatchCandidate", "MatchProfile", "MatchForget",
    "IDENTIFY", "MERGE", "MATCH", "MATCH_KEY",
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


class MergeAbsorb(_Message):
    """Merge the customer of the message key (the duplicate) into ``into`` (the survivor): sent by
    ``stream-app identity review accept`` (docs/adr/0036). ``merge_id`` is the review's id."""

    kind: Literal["absorb"]
    into: str = Field(min_length=1)
    merge_id: str = Field(min_length=1)
    by: str = "unknown"


class MergeAbsorbed(_Message):
    """The duplicate's golden record, as it was when it was absorbed, for the survivor to fold in."""

    kind: Literal["absorbed"]
    source: str = Field(min_length=1)
    record: dict[str, Any]
    merge_id: str = Field(min_length=1)
    by: str = "unknown"


class MergeUnmerge(_Message):
    """A reviewer says merge ``merge_id`` was wrong: the survivor (the message key) gives back what
    it took and tells the duplicate to come back."""

    kind: Literal["unmerge"]
    merge_id: str = Field(min_length=1)
    by: str = "unknown"


class MergeRestore(_Message):
    """The duplicate (the message key) is a customer of its own again; its writes need a version
    above ``version`` (what the survivor wrote to records they shared)."""

    kind: Literal["restore"]
    merge_id: str = Field(min_length=1)
    version: int = Field(ge=0)
    by: str = "unknown"


class MatchCandidate(_Message):
    """A would-be new customer (no known reference, an email the index does not know): the match
    stage decides link, review or new (docs/adr/0036)."""

    kind: Literal["candidate"] = "candidate"
    event: dict[str, Any]
    email: str = Field(min_length=3)


class MatchProfile(_Message):
    """A golden record's matching fields changed: the blocking index follows."""

    kind: Literal["profile"]
    customer_key: str = Field(min_length=1)
    fields: dict[str, Any]


class MatchForget(_Message):
    """The customer was erased: the blocking index forgets their profiles, keys and emails."""

    kind: Literal["forget"]
    customer_key: str = Field(min_length=1)


class TimsLinkEntry(BaseModel):
    """An entry of ``links.tims`` as the TIMS sink writes it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    record_key: str = Field(min_length=1)
    tims_id: str = Field(min_length=1)
    #: the TIMS object written; other flows' objects (items, sales orders) are not customers
    object: str = "customer"


#: validators of each stage's input: ``IDENTIFY.validate_python(value)`` → one of the models
IDENTIFY = TypeAdapter(Union[IdentifyLink, IdentifyErase, IdentifyEvent])
MERGE = TypeAdapter(Union[MergeTimsLink, MergeErase, MergeAbsorb, MergeAbsorbed, MergeUnmerge, MergeRestore, MergeEvent])
MATCH = TypeAdapter(Union[MatchProfile, MatchForget, MatchCandidate])
#: the match stage's one message key: every would-be new customer passes one partition, in order,
#: so the blocking index has one writer and two new records of one person see each other
MATCH_KEY = "match"
