"""The hand-off between the simulated REST API and the simulated event bus.

Every write to the simulated org, ours and the "UI's" alike, produces one :class:`RecordChange`
per record, given to a :class:`ChangeListener` (the event bus, which turns it into an Avro
change event on its channels). Gap and overflow events are injected on the bus directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["ChangeType", "RecordChange", "ChangeListener"]

ChangeType = str  # "CREATE" | "UPDATE" | "DELETE" | "UNDELETE"


@dataclass(frozen=True)
class RecordChange:
    """One committed change to one record, as the org saw it."""

    entity: str  # sObject API name, e.g. "Contact"
    record_id: str  # 18-character Salesforce id
    change_type: ChangeType
    #: field values after the change: every field on CREATE/UNDELETE, changed fields on UPDATE
    fields: dict[str, Any]
    changed_fields: tuple[str, ...] = ()  # UPDATE: fields whose value changed (including nulled)
    nulled_fields: tuple[str, ...] = ()  # UPDATE: fields set to null
    #: "com/salesforce/api/rest/<version>;client=<Sforce-Call-Options client>" or "" (UI)
    change_origin: str = ""
    commit_user: str = ""  # user id (005...)
    commit_timestamp: int = 0  # epoch milliseconds
    commit_number: int = 0
    transaction_key: str = ""
    sequence_number: int = 1  # order inside the transaction
    extra: dict[str, Any] = field(default_factory=dict)


class ChangeListener(Protocol):
    def publish(self, change: RecordChange) -> None: ...
