"""Salesforce sink writer: sObject Collections upserts (and deletes) by external id.

One call per object and external-id field, up to 200 records (the framework chunks batches
to ``max_batch``), ``allOrNone: false`` so one bad record does not hold back the rest. Each
record's result becomes a :class:`~connectors.sink.WriteOutcome`: lock contention and
transient server errors are retryable; everything else (INVALID_FIELD,
REQUIRED_FIELD_MISSING, FIELD_CUSTOM_VALIDATION_EXCEPTION, DUPLICATES_DETECTED, several
records matching one external id ...) is not, and goes to the DLQ. A field whose value is None
goes out as JSON null, which clears it in the REST API (``fieldsToNull`` is SOAP's way): that is
how a field cleared in another system is cleared here, so fields are never filtered on None.

Token refresh on 401, backoff on 429/503/UNABLE_TO_LOCK_ROW/REQUEST_LIMIT_EXCEEDED, the
``Sforce-Call-Options`` header and the daily-quota pause all live in the
:class:`~connectors.salesforce.client.SalesforceRest` the writer is given, so every
Salesforce caller in the process shares them. A call that still fails after the client's
retries becomes an outcome for each of its records (retryable or not); only credentials the
org keeps refusing raise, as :class:`~connectors.errors.AuthExpiredError`: nothing is wrong
with the commands then, and they must not be dead-lettered.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

from connectors.envelope import SinkCommand
from connectors.errors import AuthExpiredError, FatalError, RetryableError
from connectors.salesforce.client import (COLLECTION_LIMIT, RETRYABLE_RECORD_CODES, RecordError, RecordResult,
                                          SalesforceRest, _record_result, _soql_literal)
from connectors.sink import WriteOutcome, Writer

__all__ = ["SalesforceWriter"]

#: OAuth error codes the token endpoint answers with: our credentials, not the commands
_OAUTH_ERRORS = frozenset({
    "invalid_grant", "invalid_client", "invalid_client_id", "invalid_client_credentials",
    "unsupported_grant_type", "invalid_request", "inactive_user", "inactive_org",
})
_Group = tuple[str, str, str]  # operation, object, external-id field


class SalesforceWriter(Writer):
    system = "salesforce"
    max_batch = COLLECTION_LIMIT

    def __init__(self, rest: SalesforceRest, *, owns_client: bool = False) -> None:
        self.rest = rest
        self._owns_client = owns_client

    async def close(self) -> None:
        if self._owns_client:
            await self.rest.aclose()
            await self.rest.tokens.aclose()

    async def check_auth(self) -> None:
        """A token from the token endpoint (no API call; a cached token answers at once)."""
        await self.rest.tokens.token()

    async def write(self, commands: Sequence[SinkCommand]) -> list[WriteOutcome]:
        groups: dict[_Group, list[int]] = defaultdict(list)
        for index, command in enumerate(commands):
            groups[(command.operation, command.object, command.external_id_field)].append(index)
        outcomes: list[WriteOutcome | None] = [None] * len(commands)
        for (operation, sobject, id_field), indexes in groups.items():
            batch = [commands[i] for i in indexes]
            for start in range(0, len(batch), COLLECTION_LIMIT):
                part = batch[start:start + COLLECTION_LIMIT]
                if operation == "upsert":
                    results = await self._guarded(part, self._upsert(sobject, id_field, part))
                else:
                    results = await self._guarded(part, self._delete(sobject, id_field, part))
                for index, outcome in zip(indexes[start:start + COLLECTION_LIMIT], results):
                    outcomes[index] = outcome
        return [o for o in outcomes if o is not None]

    async def _guarded(self, commands: list[SinkCommand], call: Any) -> list[WriteOutcome]:
        """Run one request; a failed call becomes the same outcome for each of its records."""
        try:
            return await call
        except RetryableError as exc:
            code = exc.code or str(exc.status or "RETRYABLE")
            return [WriteOutcome(c, ok=False, retryable=True, error_code=code, error=str(exc)) for c in commands]
        except FatalError as exc:
            if _credentials_refused(exc):
                raise AuthExpiredError(str(exc), code=exc.code, status=exc.status) from exc
            code = exc.code or str(exc.status or "FATAL")
            return [WriteOutcome(c, ok=False, error_code=code, error=str(exc)) for c in commands]

    async def _upsert(self, sobject: str, id_field: str, commands: list[SinkCommand]) -> list[WriteOutcome]:
        records = [{id_field: c.external_id, **c.fields} for c in commands]
        results = await self.rest.upsert_collection(sobject, id_field, records)
        if len(results) != len(commands):
            raise RetryableError(f"Salesforce returned {len(results)} results for {len(commands)} records")
        return [_outcome(c, r) for c, r in zip(commands, results)]

    async def _delete(self, sobject: str, id_field: str, commands: list[SinkCommand]) -> list[WriteOutcome]:
        """Delete by external id: look the ids up, delete what exists. A record that is
        already gone counts as deleted (a replayed delete changes nothing)."""
        matches = await self._ids_by_external_id(sobject, id_field, [c.external_id for c in commands])
        outcomes: dict[int, WriteOutcome] = {}
        to_delete: list[tuple[int, str]] = []
        for index, command in enumerate(commands):
            ids = matches.get(_norm(command.external_id), [])
            if not ids:
                outcomes[index] = WriteOutcome(command, ok=True, created=False)
            elif len(ids) > 1:
                outcomes[index] = WriteOutcome(
                    command, ok=False, error_code="MULTIPLE_MATCHES",
                    error=f"{len(ids)} {sobject} records have {id_field} = this external id")
            else:
                to_delete.append((index, ids[0]))
        if to_delete:
            response = await self.rest.request(
                "DELETE", "composite/sobjects",
                params={"ids": ",".join(i for _, i in to_delete), "allOrNone": "false"})
            for (index, record_id), item in zip(to_delete, response.json()):
                result = _record_result(item)
                gone = any(e.code == "ENTITY_IS_DELETED" for e in result.errors)
                outcomes[index] = (WriteOutcome(commands[index], ok=True, target_id=record_id, created=False)
                                   if gone else _outcome(commands[index], result, record_id))
        missing = [i for i in range(len(commands)) if i not in outcomes]
        for index in missing:
            outcomes[index] = WriteOutcome(commands[index], ok=False, retryable=True, error_code="NO_RESULT",
                                           error="Salesforce returned no result for this record")
        return [outcomes[i] for i in range(len(commands))]

    async def _ids_by_external_id(self, sobject: str, id_field: str, values: list[str]) -> dict[str, list[str]]:
        if id_field.lower() == "id":
            return {_norm(v): [v] for v in values}
        quoted = ", ".join(f"'{_soql_literal(v)}'" for v in dict.fromkeys(values))
        found: dict[str, list[str]] = defaultdict(list)
        async for row in self.rest.query(f"SELECT Id, {id_field} FROM {sobject} WHERE {id_field} IN ({quoted})"):
            value = next((v for k, v in row.items() if k.lower() == id_field.lower()), None)
            if value is not None:
                found[_norm(str(value))].append(str(row["Id"]))
        return found


def _credentials_refused(exc: FatalError) -> bool:
    return exc.status == 401 or (exc.code or "") in _OAUTH_ERRORS


def _norm(value: str) -> str:
    return value.casefold()


def _outcome(command: SinkCommand, result: RecordResult, record_id: str | None = None) -> WriteOutcome:
    if result.success:
        return WriteOutcome(command, ok=True, target_id=result.id or record_id, created=result.created)
    errors = result.errors or (RecordError("UNKNOWN", "Salesforce gave no error detail"),)
    lead = next((e for e in errors if not result.retryable or e.code in RETRYABLE_RECORD_CODES), errors[0])
    text = "; ".join(f"{e.code}: {e.message}" + (f" ({', '.join(e.fields)})" if e.fields else "") for e in errors)
    return WriteOutcome(command, ok=False, retryable=result.retryable, error_code=lead.code, error=text,
                        target_id=record_id)

