"""Salesforce REST client: every call goes through one retry policy and one API budget.

Translation at the boundary: 401 → AuthExpiredError (refresh once, retry); 429, 5xx,
UNABLE_TO_LOCK_ROW and concurrent-request REQUEST_LIMIT_EXCEEDED → RetryableError; the daily
REQUEST_LIMIT_EXCEEDED → RetryableError after a long pause, with the budget marked spent; any
other 4xx → FatalError carrying Salesforce's errorCode. Every call carries
``Sforce-Call-Options: client=<client_name>`` so our own writes are recognisable in CDC events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterable, Sequence

import httpx

from connectors.budget import ApiBudget
from connectors.errors import AuthExpiredError, FatalError, RetryableError
from connectors.retry import RetryPolicy, RetryStats
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


class SalesforceRest:
    def __init__(
        self,
        config: SalesforceConfig,
        tokens: TokenProvider,
        budget: ApiBudget | None = None,
        policy: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.tokens = tokens
        self.budget = budget or ApiBudget("salesforce")
        self.policy = policy or RetryPolicy()
        self.stats = RetryStats()
        self.calls = 0
        self._http = http or httpx.AsyncClient(timeout=config.timeout)

    @property
    def base_path(self) -> str:
        return f"/services/data/v{self.config.api_version}"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: dict[str, Any] | None = None) -> httpx.Response:
        """One logical call with retries; ``path`` is absolute (/services/...) or under base_path."""
        if not path.startswith("/services/"):
            path = f"{self.base_path}/{path.lstrip('/')}"
        used: list[Token] = []

        async def attempt() -> httpx.Response:
            await self.budget.wait_for_budget()
            token = await self.tokens.token()
            used.append(token)
            async with self.budget.slot():
                return await self._send(token, method, path, json, params)

        async def refresh() -> None:
            await self.tokens.refresh(used[-1] if used else None)

        return await self.policy.run(attempt, on_auth_expired=refresh, stats=self.stats)

    async def _send(self, token: Token, method: str, path: str, json: Any,
                    params: dict[str, Any] | None) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {token.access_token}",
            "Sforce-Call-Options": f"client={self.config.client_name}",
            "Accept": "application/json",
        }
        self.calls += 1
        try:
            response = await self._http.request(method, token.instance_url + path, json=json,
                                                params=params, headers=headers)
        except httpx.TransportError as exc:
            raise RetryableError(f"Salesforce {method} {path}: {type(exc).__name__}") from exc
        self.budget.observe_header(response.headers.get("Sforce-Limit-Info"))
        _raise_for_status(response, method, path, self.budget)
        return response

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


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def _raise_for_status(response: httpx.Response, method: str, path: str, budget: ApiBudget) -> None:
    status = response.status_code
    if status < 400 or status == 300:
        return
    errors = _errors(response)
    code = str(errors[0].get("errorCode", "")) if errors else ""
    message = str(errors[0].get("message", "")) if errors else response.reason_phrase
    where = f"Salesforce {method} {path}: {status} {code or ''} {message}".strip()
    if status == 401:
        raise AuthExpiredError(where, code=code or "INVALID_SESSION_ID", status=status)
    if code == "REQUEST_LIMIT_EXCEEDED" and "total" in message.lower():
        budget.observe(budget.usage.limit or 1, budget.usage.limit or 1)
        raise RetryableError(where, code=code, status=status, retry_after=_DAILY_LIMIT_PAUSE)
    if status == 429 or status >= 500 or code in RETRYABLE_RECORD_CODES:
        raise RetryableError(where, code=code or str(status), status=status, retry_after=_retry_after(response))
    raise FatalError(where, code=code or str(status), status=status)
