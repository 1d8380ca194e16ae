"""Pardot (Account Engagement) API v5 client: Salesforce OAuth token, business-unit header,
Pardot's limits, one retry policy.

Every call sends ``Authorization: Bearer <Salesforce access token>`` and
``Pardot-Business-Unit-Id``, holds one of the budget's concurrency slots (Pardot allows 5
concurrent requests per business unit) and counts towards the daily quota, which this process
tracks itself per UTC day (Pardot reports no usage on responses) and the budget enforces.
Translation at the boundary: 401 / code 184 → AuthExpiredError (one token refresh, then retry);
code 122 (daily limit met) → QuotaExhaustedError with the budget marked spent; 429 (code 66,
concurrency), 409 (code 62), 5xx and transport errors → RetryableError; any other 4xx →
FatalError carrying Pardot's numeric code.
"""

from __future__ import annotations

import time
import weakref
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable, Iterable, Mapping, Protocol

import httpx

from connectors.budget import ApiBudget
from connectors.errors import AuthExpiredError, FatalError, QuotaExhaustedError, RetryableError
from connectors.pardot.config import PardotConfig
from connectors.redact import redact_text
from connectors.retry import RetryPolicy, RetryStats

__all__ = ["PardotClient", "TokenSource", "DailyUsage", "API_PATH", "shared_budget", "usage_for"]

API_PATH = "/api/v5/objects"
_RETRYABLE_CODES = frozenset({66, 62, 183})
_AUTH_CODES = frozenset({184})
_DAILY_LIMIT_CODE = 122


class TokenSource(Protocol):
    """What Pardot needs of Salesforce auth (``connectors.salesforce.auth.TokenProvider``)."""

    async def token(self) -> Any:
        """An object with ``access_token``."""

    async def refresh(self, stale: Any = None) -> Any:
        """Replace ``stale`` unless another caller already did."""


class DailyUsage:
    """Requests made today (UTC), fed to the budget so it can hold calls near the limit."""

    def __init__(self, budget: ApiBudget, daily_limit: int, clock: Callable[[], float] = time.time) -> None:
        self.budget = budget
        self.daily_limit = daily_limit
        self._clock = clock
        self.day = self._today()
        self.used = 0

    def _today(self) -> str:
        return datetime.fromtimestamp(self._clock(), tz=timezone.utc).strftime("%Y-%m-%d")

    def count(self) -> None:
        today = self._today()
        if today != self.day:
            self.day, self.used = today, 0
        self.used += 1
        self.budget.observe(self.used, self.daily_limit)

    def spent(self) -> None:
        """Pardot said the limit is met (code 122), whatever our own count says."""
        self.used = max(self.used, self.daily_limit)
        self.budget.observe(self.used, self.daily_limit)


_SHARED: dict[tuple[str, str], ApiBudget] = {}
_USAGE: "weakref.WeakKeyDictionary[ApiBudget, DailyUsage]" = weakref.WeakKeyDictionary()


def shared_budget(config: PardotConfig) -> ApiBudget:
    """The process's one budget for this business unit: Pardot's limits are per business unit,
    so every writer and source of the process must draw on the same slots and count."""
    key = (config.base_url, config.business_unit_id)
    if key not in _SHARED:
        _SHARED[key] = ApiBudget("pardot", max_concurrent=config.max_concurrent)
    return _SHARED[key]


def usage_for(budget: ApiBudget, daily_limit: int, clock: Callable[[], float] = time.time) -> DailyUsage:
    """The daily count that feeds ``budget`` (clients sharing a budget share the count)."""
    usage = _USAGE.get(budget)
    if usage is None:
        usage = _USAGE[budget] = DailyUsage(budget, daily_limit, clock)
    return usage


class PardotClient:
    def __init__(self, config: PardotConfig, tokens: TokenSource, budget: ApiBudget | None = None,
                 policy: RetryPolicy | None = None, http: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.tokens = tokens
        self.budget = budget or ApiBudget("pardot", max_concurrent=config.max_concurrent)
        self.usage = usage_for(self.budget, config.daily_limit, clock)
        self.policy = policy or RetryPolicy()
        self.stats = RetryStats()
        self.calls = 0
        self._http = http or httpx.AsyncClient(timeout=config.timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      json: Any = None) -> httpx.Response:
        """One logical call under the retry policy, the quota and a concurrency slot."""
        used: list[Any] = []

        async def attempt() -> httpx.Response:
            await self.budget.wait_for_budget()
            token = await self.tokens.token()
            used.append(token)
            async with self.budget.slot():
                return await self._send(token.access_token, method, path, params, json)

        async def refresh() -> None:
            await self.tokens.refresh(used[-1] if used else None)

        return await self.policy.run(attempt, on_auth_expired=refresh, stats=self.stats)

    async def _send(self, access_token: str, method: str, path: str, params: Mapping[str, Any] | None,
                    json: Any) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {access_token}",
            "Pardot-Business-Unit-Id": self.config.business_unit_id,
            "Accept": "application/json",
        }
        self.calls += 1
        self.usage.count()
        try:
            response = await self._http.request(method, self.config.base_url + path, headers=headers,
                                                params=dict(params) if params else None, json=json)
        except httpx.TransportError as exc:
            raise RetryableError(f"Pardot {method} {path}: {type(exc).__name__}") from exc
        self._raise_for_status(response, method, path)
        return response

    def _raise_for_status(self, response: httpx.Response, method: str, path: str) -> None:
        status = response.status_code
        if status < 400:
            return
        code, message = _error(response)
        where = f"Pardot {method} {path}: {status} {code if code is not None else ''} {redact_text(message)}"
        where = " ".join(where.split())
        label = str(code) if code is not None else str(status)
        if status == 401 or code in _AUTH_CODES:
            raise AuthExpiredError(where, code=label, status=status)
        if code == _DAILY_LIMIT_CODE:
            self.usage.spent()
            raise QuotaExhaustedError(where, code=label, status=status)
        if status == 429 or status >= 500 or code in _RETRYABLE_CODES:
            raise RetryableError(where, code=label, status=status, retry_after=_retry_after(response))
        raise FatalError(where, code=label, status=status)

    # -- objects ---------------------------------------------------------------------------------

    async def query(self, collection: str, fields: Iterable[str], params: Mapping[str, Any] | None = None,
                    limit: int = 200) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of a v5 query (``fields=`` always; ``nextPageToken`` followed to the end)."""
        selected = ",".join(fields)
        query: dict[str, Any] = {"fields": selected, "limit": limit, **(params or {})}
        while True:
            body = (await self.request("GET", f"{API_PATH}/{collection}", params=query)).json()
            yield list(body.get("values") or [])
            token = body.get("nextPageToken")
            if not token:
                return
            query = {"nextPageToken": token, "fields": selected}

    async def read(self, collection: str, object_id: int, fields: Iterable[str]) -> dict[str, Any] | None:
        try:
            response = await self.request("GET", f"{API_PATH}/{collection}/{object_id}",
                                          params={"fields": ",".join(fields)})
        except FatalError as exc:
            if exc.status == 404:
                return None
            raise
        return response.json()

    async def create(self, collection: str, values: Mapping[str, Any], fields: Iterable[str] = ("id",)) -> dict[str, Any]:
        response = await self.request("POST", f"{API_PATH}/{collection}", params={"fields": ",".join(fields)},
                                      json=dict(values))
        return response.json()

    async def update(self, collection: str, object_id: int, values: Mapping[str, Any],
                     fields: Iterable[str] = ("id",)) -> dict[str, Any]:
        response = await self.request("PATCH", f"{API_PATH}/{collection}/{object_id}",
                                      params={"fields": ",".join(fields)}, json=dict(values))
        return response.json() if response.content else {"id": object_id}

    async def delete(self, collection: str, object_id: int) -> bool:
        """False when there was nothing to delete."""
        try:
            await self.request("DELETE", f"{API_PATH}/{collection}/{object_id}")
        except FatalError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def upsert_latest_by_email(self, email: str, values: Mapping[str, Any],
                                     fields: Iterable[str] = ("id",)) -> tuple[dict[str, Any], bool]:
        """Update the prospect with this email and the latest activity, else create one;
        returns (prospect, created)."""
        body = {"matchEmail": email, "prospect": dict(values), "fields": list(fields)}
        response = await self.request("POST", f"{API_PATH}/prospects/do/upsertLatestByEmail", json=body)
        return response.json(), response.status_code == 201


def _error(response: httpx.Response) -> tuple[int | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, response.reason_phrase
    if not isinstance(body, dict):
        return None, response.reason_phrase
    code = body.get("code")
    return (code if isinstance(code, int) else None), str(body.get("message") or "")


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None
