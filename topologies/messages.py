"""Stage messages every flow uses: a typed base, and a source event on its way to a stage.

On the wire a stage message is a JSON object whose ``kind`` tells it apart; what does not
validate is quarantined by the stage that reads it (``topologies.stage.read_message``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["StageMessage", "EventMessage"]


class StageMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class EventMessage(StageMessage):
    """A source event forwarded unchanged (its JSON) to the stage keyed by the record it belongs to."""

    kind: Literal["event"] = "event"
    event: dict[str, Any]
