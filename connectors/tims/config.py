"""TIMS connection settings (built by stream_app.settings)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

__all__ = ["TimsConfig"]


class TimsConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    base_url: str
    api_key: SecretStr
    #: who we are in TIMS' modified_by (how our own writes are recognised in the change feed)
    client_name: str = "connect"
    #: shared secret of the webhook receiver (HMAC-SHA256); None when polling only
    webhook_secret: SecretStr | None = None
    timeout: float = 30.0

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")
