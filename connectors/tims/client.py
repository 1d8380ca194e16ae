"""TIMS client for the contract in docs/tims-openapi.yaml, on ``connectors.http_client``: every call
goes through one retry policy.

Translation at the boundary: 429 (``rate_limited``, ``quota_exceeded``), 503, 409 ``record_locked``,
other 5xx and transport errors → RetryableError carrying Retry-After; 401 → FatalError (an API
key cannot be refreshed: the operator must fix CONNECT_TIMS_API_KEY); any other 4xx → FatalError
with the contract's error code. The API key decides who we are in TIMS' ``modified_by``, which is
how our own writes are told apart in the change feed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import quote

import httpx

from connectors.errors import ConnectorError, FatalError
from connectors.http_client import HttpClient, HttpFailure
from connectors.redact import redact_text
from connectors.retry import RetryPolicy
from connectors.tims.config import TimsConfig
from connectors.tims.resources import RESOURCES, Resource, resource_for

__all__ = [
    "TimsClient", "ChangePage", "BatchResult", "Resource", "RESOURCES", "MAX_BATCH",
    "RETRYABLE_CODES", "resource_for",
]

MAX_BATCH = 200
RETRYABLE_CODES = frozenset({"rate_limited", "quota_exceeded", "service_unavailable", "record_locked"})


@dataclass(frozen=True)
class ChangePage:
    changes: list[dict[str, Any]]
    next_cursor: str
    has_more: bool


@dataclass(frozen=True)
class BatchResult:
    """One record's result in a batch upsert (results come back in request order)."""

    index: int
    success: bool
    id: str | None = None
    created: bool | None = None
    changed: bool | None = None
    version: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_field: str | None = None


class TimsClient(HttpClient):
    """``request`` paths start with /v1/."""

    system = "TIMS"
    retryable_codes = RETRYABLE_CODES

    def __init__(self, config: TimsConfig, policy: RetryPolicy | None = None,
                 http: httpx.AsyncClient | None = None) -> None:
        super().__init__(timeout=config.timeout, policy=policy, http=http)
        self.config = config

    def _url(self, credential: None, path: str) -> str:
        return self.config.base_url + path

    def _headers(self, credential: None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.config.api_key.get_secret_value()}",
            "Accept": "application/json",
            "User-Agent": f"pardot-tims-connect ({self.config.client_name})",
        }

    def _read_error(self, response: httpx.Response) -> tuple[str, str]:
        try:
            body = response.json()
        except ValueError:
            return "", response.reason_phrase
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return "", response.reason_phrase
        return str(error.get("code") or ""), redact_text(str(error.get("message") or ""))

    def _error_for(self, failure: HttpFailure) -> ConnectorError:
        """An API key cannot be refreshed: a 401 is fatal and names the setting to fix."""
        if failure.status == 401:
            return FatalError(f"{failure.where}; TIMS rejected the API key: check CONNECT_TIMS_API_KEY",
                              code=failure.code or "unauthorized", status=failure.status)
        return super()._error_for(failure)

    # -- change feed ---------------------------------------------------------------------------

    async def changes(self, *, cursor: str | None = None, since: str | None = None, limit: int = 100,
                      entities: Iterable[str] | None = None) -> ChangePage:
        """One page of ``GET /v1/changes`` (by opaque ``cursor`` or from the instant ``since``)."""
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        elif since:
            params["since"] = since
        wanted = ",".join(entities or ())
        if wanted:
            params["entity"] = wanted
        body = (await self.request("GET", "/v1/changes", params=params)).json()
        return ChangePage(list(body.get("changes") or []), str(body["next_cursor"]), bool(body.get("has_more")))

    # -- records -------------------------------------------------------------------------------

    async def list_page(self, entity: str, *, after: str | None = None,
                        limit: int = 100) -> tuple[list[dict[str, Any]], bool]:
        """Records in id order after ``after``; the flag says whether more follow."""
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        body = (await self.request("GET", f"/v1/{resource_for(entity).name}", params=params)).json()
        return list(body.get("records") or []), bool(body.get("has_more"))

    async def get(self, entity: str, record_id: str) -> dict[str, Any] | None:
        return await self._get_or_none(f"/v1/{resource_for(entity).name}/{_segment(record_id)}")

    async def get_by_external_id(self, entity: str, external_id: str) -> dict[str, Any] | None:
        return await self._get_or_none(f"/v1/{resource_for(entity).name}/by-external-id/{_segment(external_id)}")

    async def update(self, entity: str, record_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into one record by TIMS id (``None`` clears a field)."""
        path = f"/v1/{resource_for(entity).name}/{_segment(record_id)}"
        return (await self.request("PATCH", path, json=dict(changes))).json()

    async def delete(self, entity: str, record_id: str) -> bool:
        """Delete by TIMS id; False when it was already gone."""
        path = f"/v1/{resource_for(entity).name}/{_segment(record_id)}"
        return await self.request_unless_missing("DELETE", path) is not None

    async def batch_upsert(self, entity: str, records: Sequence[Mapping[str, Any]]) -> list[BatchResult]:
        """Upsert up to 200 records keyed by ``external_id``; one result per record, in order."""
        if not 0 < len(records) <= MAX_BATCH:
            raise ValueError(f"a batch upsert takes 1..{MAX_BATCH} records, got {len(records)}")
        path = f"/v1/{resource_for(entity).name}/batch-upsert"
        body = (await self.request("POST", path, json={"records": list(records)})).json()
        results = [_batch_result(item) for item in body.get("results") or []]
        if len(results) != len(records):
            raise FatalError(f"TIMS {path} answered {len(results)} results for {len(records)} records")
        return sorted(results, key=lambda r: r.index)

    async def _get_or_none(self, path: str) -> dict[str, Any] | None:
        response = await self.request_unless_missing("GET", path)
        return response.json() if response is not None else None


def _segment(value: str) -> str:
    return quote(value, safe="")


def _batch_result(item: Mapping[str, Any]) -> BatchResult:
    error = item.get("error") or {}
    return BatchResult(
        index=int(item.get("index", -1)), success=bool(item.get("success")), id=item.get("id"),
        created=item.get("created"), changed=item.get("changed"), version=item.get("version"),
        error_code=error.get("code"), error_message=error.get("message"), error_field=error.get("field"),
    )
