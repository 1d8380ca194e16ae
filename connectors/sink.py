"""The contract between the sink framework (stream_app/sinks) and each system's writer.

A :class:`Writer` turns a batch of :class:`~connectors.envelope.SinkCommand` for one object
into API calls and reports one :class:`WriteOutcome` per command, in order. It never raises for
a single record's failure (that is an outcome); it raises ``RetryableError`` or ``FatalError``
(connectors.errors) when the whole call failed. Retries of retryable outcomes, the version
guard, per-key order and the DLQ belong to the framework, not to writers.

Lifecycle: ``start()`` → ``write(batch)`` any number of times → ``close()``. ``check_auth()``
may run at any time in between: readiness asks it, at most once per
``CONNECT_HEALTH_AUTH_INTERVAL`` (docs/adr/0024).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence

from connectors.envelope import SinkCommand

__all__ = ["Writer", "WriteOutcome"]


@dataclass(frozen=True)
class WriteOutcome:
    command: SinkCommand
    ok: bool
    #: a failure worth retrying (lock contention, a transient error on this record)
    retryable: bool = False
    error_code: str | None = None
    error: str | None = None
    #: the record's id in the target system (Salesforce Id, TIMS customer_id, Pardot prospect id)
    target_id: str | None = None
    created: bool | None = None


class Writer(abc.ABC):
    system: str
    #: most commands one ``write`` call takes (e.g. 200 for sObject Collections)
    max_batch: int = 200

    async def start(self) -> None:
        return None

    @abc.abstractmethod
    async def write(self, commands: Sequence[SinkCommand]) -> list[WriteOutcome]:
        """Apply commands for one object type; one outcome per command, in order."""

    async def check_auth(self) -> None:
        """Raise ``AuthExpiredError`` or ``FatalError`` when the target refuses our credentials;
        one light call at most (none when a cached token answers). The default checks nothing."""
        return None

    async def close(self) -> None:
        return None
