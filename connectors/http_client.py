"""The request skeleton every REST client (Salesforce, Pardot, TIMS) shares.

One logical call is ``RetryPolicy.run`` over attempts; each attempt rebuilds its request::

    budget.wait_for_budget()            hold while the daily quota is at its reserve
    credential = tokens.token()         none for an API-key client
    with budget.slot():                 concurrency cap, if the system has one
        calls += 1; _count_request()    Pardot's own daily count
        send(_url, _headers)            transport error ─► RetryableError
        _observe_usage(response)        Salesforce's Sforce-Limit-Info
        status >= 400 ─► raise _error_for(HttpFailure read by _read_error)

The default mapping, which a client extends with its own codes before deferring to it::

    401                                      AuthExpiredError: tokens.refresh(stale) once, retry
    429, 5xx, a code in retryable_codes      RetryableError(retry_after=Retry-After)
    any other 4xx                            FatalError(code=the API's code, else the status)

Counters the metrics layer reads: ``calls``, ``stats`` (RetryStats), ``budget``, ``tokens``.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, AsyncContextManager, ClassVar, Mapping, Protocol

import httpx

from connectors.budget import ApiBudget
from connectors.errors import AuthExpiredError, ConnectorError, FatalError, RetryableError
from connectors.retry import RetryPolicy, RetryStats

__all__ = ["HttpClient", "HttpFailure", "TokenSource"]


class TokenSource(Protocol):
    """What a bearer-token client needs of auth (``connectors.salesforce.auth.TokenProvider``)."""

    async def token(self) -> Any:
        """An object with ``access_token``."""

    async def refresh(self, stale: Any = None) -> Any:
        """Replace ``stale`` unless another caller already did."""


@dataclass(frozen=True)
class HttpFailure:
    """An error answer, read once, that the mapping to typed exceptions decides on."""

    response: httpx.Response
    code: str
    message: str
    where: str

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def label(self) -> str:
        """The code the exception carries: the API's own, else the HTTP status."""
        return self.code or str(self.status)

    @property
    def retry_after(self) -> float | None:
        """``Retry-After`` in seconds; None when absent or not a number."""
        try:
            return float(self.response.headers["Retry-After"])
        except (KeyError, ValueError):
            return None


class HttpClient(ABC):
    """Base of the REST clients; a subclass says how to address, authenticate and read errors."""

    system: ClassVar[str]
    retryable_codes: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, timeout: float, tokens: TokenSource | None = None, budget: ApiBudget | None = None,
                 policy: RetryPolicy | None = None, http: httpx.AsyncClient | None = None) -> None:
        self.tokens = tokens
        self.budget = budget
        self.policy = policy or RetryPolicy()
        self.stats = RetryStats()
        self.calls = 0
        self._http = http or httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: Mapping[str, Any] | None = None) -> httpx.Response:
        """One logical call under the retry policy, the budget and one token refresh on a 401."""
        used: list[Any] = []

        async def attempt() -> httpx.Response:
            if self.budget is not None:
                await self.budget.wait_for_budget()
            credential = await self.tokens.token() if self.tokens is not None else None
            used.append(credential)
            async with self._slot():
                return await self._send(credential, method, path, json, params)

        async def refresh() -> None:
            assert self.tokens is not None
            await self.tokens.refresh(used[-1] if used else None)

        on_auth_expired = refresh if self.tokens is not None else None
        return await self.policy.run(attempt, on_auth_expired=on_auth_expired, stats=self.stats)

    async def request_unless_missing(self, method: str, path: str, *, json: Any = None,
                                     params: Mapping[str, Any] | None = None) -> httpx.Response | None:
        """``request``, but None on a 404: to a read or a delete, a missing record is an answer."""
        try:
            return await self.request(method, path, json=json, params=params)
        except FatalError as exc:
            if exc.status == 404:
                return None
            raise

    def _slot(self) -> AsyncContextManager[None]:
        return self.budget.slot() if self.budget is not None else contextlib.nullcontext()

    async def _send(self, credential: Any, method: str, path: str, json: Any,
                    params: Mapping[str, Any] | None) -> httpx.Response:
        self.calls += 1
        self._count_request()
        try:
            response = await self._http.request(method, self._url(credential, path), json=json,
                                                params=dict(params) if params else None,
                                                headers=self._headers(credential))
        except httpx.TransportError as exc:
            raise RetryableError(f"{self.system} {method} {path}: {type(exc).__name__}") from exc
        self._observe_usage(response)
        if response.status_code >= 400:
            code, message = self._read_error(response)
            parts = (f"{self.system} {method} {path}:", str(response.status_code), code, message.strip())
            raise self._error_for(HttpFailure(response, code, message, " ".join(p for p in parts if p)))
        return response

    # -- hooks ---------------------------------------------------------------------------------

    @abstractmethod
    def _url(self, credential: Any, path: str) -> str:
        """The absolute URL of ``path`` (a token may name the instance to call)."""

    @abstractmethod
    def _headers(self, credential: Any) -> dict[str, str]:
        """Auth and identification headers, rebuilt on each attempt (the token may be new)."""

    @abstractmethod
    def _read_error(self, response: httpx.Response) -> tuple[str, str]:
        """(the API's error code or "", its message) from an error answer; mask personal data
        here where the API echoes record values back."""

    def _count_request(self) -> None:
        """Budget accounting before a request leaves, for systems that report no usage."""

    def _observe_usage(self, response: httpx.Response) -> None:
        """Budget accounting from a response, for systems that report their usage."""

    def _error_for(self, failure: HttpFailure) -> ConnectorError:
        """The typed exception for an error answer; override to add a system's own codes."""
        if failure.status == 401:
            return AuthExpiredError(failure.where, code=failure.label, status=failure.status)
        if failure.status == 429 or failure.status >= 500 or failure.code in self.retryable_codes:
            return RetryableError(failure.where, code=failure.label, status=failure.status,
                                  retry_after=failure.retry_after)
        return FatalError(failure.where, code=failure.label, status=failure.status)
