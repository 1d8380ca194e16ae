"""stream_app.replicated: the reader starts over when the broker interrupts it, and entries apply."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from stream_app import replicated
from stream_app.app import create_app
from stream_app.replicated import ReplicatedMap
from stream_app.settings import load_settings


async def test_an_interrupted_reader_starts_over_and_becomes_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(load_settings(store="memory://"), flows=False, sinks=False, metrics=False)
    index = ReplicatedMap(app, "probe")
    rounds = {"n": 0}

    async def no_topics(*args: Any, **kwargs: Any) -> None:
        return None

    async def follow(*args: Any, **kwargs: Any) -> Any:
        rounds["n"] += 1
        if rounds["n"] == 1:
            yield [SimpleNamespace(key=b"a", value=b"K1", offset=0)], False
            raise ConnectionError("broker went away")
        yield [SimpleNamespace(key=b"a", value=b"K1", offset=0), SimpleNamespace(key=b"b", value=b"K2", offset=1),
               SimpleNamespace(key=b"a", value=None, offset=2)], True
        await asyncio.Event().wait()  # following: nothing new

    monkeypatch.setattr(replicated, "ensure_topics", no_topics)
    monkeypatch.setattr(replicated, "follow", follow)
    monkeypatch.setattr(replicated, "RETRY_DELAY", 0.0)
    reader = asyncio.create_task(index._follow())
    try:
        await asyncio.wait_for(index.ready(), 5)
    finally:
        reader.cancel()
    assert rounds["n"] == 2 and index.get("b") == "K2" and index.get("a") is None
    topic, key, value = index.entry("c", "K3")
    assert (key, value, index.get("c")) == ("c", b"K3", "K3") and topic is index.topic
