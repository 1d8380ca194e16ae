"""Every shop setting: which platform, the connection, and how the source reads (docs/adr/0033)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from connectors.config import ConnectorConfig, Names, url_validator
from connectors.shop.records import ENTITIES

__all__ = ["ShopConfig"]


class ShopConfig(ConnectorConfig):
    #: the adapter (connectors/shop/platform.py); one module per platform
    platform: Literal["shopify"] = "shopify"
    #: the shop's admin base URL, e.g. https://acme.myshopify.com
    shop_url: str
    api_version: str = Field(default="2025-10", pattern=r"^(\d{4}-\d{2}|unstable)$")
    access_token: SecretStr
    #: the app's client secret that signs webhooks; None: no receiver, reconciliation only
    webhook_secret: SecretStr | None = None
    #: the shop's ``<name>.myshopify.com``: webhooks naming another shop are refused (an app's
    #: secret may sign for several shops); None: not checked
    shop_domain: str | None = None
    timeout: float = Field(default=30.0, gt=0)

    # The source (connectors/shop/source.py)
    #: entities to read; empty: all
    entities: Names = ()
    #: records per API page (Shopify allows 250; large orders cost more, and the client halves
    #: the page when a query would cost more than the bucket holds)
    page_size: int = Field(default=10, ge=1, le=250)
    #: seconds between reconciliation passes (reads by updated_at what webhooks may have missed)
    reconcile_interval: float = Field(default=300.0, gt=0)
    #: each pass re-reads this many seconds before the newest updated_at seen (late commits)
    overlap_seconds: float = Field(default=120.0, ge=0)
    webhook_host: str = "127.0.0.1"
    #: 0: any free port (tests; the URL is logged)
    webhook_port: int = Field(default=8095, ge=0, le=65535)
    webhook_path: str = "/shop/webhook"

    _url = url_validator("shop_url")

    @field_validator("entities")
    @classmethod
    def _entities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - set(ENTITIES)
        if unknown:
            raise ValueError(f"unknown {sorted(unknown)}; known: {', '.join(ENTITIES)}")
        return value

    @field_validator("webhook_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value
