"""Personal data never reaches a log line; timestamps and dates survive."""

from __future__ import annotations

import logging

import pytest

from stream_app.logs import RedactingFilter


def test_emails_and_phones_are_masked_in_messages_and_args(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redaction")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("upsert %s phone %s since 2026-11-26T10:00:00Z", "ada.lovelace@example.com", "+44 20 7946 0958")
    line = caplog.messages[-1]
    assert "ada.lovelace" not in line and "a***@example.com" in line
    assert "7946" not in line and "***58" in line
    assert "2026-11-26T10:00:00Z" in line


def test_masked_records_still_format_and_addresses_survive(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redaction.format")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("peer 127.0.0.1:40217 sent %s", "ada@example.com")
    record = caplog.records[-1]
    assert record.args == () and record.getMessage() == "peer 127.0.0.1:40217 sent a***@example.com"
