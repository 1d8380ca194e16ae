"""Logging set-up shared by the worker and the source processes: emails and phone numbers are
masked in every log message, whoever wrote it (our code or a library echoing a payload)."""

from __future__ import annotations

import logging

from connectors.redact import redact_text

__all__ = ["RedactingFilter", "configure"]


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact_text(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def configure(level: str | None = "info") -> None:
    """Give the root logger a handler (when it has none) and the level (None: keep the one the
    worker's --loglevel set), and mask personal data on every handler."""
    root = logging.getLogger()
    if level is not None:
        root.setLevel(level.upper())
    if not root.handlers:
        logging.basicConfig(format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
