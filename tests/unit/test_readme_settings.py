"""The README's configuration tables and the settings agree, both ways."""

from __future__ import annotations

import re
from pathlib import Path

from stream_app.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
#: variables the README documents that the local broker reads, not the worker's Settings
LOCAL_BROKER = {"CONNECT_KAFKA_HOME", "CONNECT_KAFKA_PORT"}
_NAME = re.compile(r"`((?:CONNECT|KAFKA)_[A-Z0-9_]+|_[A-Z0-9_]+)`")
_PREFIX = re.compile(r"`(CONNECT_[A-Z0-9_]+_)` prefix")


def _row_names(first: str, meaning: str) -> set[str]:
    """The variables one row names: full names, and ``_SUFFIX`` ones after the row's
    ``CONNECT_X_`` prefix when the row states it, else in place of as many words of the last full name."""
    stated = _PREFIX.search(meaning)
    names: set[str] = set()
    last = ""
    for token in _NAME.findall(first):
        if not token.startswith("_"):
            last = token
            names.add(token)
        elif stated:
            names.add(stated.group(1) + token[1:])
        else:
            words = last.split("_")
            names.add("_".join(words[: len(words) - token.count("_")]) + token)
    return names


def documented() -> set[str]:
    names: set[str] = set()
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3 and _NAME.match(cells[0]):
            names |= _row_names(cells[0], cells[-1])
    return names


def test_every_variable_in_the_readme_is_a_setting() -> None:
    settings = {env_name(field) for field in Settings.model_fields}
    assert documented() - LOCAL_BROKER - settings == set()
    local_broker = (ROOT / "stream_app" / "kafka_local.py").read_text()
    assert all(name in local_broker for name in LOCAL_BROKER)


def test_every_setting_is_in_the_readme() -> None:
    settings = {env_name(field) for field in Settings.model_fields}
    assert settings - documented() == set()


def test_rows_with_suffixes_expand_to_full_names() -> None:
    assert _row_names("`CONNECT_SINK_RETRY_BASE_DELAY` / `_MAX_DELAY`", "backoff") == {
        "CONNECT_SINK_RETRY_BASE_DELAY", "CONNECT_SINK_RETRY_MAX_DELAY"}
    assert _row_names("`CONNECT_TIMS_BASE_URL`, `_API_KEY`", "TIMS (`CONNECT_TIMS_` prefix)") == {
        "CONNECT_TIMS_BASE_URL", "CONNECT_TIMS_API_KEY"}
