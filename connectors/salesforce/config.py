"""Every Salesforce setting, validated once: the connection and what the CDC source follows."""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from connectors.config import ConnectorConfig, Names, url_validator
from connectors.salesforce.cdc import channel_for

__all__ = ["AuthFlow", "SalesforceConfig"]

_ENTITY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_CHANNEL = re.compile(r"^/(data|event)/[A-Za-z0-9_]+$")


class AuthFlow(str, enum.Enum):
    jwt = "jwt"
    client_credentials = "client_credentials"
    refresh_token = "refresh_token"


class SalesforceConfig(ConnectorConfig):
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

    # What the CDC source follows and how it recovers (docs/adr/0005-salesforce-cdc-source.md)
    entities: Names = Field(default=("Lead", "Contact", "Account"), min_length=1)
    #: default: one ``/data/<Entity>ChangeEvent`` per entity; a custom channel (``/data/X__chn``)
    #: or ``/data/ChangeEvents`` carries every configured entity
    channels: Names = ()
    batch_size: int = Field(default=100, ge=1, le=100)
    #: resyncs start this long before the time they resync from (clock skew, long transactions)
    resync_margin_seconds: float = Field(default=300.0, ge=0)
    first_start: Literal["EARLIEST", "LATEST"] = "EARLIEST"
    #: records per REST snapshot chunk published at once
    snapshot_chunk: int = Field(default=500, ge=1)

    _url = url_validator("login_url")

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        major, _, minor = value.partition(".")
        if not (major.isdigit() and minor.isdigit()):
            raise ValueError("must look like 62.0")
        return value

    @field_validator("entities")
    @classmethod
    def _entities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [e for e in value if not _ENTITY.match(e)]
        if bad:
            raise ValueError(f"not sObject API names: {', '.join(bad)}")
        if len(set(value)) != len(value):
            raise ValueError("an entity is listed twice")
        return value

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [c for c in value if not _CHANNEL.match(c)]
        if bad:
            raise ValueError(f"not Pub/Sub channel names (/data/...): {', '.join(bad)}")
        return tuple(dict.fromkeys(value))

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

    def channel_list(self) -> list[str]:
        return list(self.channels) or [channel_for(e) for e in self.entities]

    def entities_of(self, channel: str) -> frozenset[str]:
        for entity in self.entities:
            if channel_for(entity) == channel:
                return frozenset({entity})
        return frozenset(self.entities)

    @property
    def margin_ms(self) -> int:
        return int(self.resync_margin_seconds * 1000)
