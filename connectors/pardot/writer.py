"""Sink writer for Pardot: prospects (by id, or ``upsertLatestByEmail``) and list memberships.

Pardot v5 has no batch write, so each command is one call. Commands for different records run
concurrently, within the concurrency slots (5) and daily budget that every Pardot client of the
process shares for the business unit (``shared_budget``); commands for one
record (one ``partition_key``) run in their batch order. Commands:

- ``prospect`` keyed by ``id``: update that prospect (``delete``: to the recycle bin);
- ``prospect`` keyed by ``email``: ``upsertLatestByEmail`` (the prospect with that email and the
  latest activity, else a new one), ``target_id`` the prospect id, ``created`` as Pardot says;
- ``list_membership`` keyed by ``<listId>:<prospectId>`` (or ``listId``/``prospectId`` in
  fields): ``upsert`` adds the prospect to the list (already a member: ``optedOut`` is
  brought in line), ``delete`` removes it; both are idempotent.
- ``list`` keyed by ``name`` (Pardot's internal list name, unique in a business unit): update the
  list with that name, else create it; ``target_id`` the list id (a list v5 cannot look up by
  any other key; the lists flow names the lists it publishes, docs/adr/0026).
- ``custom_redirect`` keyed by ``name``: update the custom redirect with that name, else create
  it (``campaignId`` and ``destinationUrl`` are required then); ``target_id`` its id. v5 filters
  custom redirects by id and dates only, so the writer reads their names (one call per 1,000) and
  matches here; the shop catalogue flow names the redirects it publishes (docs/adr/0039).

Fields go out as given: a None is JSON null, which clears the field in v5.

A record's refusal (bad email, unknown id, email in use) is a final outcome; throttling and
outages are retryable outcomes. A spent daily quota, a rejected token or a wrong business unit
fail the whole call (RetryableError / FatalError), since every command would fail the same way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Sequence

from connectors.envelope import SinkCommand
from connectors.errors import FatalError, QuotaExhaustedError, RetryableError
from connectors.pardot.client import PardotClient, TokenSource, shared_budget
from connectors.pardot.config import PardotConfig
from connectors.redact import redact_text
from connectors.sink import WriteOutcome, Writer

__all__ = ["PardotWriter"]

#: header and business-unit errors: the configuration is wrong, not the record
_CONFIG_CODES = frozenset({"181", "182", "201"})
_ALREADY_MEMBER = "58"
log = logging.getLogger(__name__)


class PardotWriter(Writer):
    system = "pardot"
    max_batch = 50

    def __init__(self, config: PardotConfig, tokens: TokenSource, *, client: PardotClient | None = None) -> None:
        """``tokens``: the process's Salesforce token provider (the caller keeps and closes it)."""
        self.client = client or PardotClient(config, tokens, shared_budget(config))

    async def close(self) -> None:
        await self.client.aclose()
        if self.client.budget.sharing is not None:
            await self.client.budget.sharing.aclose()

    async def check_auth(self) -> None:
        """The Salesforce token Pardot takes (no Pardot call: its daily quota is small)."""
        await self.client.tokens.token()

    async def write(self, commands: Sequence[SinkCommand]) -> list[WriteOutcome]:
        groups: dict[str, list[int]] = {}
        for index, command in enumerate(commands):
            groups.setdefault(command.partition_key, []).append(index)
        outcomes: list[WriteOutcome | None] = [None] * len(commands)

        async def run(indexes: list[int]) -> None:
            for index in indexes:
                outcomes[index] = await self._guarded(commands[index])

        results = await asyncio.gather(*(run(g) for g in groups.values()), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if isinstance(failure, QuotaExhaustedError):
            raise RetryableError(f"Pardot daily API limit met: {failure}", code=failure.code,
                                 status=failure.status, retry_after=self.client.budget.pause) from failure
        if failure is not None:
            raise failure
        return [o for o in outcomes if o is not None]

    async def _guarded(self, command: SinkCommand) -> WriteOutcome:
        try:
            return await self._operation(command)(command)
        except RetryableError as exc:
            return _failed(command, exc.code or "unavailable", str(exc), retryable=True)
        except FatalError as exc:
            if exc.code in _CONFIG_CODES or exc.status not in (400, 404, 409):
                raise
            return _failed(command, exc.code or str(exc.status), str(exc))
        except ValueError as exc:
            return _failed(command, "invalid_command", str(exc))

    def _operation(self, command: SinkCommand) -> Callable[[SinkCommand], Awaitable[WriteOutcome]]:
        key = (command.object, command.operation, command.external_id_field)
        operations: dict[tuple[str, str, str], Callable[[SinkCommand], Awaitable[WriteOutcome]]] = {
            ("prospect", "upsert", "id"): self._update_prospect,
            ("prospect", "upsert", "email"): self._upsert_by_email,
            ("prospect", "delete", "id"): self._delete_prospect,
            ("list", "upsert", "name"): self._upsert_list,
            ("custom_redirect", "upsert", "name"): self._upsert_redirect,
        }
        if command.object == "list_membership":
            return self._add_membership if command.operation == "upsert" else self._remove_membership
        if key not in operations:
            raise ValueError(f"Pardot writes {command.object} {command.operation} by "
                             f"{command.external_id_field}: not supported")
        return operations[key]

    async def _update_prospect(self, command: SinkCommand) -> WriteOutcome:
        prospect_id = _int(command.external_id, "prospect id")
        await self.client.update("prospects", prospect_id, command.fields)
        return WriteOutcome(command, ok=True, target_id=str(prospect_id), created=False)

    async def _upsert_by_email(self, command: SinkCommand) -> WriteOutcome:
        values = {k: v for k, v in command.fields.items() if not (k == "email" and v == command.external_id)}
        prospect, created = await self.client.upsert_latest_by_email(command.external_id, values)
        return WriteOutcome(command, ok=True, target_id=str(prospect["id"]), created=created)

    async def _delete_prospect(self, command: SinkCommand) -> WriteOutcome:
        prospect_id = _int(command.external_id, "prospect id")
        await self.client.delete("prospects", prospect_id)
        return WriteOutcome(command, ok=True, target_id=str(prospect_id), created=False)

    async def _upsert_list(self, command: SinkCommand) -> WriteOutcome:
        return await self._upsert_by_name(command, "lists", {"name": command.external_id})

    async def _upsert_redirect(self, command: SinkCommand) -> WriteOutcome:
        return await self._upsert_by_name(command, "custom-redirects", {"orderBy": "id"}, limit=1000)

    async def _upsert_by_name(self, command: SinkCommand, collection: str, params: dict[str, Any],
                              limit: int = 200) -> WriteOutcome:
        """Update the object of ``collection`` named ``command.external_id``, else create it."""
        values = {k: v for k, v in command.fields.items() if k != "name"}
        found: list[dict[str, Any]] = []
        async for page in self.client.query(collection, ("id", "name"), params, limit=limit):
            found.extend(row for row in page if row.get("name") == command.external_id)
        if found:
            if values:
                await self.client.update(collection, int(found[0]["id"]), values)
            return WriteOutcome(command, ok=True, target_id=str(found[0]["id"]), created=False)
        created = await self.client.create(collection, {"name": command.external_id, **values}, fields=("id",))
        return WriteOutcome(command, ok=True, target_id=str(created["id"]), created=True)

    async def _add_membership(self, command: SinkCommand) -> WriteOutcome:
        list_id, prospect_id = _membership_ids(command)
        values: dict[str, Any] = {"listId": list_id, "prospectId": prospect_id}
        if "optedOut" in command.fields:
            values["optedOut"] = bool(command.fields["optedOut"])
        try:
            created = await self.client.create("list-memberships", values, fields=("id",))
            return WriteOutcome(command, ok=True, target_id=str(created["id"]), created=True)
        except FatalError as exc:
            if exc.code != _ALREADY_MEMBER:
                raise
        found = await self._memberships(list_id, prospect_id)
        if not found:
            raise RetryableError(f"Pardot says prospect {prospect_id} is on list {list_id}, but no membership is found",
                                 code="membership_not_found")
        existing = found[0]
        if "optedOut" in values and existing.get("optedOut") != values["optedOut"]:
            await self.client.update("list-memberships", int(existing["id"]), {"optedOut": values["optedOut"]})
        return WriteOutcome(command, ok=True, target_id=str(existing["id"]), created=False)

    async def _remove_membership(self, command: SinkCommand) -> WriteOutcome:
        list_id, prospect_id = _membership_ids(command)
        removed = [m for m in await self._memberships(list_id, prospect_id)
                   if await self.client.delete("list-memberships", int(m["id"]))]
        return WriteOutcome(command, ok=True, target_id=str(removed[0]["id"]) if removed else None, created=False)

    async def _memberships(self, list_id: int, prospect_id: int) -> list[dict[str, Any]]:
        params = {"listId": list_id, "prospectId": prospect_id}
        found: list[dict[str, Any]] = []
        async for page in self.client.query("list-memberships", ("id", "listId", "prospectId", "optedOut"), params):
            found.extend(page)
        return found


def _int(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValueError(f"{what} must be a number, not {value!r}")


def _membership_ids(command: SinkCommand) -> tuple[int, int]:
    list_raw, prospect_raw = command.fields.get("listId"), command.fields.get("prospectId")
    if list_raw is None or prospect_raw is None:
        list_raw, _, prospect_raw = command.external_id.partition(":")
    return _int(list_raw, "listId"), _int(prospect_raw, "prospectId")


def _failed(command: SinkCommand, code: str, message: str, *, retryable: bool = False) -> WriteOutcome:
    safe = redact_text(message)
    shown = redact_text(command.external_id) if command.external_id_field == "email" else command.external_id
    log.warning("Pardot refused %s %s %s=%s: %s %s", command.operation, command.object, command.external_id_field,
                shown, code, safe)
    return WriteOutcome(command, ok=False, retryable=retryable, error_code=code, error=safe)

