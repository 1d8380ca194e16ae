"""Every TIMS setting: the connection, and how the source reads (poll or webhook)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from connectors.config import ConnectorConfig, Names, url_validator
from connectors.tims.resources import RESOURCES

__all__ = ["TimsConfig"]


class TimsConfig(ConnectorConfig):
    base_url: str
    api_key: SecretStr
    #: who we are in TIMS' modified_by (how our own writes are recognised in the change feed)
    client_name: str = "connect"
    #: shared secret of the webhook receiver (HMAC-SHA256); None when polling only
    webhook_secret: SecretStr | None = None
    timeout: float = 30.0

    # The source (connectors/tims/source.py, webhook.py)
    #: poll the change feed, or receive TIMS webhooks (then reconcile with the feed now and then)
    source_mode: Literal["poll", "webhook"] = "poll"
    poll_interval: float = Field(default=2.0, gt=0)
    overlap_seconds: float = Field(default=10.0, ge=0)
    page_size: int = Field(default=500, ge=1, le=1000)
    #: entities to read from the change feed; empty: all
    entities: Names = ()
    webhook_host: str = "127.0.0.1"
    #: 0: any free port (tests; the URL is logged)
    webhook_port: int = Field(default=8093, ge=0, le=65535)
    webhook_path: str = "/tims/webhook"
    webhook_tolerance: float = Field(default=300.0, gt=0)
    #: webhook mode: how often the change feed is read for deliveries TIMS gave up on (0: never)
    reconcile_interval: float = Field(default=60.0, ge=0)

    _url = url_validator("base_url")

    @field_validator("entities")
    @classmethod
    def _entities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - set(RESOURCES)
        if unknown:
            raise ValueError(f"unknown {sorted(unknown)}; known: {', '.join(RESOURCES)}")
        return value
