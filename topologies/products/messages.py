"""The products flow's stage message: a source event on its way to its item's ``merge``.

A value that is not one (not an object, another kind, no event) fails validation and is
quarantined by ``merge`` instead of raising inside the agent.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter

__all__ = ["MergeEvent", "MERGE"]


class MergeEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Literal["event"] = "event"
    #: the source event's JSON, forwarded unchanged
    event: dict[str, Any]

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


MERGE = TypeAdapter(MergeEvent)
