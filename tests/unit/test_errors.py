"""Which exceptions are a user's mistake, said in a line, and which stay bugs (stream_app/errors.py)."""

from __future__ import annotations

import errno

import click
from aiokafka.errors import KafkaConnectionError

from connectors.kafka_admin import KafkaAdminError
from stream_app.errors import explain
from stream_app.settings import SettingsError


def test_mistakes_are_explained_with_what_to_do() -> None:
    try:
        try:
            raise KafkaConnectionError("Unable to bootstrap")
        except KafkaConnectionError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        unreachable = explain(wrapped, "h:1")
    assert unreachable is not None and unreachable.exit_code == 1
    assert "h:1 is not answering" in unreachable.message and "stream-app kafka up" in unreachable.message
    assert explain(SettingsError("invalid settings:\n  CONNECT_X: bad"), "h:1").exit_code == 2  # type: ignore[union-attr]
    assert explain(click.UsageError("needs FLOW"), "h:1").exit_code == 2  # type: ignore[union-attr]
    assert explain(KafkaAdminError("refused"), "h:1") == ("refused", 1)
    assert "in use" in explain(OSError(errno.EADDRINUSE, "taken"), "h:1").message  # type: ignore[union-attr]


def test_anything_else_keeps_its_traceback() -> None:
    assert explain(KeyError("bug"), "h:1") is None
    assert explain(OSError(errno.ENOENT, "gone"), "h:1") is None
