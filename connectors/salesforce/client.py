"""Salesforce REST client on ``connectors.http_client``: one retry policy, one API budget fed by
``Sforce-Limit-Info``, the token's instance URL.

Translation at the boundary: 401 → AuthExpiredError (refresh once, retry); 429, 5xx,
UNABLE_TO_LOCK_ROW and concurrent-request REQUEST_LIMIT_EXCEEDED → RetryableError; the daily
REQUEST_LIMIT_EXCEEDED → RetryableError after a long pause, with the budget marked spent; any
other 4xx → FatalError carrying Salesforce's errorCode. Every call carries
``Sforce-Call-Options: client=<client_name>`` so our own writes are recognisable in CDC events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterable, Mapping, Sequence

import httpx

from connectors.budget import ApiBudget
from connectors.errors import AuthExpiredError, ConnectorError, RetryableError
from connectors.http_client import HttpClient, HttpFailure
from connectors.retry import RetryPolicy
from connectors.salesforce.auth import Token, TokenProvider
from connectors.salesforce.config import SalesforceConfig

__all__ = ["SalesforceRest", "RecordResult", "RecordError", "COLLECTION_LIMIT", "RETRYABLE_RECORD_CODES"]

COLLECTION_LIMIT = 200
RETRYABLE_RECORD_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"})
_DAILY_LIMIT_PAUSE = 300.0


@dataclass(frozen=True)
class RecordError:
    code: str
    message: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordResult:
    """One record's outcome in a collection call (results come back in request order)."""

    success: bool
    id: str | None = None
    created: bool | None = None
    errors: tuple[RecordError, ...] = field(default=())

    @property
    def retryable(self) -> bool:
        return not self.success and any(e.code in RETRYABLE_RECORD_CODES for e in self.errors)


class SalesforceRest(HttpClient):
    system = "Salesforce"
    retryable_codes = RETRYABLE_RECORD_CODES
    tokens: TokenProvider
    budget: ApiBudget

    def __init__(
        self,
        config: SalesforceConfig,
        tokens: TokenProvider,
        budget: ApiBudget | None = None,
        policy: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(timeout=config.timeout, tokens=tokens, budget=budget or ApiBudget("salesforce"),
                         policy=policy, http=http)
        self.config = config

    @property
    def base_path(self) -> str:
        return f"/services/data/v{self.config.api_version}"

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: Mapping[str, Any] | None = None) -> httpx.Response:
        """One logical call with retries; ``path`` is absolute (/services/...) or under base_path."""
        if not path.startswith("/services/"):
            path = f"{self.base_path}/{path.lstrip('/')}"
        return await super().request(method, path, json=json, params=params)

    def _url(self, credential: Token, path: str) -> str:
        return credential.instance_url + path

    def _headers(self, credential: Token) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {credential.access_token}",
            "Sforce-Call-Options": f"client={self.config.client_name}",
            "Accept": "application/json",
        }

    def _observe_usage(self, response: httpx.Response) -> None:
        self.budget.observe_header(response.headers.get("Sforce-Limit-Info"))

    def _read_error(self, response: httpx.Response) -> tuple[str, str]:
        errors = _errors(response)
        if not errors:
            return "", response.reason_phrase
        return str(errors[0].get("errorCode", "")), str(errors[0].get("message", ""))

    def _error_for(self, failure: HttpFailure) -> ConnectorError:
        """Salesforce's 401 carries no code of its own; the daily REQUEST_LIMIT_EXCEEDED marks the
        budget spent and pauses long, where the concurrent-request one is an ordinary retry."""
        if failure.status == 401:
            return AuthExpiredError(failure.where, code=failure.code or "INVALID_SESSION_ID", status=failure.status)
        if failure.code == "REQUEST_LIMIT_EXCEEDED" and "total" in failure.message.lower():
            self.budget.observe(self.budget.usage.limit or 1, self.budget.usage.limit or 1)
            return RetryableError(failure.where, code=failure.code, status=failure.status,
                                  retry_after=_DAILY_LIMIT_PAUSE)
        return super()._error_for(failure)

    # -- operations ----------------------------------------------------------------------------
    async def query(self, soql: str, *, include_deleted: bool = False) -> AsyncIterator[dict[str, Any]]:
        """All rows of a SOQL query, following nextRecordsUrl; ``include_deleted`` runs it as
        queryAll (deleted records too, with IsDeleted true)."""
        response = await self.request("GET", "queryAll" if include_deleted else "query", params={"q": soql})
        while True:
            body = response.json()
            for row in body.get("records", []):
                row.pop("attributes", None)
                yield row
            next_url = body.get("nextRecordsUrl")
            if body.get("done", True) or not next_url:
                return
            response = await self.request("GET", next_url)

    async def retrieve(self, sobject: str, ids: Sequence[str], fields: Iterable[str]) -> list[dict[str, Any]]:
        """Current state of records by id (missing or deleted ids are simply absent)."""
        columns = ", ".join(dict.fromkeys(["Id", *fields]))
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), COLLECTION_LIMIT):
            chunk = ids[start:start + COLLECTION_LIMIT]
            quoted = ", ".join(f"'{_soql_literal(i)}'" for i in chunk)
            rows.extend([row async for row in self.query(f"SELECT {columns} FROM {sobject} WHERE Id IN ({quoted})")])
        return rows

    async def upsert_collection(self, sobject: str, external_id_field: str,
                                records: Sequence[dict[str, Any]], all_or_none: bool = False) -> list[RecordResult]:
        """sObject Collections upsert of up to 200 records; per-record results in request order."""
        if not 0 < len(records) <= COLLECTION_LIMIT:
            raise ValueError(f"a collection call takes 1..{COLLECTION_LIMIT} records, got {len(records)}")
        payload = {
            "allOrNone": all_or_none,
            "records": [{"attributes": {"type": sobject}, **record} for record in records],
        }
        response = await self.request("PATCH", f"composite/sobjects/{sobject}/{external_id_field}", json=payload)
        return [_record_result(item) for item in response.json()]

    async def limits(self) -> dict[str, Any]:
        return (await self.request("GET", "limits")).json()


def _soql_literal(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _record_result(item: dict[str, Any]) -> RecordResult:
    errors = tuple(
        RecordError(str(e.get("statusCode") or e.get("errorCode") or "UNKNOWN"), str(e.get("message", "")),
                    tuple(e.get("fields") or ()))
        for e in item.get("errors") or ()
    )
    return RecordResult(bool(item.get("success")), item.get("id"), item.get("created"), errors)


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        return []
    if isinstance(body, dict):
        body = [body]
    return [e for e in body if isinstance(e, dict)] if isinstance(body, list) else []
