"""Salesforce connection settings, validated once (built by stream_app.settings)."""

from __future__ import annotations

import enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

__all__ = ["AuthFlow", "SalesforceConfig"]


class AuthFlow(str, enum.Enum):
    jwt = "jwt"
    client_credentials = "client_credentials"
    refresh_token = "refresh_token"


class SalesforceConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: where tokens come from: https://login.salesforce.com, https://test.salesforce.com, or the
    #: org's My Domain URL (required for client credentials)
    login_url: str = "https://login.salesforce.com"
    auth_flow: AuthFlow = AuthFlow.jwt
    client_id: str = ""
    client_secret: SecretStr | None = None
    username: str | None = None
    private_key: SecretStr | None = None
    private_key_file: Path | None = None
    refresh_token: SecretStr | None = None
    #: JWT audience; defaults to login_url
    audience: str | None = None
    api_version: str = "62.0"
    #: sent as ``Sforce-Call-Options: client=<client_name>``; Salesforce echoes it in changeOrigin
    client_name: str = "pardot-tims-connect"
    pubsub_endpoint: str = "api.pubsub.salesforce.com:7443"
    pubsub_tls: bool = True
    timeout: float = 30.0

    @field_validator("login_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        major, _, minor = value.partition(".")
        if not (major.isdigit() and minor.isdigit()):
            raise ValueError("must look like 62.0")
        return value

    @model_validator(mode="after")
    def _flow_needs(self) -> "SalesforceConfig":
        if not self.client_id:
            raise ValueError("client_id (the connected app's consumer key) is required")
        missing: list[str] = []
        if self.auth_flow is AuthFlow.jwt:
            if not self.username:
                missing.append("username")
            if self.private_key is None and self.private_key_file is None:
                missing.append("private_key or private_key_file")
        elif self.auth_flow is AuthFlow.client_credentials:
            if self.client_secret is None:
                missing.append("client_secret")
        elif self.refresh_token is None:
            missing.append("refresh_token")
        if missing:
            raise ValueError(f"auth_flow {self.auth_flow.value} needs {', '.join(missing)}")
        return self

    def private_key_pem(self) -> str:
        if self.private_key is not None:
            return self.private_key.get_secret_value()
        assert self.private_key_file is not None
        return self.private_key_file.read_text()
