"""Exceptions shared by every connector, translated at the client boundary.

    ConnectorError
    ├── RetryableError      transient: 429, 503, lock contention, timeouts (carries retry_after)
    ├── AuthExpiredError    the token was rejected: refresh once, then retry
    ├── FatalError          the request itself is wrong; retrying cannot help
    └── QuotaExhaustedError the daily API budget is spent; wait for the next window

    ConfigError             a connector's settings are wrong (not an API failure: never retried)
"""

from __future__ import annotations

__all__ = [
    "ConnectorError", "RetryableError", "AuthExpiredError", "FatalError", "QuotaExhaustedError", "ConfigError",
]


class ConnectorError(Exception):
    """Base of every connector failure. ``code`` is the remote API's error code, if any."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class RetryableError(ConnectorError):
    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class AuthExpiredError(ConnectorError):
    pass


class FatalError(ConnectorError):
    pass


class QuotaExhaustedError(ConnectorError):
    pass


class ConfigError(ValueError):
    """Wrong settings of one connector. ``problems`` pairs a config field (None: several fields
    together) with the reason; the app names each field by its environment variable."""

    def __init__(self, system: str, problems: list[tuple[str | None, str]]) -> None:
        super().__init__("; ".join(f"{field or '*'}: {reason}" for field, reason in problems))
        self.system = system
        self.problems = problems
