"""A scripted Writer for engine and agent tests."""

from __future__ import annotations

import asyncio
from typing import Callable, Sequence

from connectors.envelope import SinkCommand
from connectors.sink import WriteOutcome, Writer

__all__ = ["FakeWriter", "command"]

Script = Callable[[SinkCommand, int], WriteOutcome | None]


def command(external_id: str, version: int, operation: str = "upsert", **fields: object) -> SinkCommand:
    return SinkCommand(system="salesforce", object="Contact", operation=operation,  # type: ignore[arg-type]
                       external_id_field="TIMS_Customer_ID__c", external_id=external_id,
                       fields=fields, version=version, record_key=f"ck-{external_id}")


class FakeWriter(Writer):
    """Records every call; ``script(command, attempt)`` may return a failure outcome, and
    ``raises`` (popped per call) may make a whole call fail."""

    system = "salesforce"

    def __init__(self, script: Script | None = None, max_batch: int = 200) -> None:
        self.max_batch = max_batch
        self.script = script
        self.calls: list[list[SinkCommand]] = []
        self.raises: list[BaseException] = []
        self.attempts: dict[str, int] = {}
        self.landed: dict[str, SinkCommand] = {}
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def write(self, commands: Sequence[SinkCommand]) -> list[WriteOutcome]:
        self.calls.append(list(commands))
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.raises:
            raise self.raises.pop(0)
        outcomes = []
        for c in commands:
            attempt = self.attempts[c.partition_key] = self.attempts.get(c.partition_key, 0) + 1
            failure = self.script(c, attempt) if self.script else None
            if failure is None:
                self.landed[c.partition_key] = c
                outcomes.append(WriteOutcome(c, ok=True, target_id=f"id-{c.external_id}", created=attempt == 1))
            else:
                outcomes.append(failure)
        return outcomes
