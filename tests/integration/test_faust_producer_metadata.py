"""stream_app.faust_fixes on a real broker: a topic Faust's producer declares is tracked by the
producer's metadata refreshes, so they name the app's topics instead of every topic."""

from __future__ import annotations

import asyncio

from pathlib import Path

import pytest

from connectors import kafka_admin
from stream_app.app import create_app
from stream_app.settings import load_settings
from tests.support.names import unique


async def test_declared_topics_are_tracked_after_their_creation(kafka_bootstrap: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("CONNECT_DATA_DIR", str(tmp_path))
    app = create_app(load_settings())
    first, second = unique("declared"), unique("declared")
    await app.producer.start()
    try:
        client = app.producer._producer.client  # the aiokafka client whose refreshes we count on
        await app.producer.create_topic(first, 2, 1)
        await app.producer.create_topic(second, 1, 1)
        assert {first, second} <= set(client._topics)
        # the refreshes that follow name the tracked topics and so learn the new one's partitions
        # (a topic created a moment ago may not be in the broker's metadata at the first one)
        deadline = asyncio.get_running_loop().time() + 15
        while client.cluster.partitions_for_topic(first) != {0, 1}:
            assert asyncio.get_running_loop().time() < deadline, "the declared topic's partitions never showed"
            await client.force_metadata_update()
            await asyncio.sleep(0.2)
        assert len(await kafka_admin.partitions(kafka_bootstrap, [first, second])) == 3
    finally:
        await app.producer.stop()
