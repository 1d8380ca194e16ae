"""OAuth 2.0 tokens for Salesforce: JWT bearer, client credentials, refresh token.

One :class:`TokenProvider` per process serves the CDC source and the REST sink alike. A token
rejected by a call is refreshed once by whoever sees it first; concurrent callers holding the
same stale token wait for that refresh instead of starting their own.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import jwt

from connectors.errors import FatalError, RetryableError
from connectors.retry import RetryPolicy
from connectors.salesforce.config import AuthFlow, SalesforceConfig

__all__ = ["Token", "TokenProvider"]

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class Token:
    access_token: str
    instance_url: str
    org_id: str
    user_id: str
    issued_at: float

    def __repr__(self) -> str:  # never print the token itself
        return f"Token(instance_url={self.instance_url!r}, org_id={self.org_id!r}, user_id={self.user_id!r})"


class TokenProvider:
    def __init__(self, config: SalesforceConfig, http: httpx.AsyncClient | None = None,
                 policy: RetryPolicy | None = None) -> None:
        self.config = config
        self._http = http or httpx.AsyncClient(timeout=config.timeout)
        self._policy = policy or RetryPolicy(max_attempts=5)
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self.refreshes = 0
        self.failures = 0

    async def token(self) -> Token:
        if self._token is None:
            async with self._lock:
                if self._token is None:
                    self._token = await self._fetch()
        return self._token

    async def refresh(self, stale: Token | None = None) -> Token:
        """Replace ``stale`` (or the current token) unless another caller already did."""
        async with self._lock:
            if self._token is not None and stale is not None and self._token is not stale:
                return self._token
            self._token = await self._fetch()
            self.refreshes += 1
            return self._token

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _fetch(self) -> Token:
        try:
            return await self._policy.run(self._request_token)
        except Exception:
            self.failures += 1
            raise

    def _form(self) -> dict[str, str]:
        cfg = self.config
        if cfg.auth_flow is AuthFlow.jwt:
            claims = {"iss": cfg.client_id, "sub": cfg.username, "aud": cfg.audience or cfg.login_url,
                      "exp": int(time.time()) + 180}
            return {"grant_type": JWT_GRANT,
                    "assertion": jwt.encode(claims, cfg.private_key_pem(), algorithm="RS256")}
        if cfg.auth_flow is AuthFlow.client_credentials:
            assert cfg.client_secret is not None
            return {"grant_type": "client_credentials", "client_id": cfg.client_id,
                    "client_secret": cfg.client_secret.get_secret_value()}
        assert cfg.refresh_token is not None
        form = {"grant_type": "refresh_token", "client_id": cfg.client_id,
                "refresh_token": cfg.refresh_token.get_secret_value()}
        if cfg.client_secret is not None:
            form["client_secret"] = cfg.client_secret.get_secret_value()
        return form

    async def _request_token(self) -> Token:
        url = f"{self.config.login_url}/services/oauth2/token"
        try:
            response = await self._http.post(url, data=self._form())
        except httpx.TransportError as exc:
            raise RetryableError(f"Salesforce token endpoint {url} unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise RetryableError(f"Salesforce token endpoint answered {response.status_code}",
                                 status=response.status_code)
        body = _json(response)
        if response.status_code != 200 or "access_token" not in body:
            error = body.get("error", f"HTTP {response.status_code}")
            raise FatalError(
                f"Salesforce refused the {self.config.auth_flow.value} login ({error}: "
                f"{body.get('error_description', '')}); check the connected app's client id, the "
                "user, the key or secret, and the login URL",
                code=str(error), status=response.status_code,
            )
        org_id, user_id = _ids(body.get("id", ""))
        return Token(body["access_token"], body["instance_url"].rstrip("/"), org_id, user_id, time.time())


def _json(response: httpx.Response) -> dict:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _ids(identity_url: str) -> tuple[str, str]:
    parts = identity_url.rstrip("/").split("/")
    return (parts[-2], parts[-1]) if len(parts) >= 2 else ("", "")
