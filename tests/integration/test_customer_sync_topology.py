"""The customer sync agents in a real worker on the real broker, fed with source events."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tests.support.flows import stage_counts
from tests.support.kafka import produce_json, read_json
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration
_ids = itertools.count(1)


def src(source: str, entity: str, record_id: str, ts: int, change: str = "CREATE", **fields) -> tuple[str, dict]:
    return record_id, {"event_id": f"t{next(_ids)}", "source": source, "entity": entity, "record_id": record_id,
                       "change_type": change, "fields": fields, "commit_timestamp": ts}


async def test_one_person_from_four_systems_becomes_one_customer(app_env: dict[str, str], tmp_path: Path) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    with WorkerProcess(app_env, tmp_path / "worker.log").start() as worker:
        await produce_json(bootstrap, f"{prefix}src.salesforce.Account", [src("salesforce", "Account", "001A", 900, Name="Acme Welding")])
        await produce_json(bootstrap, f"{prefix}src.pardot.prospect", [
            src("pardot", "prospect", "77", 1000, email="Ada@Example.com", firstName="Ada", lastName="Lovelace", score=150, grade="A")])
        await produce_json(bootstrap, f"{prefix}src.salesforce.Lead", [
            src("salesforce", "Lead", "00QA", 1100, Email="ada@example.com", FirstName="Ada", LastName="Lovelace", Company="Acme Welding")])
        await produce_json(bootstrap, f"{prefix}src.tims.customer", [
            src("tims", "customer", "C9", 1150, name="Ada Lovelace", email="ada@example.com", modified_by="tims-ui")])
        await produce_json(bootstrap, f"{prefix}src.salesforce.Contact", [
            src("salesforce", "Contact", "003A", 1200, Email="ada@example.com", FirstName="Ada", LastName="Lovelace", AccountId="001A")])

        commands = await read_json(bootstrap, f"{prefix}sink.salesforce.Contact",
                                   until=lambda vs: any(v["fields"].get("TIMS_Customer_ID__c") == "C9" for v in vs), timeout=90)
        accounts = await read_json(bootstrap, f"{prefix}sink.salesforce.Account",
                                   until=lambda vs: any(v["fields"].get("TIMS_Customer_ID__c") == "C9" for v in vs), timeout=60)
        tims = await read_json(bootstrap, f"{prefix}sink.tims.customer", until=lambda vs: len(vs) >= 1, timeout=60, quiet_after=3)
        worker.stop()

    keys = {c["record_key"] for c in commands + accounts + tims}
    assert len(keys) == 1, "one person must be one customer"
    # The TIMS customer existed already. Once the topology knows it, writes go by its TIMS id;
    # a write racing ahead of that knowledge goes by the Contact id, which TIMS resolves to the
    # same customer (the contract's adoption rule, tested with the sandbox).
    assert {(c["external_id_field"], c["external_id"]) for c in tims} <= {("customer_id", "C9"), ("external_id", "003A")}
    assert all(c["fields"].get("external_id", "003A") == "003A" for c in tims)
    assert {c["external_id"] for c in accounts} == {"001A"}


async def test_hostile_messages_are_quarantined_and_the_worker_keeps_syncing(
        app_env: dict[str, str], tmp_path: Path) -> None:
    """What killed agents before: bytes that are not JSON, lone surrogates, deep nesting, values
    that are not objects, on the source topic and on every stage topic, and a ~1 MB source event
    whose re-keyed copy is too large for the stage topic. Each is quarantined with its stage; the
    worker stays up and the person played after them still lands."""
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    hostile = [b"\xff\xfe not json", b'{"event_id": "\\ud800"}', b"[" * 3000 + b"]" * 3000, b'"a string"', b"null"]
    topics = ["src.tims.customer", "customer_sync.identify", "customer_sync.merge", "customer_sync.matching", "links.tims"]
    with WorkerProcess(app_env, tmp_path / "worker.log").start() as worker:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=1_100_000)
        await producer.start()
        try:
            for topic in topics:
                for raw in hostile:
                    await producer.send_and_wait(f"{prefix}{topic}", raw, key=b"hostile@example.com")
            # a source event just under the broker's limit: its re-keyed copy is over it
            _, big = src("tims", "customer", "C66", 1900, name="Big Record", email="big@example.com", modified_by="x")
            big["fields"]["notes"] = "n" * (1_048_000 - len(json.dumps(big)))
            await producer.send_and_wait(f"{prefix}src.tims.customer", json.dumps(big).encode(), key=b"C66")
        finally:
            await producer.stop()
        await produce_json(bootstrap, f"{prefix}src.tims.customer", [
            src("tims", "customer", "C77", 2000, name="Grace Hopper", email="grace@example.com", external_id="003G",
                payment_terms="NET30", modified_by="tims-ui")])
        quarantined = await read_json(bootstrap, f"{prefix}quarantine.customer_sync",
                                      until=lambda vs: len(vs) >= len(topics) * len(hostile) + 1, timeout=120)
        landed = await read_json(bootstrap, f"{prefix}sink.salesforce.Contact", until=lambda vs: len(vs) >= 1, timeout=90)
        assert worker.proc.poll() is None, "the worker died"
        # a stage counts a message processed when its handler returns, which may be a moment
        # after the output the test saw (the handler's later sends, e.g. a topic's first, wait)
        metrics = await settled_metrics(worker.env["CONNECT_WEB_PORT"], stages=5, timeout=30)
        log = worker.log_text()
        worker.stop()

    by_stage = Counter(_stage_of(entry["reason"]) for entry in quarantined)
    assert by_stage == {stage: len(hostile) for stage in ("identify", "merge", "matching", "tims_links")} | {
        "ingest": len(hostile) + 1}
    # refused before it was produced (docs/adr/0020): the stage, the topic, the size and the limit
    # (a would-be new customer: its copy goes to the matching stage, docs/adr/0036)
    [too_big] = [entry for entry in quarantined if entry["reason"].startswith("ingest raised")]
    assert too_big["reason"].startswith(f"ingest raised OversizeMessage: {prefix}customer_sync.matching: message of 1,0")
    assert "over the topic's limit of 999,488 bytes" in too_big["reason"], too_big["reason"]
    assert too_big["raw"]["truncated"] is True
    assert "ProducerSendError" not in log and "MessageSizeTooLarge" not in log
    assert (landed[0]["external_id"], landed[0]["fields"]["TIMS_Customer_ID__c"]) == ("003G", "C77")
    assert "Crashed" not in log, "an agent crashed"
    # every message a stage took is accounted for: processed or quarantined
    counts = stage_counts(metrics)
    for stage, quarantined_here in by_stage.items():
        taken = counts[(stage, "in")]
        assert taken == counts[(stage, "processed")] + counts[(stage, "quarantined")], (stage, counts)
        assert counts[(stage, "quarantined")] == quarantined_here, (stage, counts)


async def settled_metrics(port: str, stages: int, timeout: float) -> str:
    """The worker's /metrics once ``stages`` stages took messages and each handled every one
    (processed or quarantined), or as they are after ``timeout`` seconds (the test then says
    which count is off)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        counts = stage_counts(text)
        taken = [stage for (stage, outcome), n in counts.items() if outcome == "in" and n]
        if len(taken) >= stages and all(
                counts[(stage, "in")] == counts[(stage, "processed")] + counts[(stage, "quarantined")]
                for stage in taken):
            return text
        if loop.time() > deadline:
            return text
        await asyncio.sleep(0.5)


def _stage_of(reason: str) -> str:
    if reason.startswith("not a source event"):
        return "ingest"
    if reason.startswith("links.tims entry"):
        return "tims_links"
    return reason.replace(":", " ").split(" ")[0]
