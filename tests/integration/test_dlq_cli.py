"""`stream-app dlq` on the real broker: list, show (masked), replay to the sink topic, purge."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.kafka import create_topics, produce_json, read_json
from tests.support.worker import STREAM_APP

pytestmark = pytest.mark.integration


def dlq(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STREAM_APP, "dlq", *args], capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def entry(external_id: str, version: int) -> dict:
    command = {"system": "salesforce", "object": "Contact", "operation": "upsert", "external_id_field": "Id",
               "external_id": external_id, "fields": {"Email": "grace.hopper@example.com", "Phone": "+14155550134"},
               "version": version, "record_key": "k1", "idempotency_key": f"i{version}"}
    return {"reason": "rejected", "error_code": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "error": "Phone must not be +14155550134", "attempts": 1, "system": "salesforce", "object": "Contact",
            "partition_key": f"salesforce:Contact:{external_id}", "command": command}


async def test_list_show_replay_purge(app_env: dict[str, str]) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    await create_topics(bootstrap, [f"{prefix}dlq.salesforce", f"{prefix}sink.salesforce.Contact"], partitions=1)
    await produce_json(bootstrap, f"{prefix}dlq.salesforce", [("a", entry("003A", 3)), ("b", entry("003B", 5))])

    listed = dlq(app_env, "list")
    assert listed.returncode == 0, listed.stderr
    assert "2 entries" in listed.stdout and "salesforce:0:0" in listed.stdout and "salesforce:0:1" in listed.stdout
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in listed.stdout
    assert "4155550134" not in listed.stdout

    shown = dlq(app_env, "show", "salesforce:0:1")
    assert shown.returncode == 0, shown.stderr
    assert '"external_id": "003B"' in shown.stdout and "g***@example.com" in shown.stdout
    assert "grace.hopper" not in shown.stdout

    assert "no DLQ entry salesforce:0:9" in dlq(app_env, "show", "salesforce:0:9").stderr
    assert dlq(app_env, "replay").returncode == 1

    replayed = dlq(app_env, "replay", "salesforce:0:1")
    assert replayed.returncode == 0, replayed.stderr
    [command] = await read_json(bootstrap, f"{prefix}sink.salesforce.Contact", until=lambda vs: len(vs) >= 1, quiet_after=1)
    assert command["external_id"] == "003B" and command["version"] == 5
    assert command["fields"]["Email"] == "grace.hopper@example.com"

    purged = dlq(app_env, "purge", "--yes")
    assert purged.returncode == 0 and "purged 2 DLQ entries" in purged.stdout
    assert "0 entries" in dlq(app_env, "list").stdout
