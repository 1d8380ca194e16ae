"""The org's OAuth 2.0 token endpoint and the bearer-token check the REST API runs.

Grants: JWT bearer (RS256 assertion; signature verified when a key is configured for the consumer
key), client credentials (Basic header or form fields) and refresh token (tokens minted with
:meth:`Org.issue_refresh_token`; Salesforce returns no refresh token from the other two flows).
Errors use Salesforce's OAuth shape: 400 ``{"error", "error_description"}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..faults import Fault, Faults
from .org import Org, Session

__all__ = ["OAuthConfig", "JWT_BEARER", "oauth_routes", "authenticate", "session_error", "token_checker"]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass
class OAuthConfig:
    """Which clients and keys the org trusts. The defaults accept any client, so a test needs no
    setup; configure ``required_clients`` / ``jwt_public_keys`` to test refusals."""

    required_clients: dict[str, str] | None = None  # client id -> secret
    jwt_public_keys: dict[str, str] = field(default_factory=dict)  # consumer key -> PEM key or cert
    token_ttl: float = 7200.0  # seconds; faults.token_ttl overrides at run time
    audiences: tuple[str, ...] = ("https://login.salesforce.com", "https://test.salesforce.com")
    client_credentials_user: str = "integration@sandbox.example"
    auto_create_users: bool = True  # an unknown JWT subject becomes a user rather than an error
    signing_secret: str = field(default_factory=lambda: secrets.token_hex(16))


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> web.Response:
        return web.json_response({"error": self.error, "error_description": self.description},
                                 status=self.status)


def session_error(code: str = "INVALID_SESSION_ID", message: str = "Session expired or invalid") -> web.Response:
    return web.json_response([{"message": message, "errorCode": code}], status=401)


def authenticate(request: web.Request, org: Org, faults: Faults, config: OAuthConfig) -> Session | web.Response:
    """The request's session, or the 401 Salesforce gives for a missing/unknown/expired token."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() not in ("bearer", "oauth") or not token.strip():
        return session_error("INVALID_AUTH_HEADER", "INVALID_HEADER_TYPE")
    session = org.session(token.strip())
    if session is None or not token_checker(org, faults, config)(session.token):
        return session_error()
    return session


def token_checker(org: Org, faults: Faults, config: OAuthConfig) -> Callable[[str], bool]:
    """``check(access_token)``: the same verdict the REST API gives, for other servers of the org
    (the Pub/Sub API takes it as its ``authenticate``)."""

    def check(token: str) -> bool:
        session = org.session(token)
        return session is not None and not faults.token_expired(session.issued_at, config.token_ttl)

    return check


def _render_fault(fault: Fault) -> web.Response:
    headers = {"Retry-After": str(max(1, round(fault.retry_after)))} if fault.retry_after else {}
    if fault.kind == "429":
        body = {"error": "rate_limited", "error_description": "too many requests"}
        return web.json_response(body, status=429, headers=headers)
    if fault.kind == "limit":
        body = {"error": "request_limit_exceeded", "error_description": "TotalRequests Limit exceeded."}
        return web.json_response(body, status=403, headers=headers)
    body = {"error": "temporarily_unavailable", "error_description": "service temporarily unavailable"}
    return web.json_response(body, status=503, headers=headers)


def _public_key(pem: str) -> Any:
    data = pem.encode()
    if b"BEGIN CERTIFICATE" in data:
        return x509.load_pem_x509_certificate(data).public_key()
    return serialization.load_pem_public_key(data)


def oauth_routes(org: Org, faults: Faults, config: OAuthConfig,
                 base_url: Callable[[web.Request], str]) -> list[web.RouteDef]:
    """Token, revoke and identity routes; ``base_url(request)`` is the server's own URL."""

    def client_from(request: web.Request, form: Mapping[str, str]) -> tuple[str, str]:
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                raw = base64.b64decode(header[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError("invalid_client", "invalid client credentials") from None
            cid, _, secret = raw.partition(":")
            return cid, secret
        return form.get("client_id", ""), form.get("client_secret", "")

    def check_client(client_id: str, secret: str | None) -> None:
        if not client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if config.required_clients is None:
            return
        if client_id not in config.required_clients:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if secret is not None and not hmac.compare_digest(config.required_clients[client_id], secret):
            raise OAuthError("invalid_client", "invalid client credentials")

    def jwt_grant(form: Mapping[str, str], own_url: str) -> tuple[str, str]:
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if header.get("alg") != "RS256":
            raise OAuthError("invalid_grant", "invalid assertion")
        iss, sub = claims.get("iss"), claims.get("sub")
        if not isinstance(iss, str) or not iss:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if config.jwt_public_keys:
            key = config.jwt_public_keys.get(iss)
            if key is None:
                raise OAuthError("invalid_client_id", "client identifier invalid")
            try:
                jwt.decode(assertion, _public_key(key), algorithms=["RS256"],
                           options={"verify_exp": False, "verify_aud": False, "verify_iat": False,
                                    "verify_nbf": False})
            except (jwt.InvalidTokenError, ValueError):
                raise OAuthError("invalid_grant", "invalid assertion") from None
        elif config.required_clients is not None and iss not in config.required_clients:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        audiences = claims.get("aud")
        auds = [audiences] if isinstance(audiences, str) else list(audiences or [])
        accepted = {a.rstrip("/") for a in (*config.audiences, own_url)}
        if not any(isinstance(a, str) and a.rstrip("/") in accepted for a in auds):
            raise OAuthError("invalid_grant", "audience is invalid")
        try:
            exp = float(claims["exp"])  # simple-salesforce sends it as a string; Salesforce accepts that
        except (KeyError, TypeError, ValueError):
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if exp <= org._now():
            raise OAuthError("invalid_grant", "invalid assertion")
        if not isinstance(sub, str) or not sub:
            raise OAuthError("invalid_grant", "invalid assertion")
        if sub not in org.users and not config.auto_create_users:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")
        return org.ensure_user(sub), iss

    def refresh_grant(request: web.Request, form: Mapping[str, str]) -> tuple[str, str]:
        client_id, secret = client_from(request, form)
        found = org.refresh_tokens.get(form.get("refresh_token", ""))
        if found is None:
            raise OAuthError("invalid_grant", "expired access/refresh token")
        token_client, user_id = found
        if client_id and client_id != token_client:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        check_client(token_client, secret or None)
        return user_id, token_client

    async def token(request: web.Request) -> web.Response:
        fault = await faults.decide(request.path)
        if fault is not None and fault.kind != "lock":
            return _render_fault(fault)
        form = await request.post()
        values = {k: str(v) for k, v in form.items()}
        own_url = base_url(request)
        try:
            grant = values.get("grant_type", "")
            if grant == JWT_BEARER:
                user_id, client_id = jwt_grant(values, own_url)
            elif grant == "client_credentials":
                client_id, secret = client_from(request, values)
                check_client(client_id, secret)
                user_id, client_id = org.ensure_user(config.client_credentials_user), client_id
            elif grant == "refresh_token":
                user_id, client_id = refresh_grant(request, values)
            else:
                raise OAuthError("unsupported_grant_type", "grant type not supported")
        except OAuthError as exc:
            return exc.response()
        session = org.issue_session(user_id, client_id)
        identity = f"{own_url}/id/{org.org_id}/{user_id}"
        issued_at = str(int(session.issued_at * 1000))
        signature = base64.b64encode(hmac.new(
            config.signing_secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()).decode()
        return web.json_response({
            "access_token": session.token, "instance_url": own_url, "id": identity,
            "token_type": "Bearer", "issued_at": issued_at, "signature": signature, "scope": "api",
        })

    async def revoke(request: web.Request) -> web.Response:
        form = await request.post()
        token_value = str(form.get("token") or request.query.get("token", ""))
        if not org.revoke(token_value):
            return OAuthError("unsupported_token_type", "this token type is not supported").response()
        return web.Response(status=200)

    async def identity(request: web.Request) -> web.Response:
        session = authenticate(request, org, faults, config)
        if isinstance(session, web.Response):
            return web.json_response("Bad_OAuth_Token", status=403)
        if request.match_info["user"][:15] != session.user_id[:15]:
            return web.json_response("Bad_Id", status=403)
        return web.json_response({
            "id": f"{base_url(request)}/id/{org.org_id}/{session.user_id}",
            "user_id": session.user_id, "organization_id": org.org_id,
            "username": session.username, "active": True,
            "urls": {"rest": f"{base_url(request)}/services/data/v{{version}}/"},
        })

    return [
        web.post("/services/oauth2/token", token),
        web.post("/services/oauth2/revoke", revoke),
        web.get("/id/{org}/{user}", identity),
    ]
