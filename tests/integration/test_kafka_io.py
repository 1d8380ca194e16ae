"""Source-side Kafka plumbing on the real broker: positions survive, quarantine keeps the reason."""

from __future__ import annotations


import pytest

from connectors.kafka_io import KafkaTarget, PositionStore, Publisher
from tests.support.kafka import read_json
from tests.support.names import unique

pytestmark = pytest.mark.integration


@pytest.fixture
def target(kafka_bootstrap: str) -> KafkaTarget:
    return KafkaTarget(kafka_bootstrap, prefix=unique("io") + ".", partitions=3)


async def test_positions_are_read_back_by_a_new_store(target: KafkaTarget) -> None:
    first = PositionStore(target)
    await first.start()
    await first.save("salesforce:/data/ContactChangeEvent", {"replay_id": "00aa"})
    await first.save("salesforce:/data/ContactChangeEvent", {"replay_id": "00ab"})
    await first.save("tims:changes", {"cursor": "c1"})
    await first.stop()

    second = PositionStore(target)
    await second.start()
    try:
        assert await second.load() == {
            "salesforce:/data/ContactChangeEvent": {"replay_id": "00ab"},
            "tims:changes": {"cursor": "c1"},
        }
    finally:
        await second.stop()


async def test_empty_position_topic_loads_as_nothing(target: KafkaTarget) -> None:
    store = PositionStore(target)
    await store.start()
    try:
        assert await store.load() == {}
    finally:
        await store.stop()


async def test_quarantine_keeps_raw_input_and_reason(target: KafkaTarget) -> None:
    publisher = Publisher(target)
    await publisher.start()
    try:
        await publisher.quarantine("salesforce", "bad Avro payload: unexpected end of data", "AAEC", {"replay_id": "01"})
    finally:
        await publisher.stop()
    [entry] = await read_json(target.bootstrap, target.topic("quarantine.salesforce"), until=lambda vs: len(vs) >= 1)
    assert entry["reason"].startswith("bad Avro payload")
    assert entry["raw"] == "AAEC" and entry["context"] == {"replay_id": "01"}


async def test_an_event_too_large_for_its_topic_is_quarantined_not_produced(target: KafkaTarget) -> None:
    publisher = Publisher(target)
    await publisher.start()
    try:
        big = {"record_id": "C1", "fields": {"notes": "n" * 1_100_000}}
        assert await publisher.send_many("src.tims.customer", [("C1", big), ("C2", {"record_id": "C2"})]) == 1
    finally:
        await publisher.stop()
    [entry] = await read_json(target.bootstrap, target.topic("quarantine.tims"), until=lambda vs: len(vs) >= 1)
    assert entry["reason"].startswith(f"publish refused: {target.topic('src.tims.customer')}: message of 1,100,")
    assert "over the topic's limit of 1,048,064 bytes" in entry["reason"]
    assert entry["raw"]["truncated"] is True and entry["raw"]["size"] > 1_100_000
    assert entry["context"] == {"topic": target.topic("src.tims.customer"), "key": "C1"}
    [landed] = await read_json(target.bootstrap, target.topic("src.tims.customer"), until=lambda vs: len(vs) >= 1)
    assert landed == {"record_id": "C2"}
