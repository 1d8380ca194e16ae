"""The two messages that cross the Kafka boundary: source events and sink commands.

Sources publish :class:`SourceEvent` on ``src.<system>.<entity>`` keyed by the record id; the
topologies publish :class:`SinkCommand` on ``sink.<system>.<object>`` keyed by the target record
(``SinkCommand.partition_key``), so every command for one record shares a partition and stays
in order. Both are JSON; both carry what is needed to dedupe and to measure latency.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from connectors.sanitize import sanitize

__all__ = ["SourceEvent", "SinkCommand", "ChangeKind", "System"]


#: a system's name as ``connectors/registry.py`` lists it. A name, not a Literal and not a
#: registry lookup: a connector added by entry point is accepted without editing this module,
#: the envelope stays below the registry (no import cycle), and validating an event costs no
#: lookup. Whether a system is registered matters where it is used: the sinks refuse a command
#: for another system than theirs, and a flow has no mapping for a system it does not know.
System = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
#: SNAPSHOT: the full current state read by query (backfill, gap refetch, resync)
ChangeKind = Literal["CREATE", "UPDATE", "DELETE", "UNDELETE", "SNAPSHOT"]


class SourceEvent(BaseModel):
    """One change to one record, as a source saw it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: stable for the same change, whoever reads it and however often (the dedupe key)
    event_id: str = Field(min_length=1)
    source: System
    entity: str = Field(min_length=1)
    record_id: str = Field(min_length=1)
    change_type: ChangeKind
    #: values after the change; all fields when ``full_state``, else the changed ones
    fields: dict[str, Any] = Field(default_factory=dict)
    full_state: bool = False
    changed_fields: list[str] = Field(default_factory=list)
    nulled_fields: list[str] = Field(default_factory=list)
    #: when the source system committed the change, epoch milliseconds
    commit_timestamp: int = Field(ge=0)
    #: Salesforce changeOrigin, TIMS modified_by, ...: who made the change (echo detection)
    change_origin: str | None = None
    commit_user: str | None = None
    #: where the source was when it read this (replay id as hex, cursor, ...)
    position: dict[str, Any] = Field(default_factory=dict)
    schema_version: int = 1
    #: field paths whose text was made safe where the event was built (connectors/sanitize.py)
    sanitized_fields: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _safe_text(cls, data: Any) -> Any:
        """Lone surrogates and control characters never travel further than the edge."""
        if isinstance(data, dict) and isinstance(data.get("fields"), dict):
            fields, changed = sanitize(data["fields"])
            if changed:
                earlier = data.get("sanitized_fields") or []
                data = {**data, "fields": fields, "sanitized_fields": [*earlier, *[c for c in changed if c not in earlier]]}
        return data

    @model_serializer(mode="wrap")
    def _without_empty_sanitized(self, handler: Any) -> dict[str, Any]:
        """Leave ``sanitized_fields`` out when empty: events stay as earlier versions wrote them,
        so a worker not upgraded yet still reads them."""
        data = handler(self)
        if not data.get("sanitized_fields"):
            data.pop("sanitized_fields", None)
        return data


class SinkCommand(BaseModel):
    """One write a sink must make: an upsert (or a delete, where a flow allows it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: System
    object: str = Field(min_length=1)  # Contact, Account, customer, prospect, list_membership
    operation: Literal["upsert", "delete"] = "upsert"
    external_id_field: str = Field(min_length=1)
    external_id: str = Field(min_length=1)
    fields: dict[str, Any] = Field(default_factory=dict)
    #: the golden record's version; a sink never applies a lower one over a higher one
    version: int = Field(ge=0)
    #: per-field versions where they differ from ``version`` (a dead letter of several folded
    #: commands carries each field's own version, so its replay is guarded field by field)
    field_versions: dict[str, int] | None = None
    #: our customer key (or other golden-record key) this command derives from
    record_key: str = Field(min_length=1)
    #: commit time of the source change that caused this command (latency), epoch ms
    source_commit_timestamp: int | None = None
    source_event_id: str | None = None
    idempotency_key: str = ""

    @model_validator(mode="after")
    def _default_idempotency_key(self) -> "SinkCommand":
        if not self.idempotency_key:
            digest = hashlib.sha256(
                f"{self.system}|{self.object}|{self.external_id_field}|{self.external_id}|{self.operation}|{self.version}".encode()
            ).hexdigest()[:32]
            object.__setattr__(self, "idempotency_key", digest)
        return self

    def version_of(self, name: str) -> int:
        """The version of one field of this command (``version`` unless set per field)."""
        if self.field_versions and name in self.field_versions:
            return self.field_versions[name]
        return self.version

    @property
    def partition_key(self) -> str:
        """All commands for one target record share this key, hence a partition and an order."""
        return f"{self.system}:{self.object}:{self.external_id}"
