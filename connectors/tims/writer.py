"""Sink writer for TIMS: batch upsert by ``external_id``, merge by TIMS id, delete.

Commands keyed by ``external_id`` (the Salesforce id) go out in batch upserts of at most 200,
idempotent by that key, so a retried batch creates nothing twice; the outcome's ``target_id`` is
the TIMS id (``customer_id`` …) the framework publishes as a link. Commands keyed by the TIMS id
field (``customer_id``: a customer that existed in TIMS first, now linked to Salesforce) are
merged one by one. Consecutive commands of one kind are grouped, so per-record order inside a
batch holds. Per-record errors become outcomes: ``validation_error`` and ``duplicate_value`` are
final, ``unknown_reference`` and ``record_locked`` worth retrying (the referenced record may
arrive later). Our API key makes TIMS stamp ``modified_by`` with our client name on every write,
which is how the change feed shows our own writes. A None goes out as JSON null, which the
contract defines as a clear (of a ``nullable`` field) on batch upserts and merges alike.
"""

from __future__ import annotations

import logging
from typing import Sequence

from connectors.envelope import SinkCommand
from connectors.errors import FatalError, QuotaExhaustedError, RetryableError
from connectors.redact import redact_text
from connectors.sink import WriteOutcome, Writer
from connectors.tims.client import MAX_BATCH, RESOURCES, BatchResult, Resource, TimsClient
from connectors.tims.config import TimsConfig

__all__ = ["TimsWriter", "RETRYABLE_RECORD_CODES"]

RETRYABLE_RECORD_CODES = frozenset({"unknown_reference", "record_locked"})
_PER_RECORD_STATUSES = frozenset({400, 404, 409, 412, 422})
log = logging.getLogger(__name__)


def _resource(name: str) -> Resource | None:
    """``customer`` or ``customers`` → the resource."""
    return RESOURCES.get(name) or next((r for r in RESOURCES.values() if r.name == name), None)


class TimsWriter(Writer):
    system = "tims"
    max_batch = MAX_BATCH

    def __init__(self, config: TimsConfig, *, client: TimsClient | None = None) -> None:
        self.client = client or TimsClient(config)

    async def close(self) -> None:
        await self.client.aclose()

    async def check_auth(self) -> None:
        """One customer read with our API key: a refused key is a FatalError (401)."""
        await self.client.list_page("customer", limit=1)

    async def write(self, commands: Sequence[SinkCommand]) -> list[WriteOutcome]:
        outcomes: list[WriteOutcome | None] = [None] * len(commands)
        pending: list[int] = []
        for index, command in enumerate(commands):
            resource = _resource(command.object)
            if resource is None:
                outcomes[index] = _failed(command, "unknown_object", f"TIMS has no object {command.object!r}")
                continue
            if command.operation == "upsert" and command.external_id_field == "external_id":
                pending.append(index)
                if len(pending) == self.max_batch:
                    await self._upsert_batch(commands, pending, outcomes)
                    pending = []
                continue
            if pending:
                await self._upsert_batch(commands, pending, outcomes)
                pending = []
            outcomes[index] = await self._one(command, resource)
        if pending:
            await self._upsert_batch(commands, pending, outcomes)
        assert all(o is not None for o in outcomes)
        return [o for o in outcomes if o is not None]

    async def _upsert_batch(self, commands: Sequence[SinkCommand], indexes: list[int],
                            outcomes: list[WriteOutcome | None]) -> None:
        by_entity: dict[str, list[int]] = {}
        for index in indexes:
            resource = _resource(commands[index].object)
            assert resource is not None
            by_entity.setdefault(resource.entity, []).append(index)
        for entity, group in by_entity.items():
            records = [{**commands[i].fields, "external_id": commands[i].external_id} for i in group]
            results = await self.client.batch_upsert(entity, records)
            for index, result in zip(group, results):
                outcomes[index] = _from_result(commands[index], result)

    async def _one(self, command: SinkCommand, resource: Resource) -> WriteOutcome:
        try:
            if command.operation == "delete":
                return await self._delete(command, resource)
            if command.external_id_field != resource.id_field:
                return _failed(command, "unsupported_key",
                               f"TIMS {resource.name} are written by external_id or {resource.id_field}, "
                               f"not {command.external_id_field}")
            fields = {k: v for k, v in command.fields.items() if k != resource.id_field}
            record = await self.client.update(resource.entity, command.external_id, fields)
            return WriteOutcome(command, ok=True, target_id=str(record.get(resource.id_field) or command.external_id),
                                created=False)
        except (RetryableError, QuotaExhaustedError) as exc:
            return _failed(command, exc.code or "unavailable", str(exc), retryable=True)
        except FatalError as exc:
            if exc.status not in _PER_RECORD_STATUSES:
                raise
            return _failed(command, exc.code or str(exc.status), str(exc),
                           retryable=exc.code in RETRYABLE_RECORD_CODES)

    async def _delete(self, command: SinkCommand, resource: Resource) -> WriteOutcome:
        if command.external_id_field == resource.id_field:
            record_id: str | None = command.external_id
        else:
            found = await self.client.get_by_external_id(resource.entity, command.external_id)
            record_id = found.get(resource.id_field) if found else None
        if record_id is not None:
            await self.client.delete(resource.entity, record_id)
        return WriteOutcome(command, ok=True, target_id=record_id, created=False)


def _from_result(command: SinkCommand, result: BatchResult) -> WriteOutcome:
    if result.success:
        return WriteOutcome(command, ok=True, target_id=result.id, created=result.created)
    code = result.error_code or "unknown_error"
    where = f" ({result.error_field})" if result.error_field else ""
    return _failed(command, code, f"{result.error_message or code}{where}", retryable=code in RETRYABLE_RECORD_CODES)


def _failed(command: SinkCommand, code: str, message: str, *, retryable: bool = False) -> WriteOutcome:
    safe = redact_text(message)
    log.warning("TIMS refused %s %s=%s: %s %s", command.object, command.external_id_field, command.external_id,
                code, safe)
    return WriteOutcome(command, ok=False, retryable=retryable, error_code=code, error=safe)


