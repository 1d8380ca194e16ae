"""What every connector's config class shares: the frozen base, name lists, URL checks.

A connector declares each of its settings once, as a field of its config class; the app turns
field ``f`` of system ``s`` into the setting ``<s>_<f>`` (environment ``CONNECT_<S>_<F>``) and
builds the class with :meth:`ConnectorConfig.load` (docs/adr/0013-connector-unit.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Mapping, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator

from connectors.errors import ConfigError

__all__ = ["ConnectorConfig", "Names", "http_url", "url_validator"]

_C = TypeVar("_C", bound="ConnectorConfig")


def _split_names(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


#: a list of names, also given as one comma-separated string (as environment variables are)
Names = Annotated[tuple[str, ...], BeforeValidator(_split_names)]


def http_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL")
    return value.rstrip("/")


def url_validator(*fields: str) -> Any:
    """The one check for URL fields: http(s) only, no trailing slash."""

    def check(cls: type, value: str) -> str:
        return http_url(value)

    return field_validator(*fields)(check)


class ConnectorConfig(BaseModel):
    """Base of every connector's settings: frozen, and unknown names refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def load(cls: type[_C], system: str, values: Mapping[str, Any]) -> _C:
        """Validate ``values`` (None: not set, the default applies); ConfigError names each wrong field."""
        try:
            return cls(**{name: value for name, value in values.items() if value is not None})
        except ValidationError as exc:
            problems = [(str(error["loc"][0]) if error["loc"] else None,
                         str(error["msg"]).removeprefix("Value error, ")) for error in exc.errors()]
            raise ConfigError(system, problems) from None
