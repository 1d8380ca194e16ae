"""Every Pardot setting: the connection (it signs in with the Salesforce token) and the poller."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from connectors.config import ConnectorConfig, Names, url_validator

__all__ = ["ENTITIES", "DEFAULT_ENTITIES", "PardotConfig"]

#: the streams the source can poll (connectors/pardot/source.py: STREAMS)
ENTITIES: tuple[str, ...] = ("prospect", "visitor_activity", "list", "list_membership")
#: the streams polled unless configured: each stream costs a call per poll of the daily quota,
#: so the lists flow's two are asked for (docs/adr/0026)
DEFAULT_ENTITIES: tuple[str, ...] = ("prospect", "visitor_activity")


class PardotConfig(ConnectorConfig):
    base_url: str = "https://pi.pardot.com"
    #: Pardot-Business-Unit-Id header: 18 characters starting 0Uv
    business_unit_id: str
    #: Pardot allows 5 concurrent API requests per business unit
    max_concurrent: int = Field(default=5, ge=1, le=5)
    daily_limit: int = Field(default=25_000, ge=1)
    #: count the daily quota and split the concurrent requests with every other process that
    #: calls this business unit, through Kafka (connectors/pardot/quota.py); off: per process
    shared_quota: bool = True
    timeout: float = 30.0

    # The poller (connectors/pardot/source.py)
    poll_interval: float = Field(default=30.0, gt=0)
    overlap_seconds: float = Field(default=60.0, ge=0)
    page_size: int = Field(default=200, ge=1, le=1000)
    entities: Names = DEFAULT_ENTITIES
    #: custom prospect fields to read as well (``TIMS_Customer_ID__c`` …)
    prospect_fields: Names = ()

    _url = url_validator("base_url")

    @field_validator("business_unit_id")
    @classmethod
    def _bu(cls, value: str) -> str:
        if not re.fullmatch(r"0Uv[A-Za-z0-9]{12}([A-Za-z0-9]{3})?", value):
            raise ValueError("must be a Pardot business unit id (0Uv followed by 12 or 15 characters)")
        return value

    @field_validator("entities")
    @classmethod
    def _entities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or set(value) - set(ENTITIES):
            raise ValueError(f"choose from {', '.join(ENTITIES)} (got {sorted(value)})")
        return value
