"""Pardot (Account Engagement) API v5 client on ``connectors.http_client``: Salesforce OAuth
token, business-unit header, Pardot's limits, one retry policy.

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
from typing import Any, AsyncIterator, Callable, Iterable, Mapping

import httpx

from connectors.budget import ApiBudget
from connectors.errors import AuthExpiredError, ConnectorError, QuotaExhaustedError
from connectors.http_client import HttpClient, HttpFailure, TokenSource
from connectors.pardot.config import PardotConfig
from connectors.redact import redact_text
from connectors.retry import RetryPolicy

__all__ = ["PardotClient", "TokenSource", "DailyUsage", "API_PATH", "shared_budget", "usage_for", "share_quota"]

API_PATH = "/api/v5/objects"
_AUTH_CODE = "184"
_DAILY_LIMIT_CODE = "122"


class DailyUsage:
    """Requests made today (UTC), fed to the budget so it can hold calls near the limit; with a
    shared budget (``connectors/pardot/quota.py``) the other processes' count of the day too."""

    def __init__(self, budget: ApiBudget, daily_limit: int, clock: Callable[[], float] = time.time) -> None:
        self.budget = budget
        self.daily_limit = daily_limit
        self._clock = clock
        self.day = self._today()
        self.used = 0
        #: the other processes' calls today (set by the shared quota)
        self.others = 0

    def _today(self) -> str:
        return datetime.fromtimestamp(self._clock(), tz=timezone.utc).strftime("%Y-%m-%d")

    def current_day(self) -> str:
        """Today (UTC), starting this process's count again on a new day."""
        today = self._today()
        if today != self.day:
            self.day, self.used, self.others = today, 0, 0
        return self.day

    def observe(self) -> None:
        self.budget.observe(self.used + self.others, self.daily_limit)

    def count(self) -> None:
        self.current_day()
        self.used += 1
        self.observe()

    def spent(self) -> None:
        """Pardot said the limit is met (code 122), whatever our own count says."""
        self.used = max(self.used, self.daily_limit - self.others)
        self.observe()


_SHARED: dict[tuple[str, str], ApiBudget] = {}
_USAGE: "weakref.WeakKeyDictionary[ApiBudget, DailyUsage]" = weakref.WeakKeyDictionary()


def shared_budget(config: PardotConfig) -> ApiBudget:
    """The process's one budget for this business unit: Pardot's limits are per business unit,
    so every writer and source of the process must draw on the same slots and count."""
    key = (config.base_url, config.business_unit_id)
    if key not in _SHARED:
        _SHARED[key] = ApiBudget("pardot", max_concurrent=config.max_concurrent)
    return _SHARED[key]


def share_quota(budget: ApiBudget, config: PardotConfig, target: Any) -> None:
    """Share ``budget`` with every other process through Kafka (``target``: the process's
    ``KafkaTarget``), once per process; a no-op when ``CONNECT_PARDOT_SHARED_QUOTA`` is off."""
    if budget.sharing is not None or not config.shared_quota:
        return
    from connectors.pardot.quota import SharedQuota

    budget.sharing = SharedQuota(target, budget, usage_for(budget, config.daily_limit), config.business_unit_id,
                                 config.max_concurrent)


def usage_for(budget: ApiBudget, daily_limit: int, clock: Callable[[], float] = time.time) -> DailyUsage:
    """The daily count that feeds ``budget`` (clients sharing a budget share the count)."""
    usage = _USAGE.get(budget)
    if usage is None:
        usage = _USAGE[budget] = DailyUsage(budget, daily_limit, clock)
    return usage


class PardotClient(HttpClient):
    system = "Pardot"
    retryable_codes = frozenset({"66", "62", "183"})
    tokens: TokenSource
    budget: ApiBudget

    def __init__(self, config: PardotConfig, tokens: TokenSource, budget: ApiBudget | None = None,
                 policy: RetryPolicy | None = None, http: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        budget = budget or ApiBudget("pardot", max_concurrent=config.max_concurrent)
        super().__init__(timeout=config.timeout, tokens=tokens, budget=budget, policy=policy, http=http)
        self.config = config
        self.usage = usage_for(budget, config.daily_limit, clock)

    def _url(self, credential: Any, path: str) -> str:
        return self.config.base_url + path

    def _headers(self, credential: Any) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {credential.access_token}",
            "Pardot-Business-Unit-Id": self.config.business_unit_id,
            "Accept": "application/json",
        }

    def _count_request(self) -> None:
        self.usage.count()

    def _read_error(self, response: httpx.Response) -> tuple[str, str]:
        try:
            body = response.json()
        except ValueError:
            return "", response.reason_phrase
        if not isinstance(body, dict):
            return "", response.reason_phrase
        code = body.get("code")
        return (str(code) if isinstance(code, int) else ""), redact_text(str(body.get("message") or ""))

    def _error_for(self, failure: HttpFailure) -> ConnectorError:
        """Pardot's code 184 is an expired token whatever the status; 122 means today's quota is spent."""
        if failure.status == 401 or failure.code == _AUTH_CODE:
            return AuthExpiredError(failure.where, code=failure.label, status=failure.status)
        if failure.code == _DAILY_LIMIT_CODE:
            self.usage.spent()
            return QuotaExhaustedError(failure.where, code=failure.label, status=failure.status)
        return super()._error_for(failure)

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
        response = await self.request_unless_missing("GET", f"{API_PATH}/{collection}/{object_id}",
                                                     params={"fields": ",".join(fields)})
        return response.json() if response is not None else None

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
        return await self.request_unless_missing("DELETE", f"{API_PATH}/{collection}/{object_id}") is not None

    async def upsert_latest_by_email(self, email: str, values: Mapping[str, Any],
                                     fields: Iterable[str] = ("id",)) -> tuple[dict[str, Any], bool]:
        """Update the prospect with this email and the latest activity, else create one;
        returns (prospect, created)."""
        body = {"matchEmail": email, "prospect": dict(values), "fields": list(fields)}
        response = await self.request("POST", f"{API_PATH}/prospects/do/upsertLatestByEmail", json=body)
        return response.json(), response.status_code == 201
