"""Pardot connection settings (built by stream_app.settings)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["PardotConfig"]


class PardotConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    base_url: str = "https://pi.pardot.com"
    #: Pardot-Business-Unit-Id header: 18 characters starting 0Uv
    business_unit_id: str
    #: Pardot allows 5 concurrent API requests per business unit
    max_concurrent: int = Field(default=5, ge=1, le=5)
    daily_limit: int = Field(default=25_000, ge=1)
    timeout: float = 30.0

    @field_validator("business_unit_id")
    @classmethod
    def _bu(cls, value: str) -> str:
        if not re.fullmatch(r"0Uv[A-Za-z0-9]{12}([A-Za-z0-9]{3})?", value):
            raise ValueError("must be a Pardot business unit id (0Uv followed by 12 or 15 characters)")
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")
