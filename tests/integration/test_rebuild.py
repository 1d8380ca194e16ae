"""`stream_app.rebuild` end to end: the flow tables rebuilt from the source topics after the flows
ran, with the state wiped (same group) or under a new app version (new group, changelogs and data
directory), on the real broker with the sandbox, a worker and the sources.

Afterwards the tables hold what they held before, nothing was written anywhere during the
rebuild, and the first edits after it map to the same customers and write exactly what they
change: the ids and links, and the memory of what each target holds, were rebuilt too.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aiokafka import TopicPartition

from connectors import kafka_admin
from stream_app import rebuild as rb
from stream_app.privacy import PrivacyError, export_person
from stream_app.settings import Settings, load_settings
from topologies.customer_sync.mapping import load_mappings
from tests.support.kafka import app_lag
from tests.integration.test_replay_e2e import GROUP_TOPICS, Connect, connect, first_onboarded  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

FLOW_TABLES = ("customer_master", "id_map", "customer_sync_identity")


def settings_for(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


async def tables(connect: Connect, group: str) -> dict[str, dict[str, Any]]:
    out = {}
    for name in FLOW_TABLES:
        raw = await rb.read_table(connect.bootstrap, f"{group}-{name}-changelog")
        out[name] = {json.loads(k) if k.startswith(b'"') else k.decode(): _value(v) for k, v in raw.items()}
    return out


def _value(raw: bytes) -> Any:
    """A table value (JSON), or an identity index entry (a customer key as text)."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()


def substance(state: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the tables mean: per customer its field values, links, source references and what
    it believes each target holds of the fields we write; the id map and the identity index. Left out: the
    golden record's version counter, the commit time and system behind each value, the dedupe
    window, the write history and the targets' other fields (LastModifiedDate ...): they depend
    on the order in which the rebuild read the topics' partitions, not on the customer."""
    outbound = load_mappings().outbound
    master = {key: {"fields": {name: slot["v"] for name, slot in record["fields"].items()},
                    "links": record["links"], "refs": sorted(record["refs"]),
                    "known": {target: {f: v for f, v in values.items() if f in outbound[target].fields}
                              for target, values in record["known"].items() if target in outbound}}
              for key, record in state["customer_master"].items()}
    return {"customer_master": master, "id_map": state["id_map"], "identity": state["customer_sync_identity"]}


async def rebuilt_and_edited(connect: Connect, monkeypatch: pytest.MonkeyPatch, group: str,
                             before: dict[str, Any], **options: Any) -> list[str]:
    """Run the rebuild with the workers and sources stopped; check that it wrote nothing and
    rebuilt the tables; start everything again and play two edits. Returns the rebuild's output."""
    snapshot, writes = connect.snapshot(), connect.writes()
    await connect.stop_worker()
    await connect.stop_sources()

    lines: list[str] = []
    settings = settings_for(connect.env, monkeypatch)
    assert rb.group_id(settings) == group
    code = await rb.rebuild(settings, env=connect.worker.env, log_path=connect.logs / "rebuild.log",
                            timeout=150, say=lines.append, **options)
    output = "\n".join(lines)
    assert code == 0, output
    skipped = re.search(r"^skipped (\d+) restated sink commands", output, re.M)
    assert skipped and int(skipped.group(1)) > 0, output
    assert f"customer_master {len(before['customer_master'])}" in output
    assert re.search(r"^done in \d+s \([\d,]+ input events, [\d,]+ events/s\)", output, re.M), output

    assert connect.writes() == writes, "the rebuild wrote to a system"
    assert connect.snapshot() == snapshot
    assert substance(await tables(connect, group)) == substance(before)
    # the group now starts past everything: nothing waits on any topic it reads
    assert await connect_lag(connect, group) == 0

    await connect.start_worker()
    connect.start_sources()
    await connect.settle(quiet=5)
    assert connect.writes() == writes, "starting after the rebuild wrote to a system"
    assert connect.snapshot() == snapshot

    # A TIMS user edits payment terms: the same customer, one upsert per Salesforce object.
    person = first_onboarded()
    tims, org = connect.sandbox.tims, connect.sandbox.org
    tims_id, contact_id, account_id = person.ids["tims"], person.ids["contact"], person.ids["account"]
    tims.update_customer(tims_id, payment_terms="NET45")
    await connect.wait_for("NET45 on the Contact and the Account",
                           lambda: org.get("Contact", contact_id)["TIMS_Payment_Terms__c"] == "NET45"
                           and org.get("Account", account_id)["TIMS_Payment_Terms__c"] == "NET45")
    await connect.settle()
    after_tims_edit = connect.writes()
    assert after_tims_edit == {"salesforce": writes["salesforce"] + 2, "tims": writes["tims"]}, (writes, after_tims_edit)

    # A Salesforce user edits the phone: one write to the same TIMS customer, by its TIMS id.
    sink_topic = f"{connect.prefix}sink.tims.customer"
    commands_before = await kafka_admin.end_offsets(connect.bootstrap, [sink_topic])
    org.update("Contact", contact_id, {"Phone": "+44 113 496 0000"})
    await connect.wait_for("the phone reaches TIMS", lambda: tims.customer(tims_id).get("phone") == "+441134960000")
    await connect.settle()
    assert connect.writes() == {"salesforce": after_tims_edit["salesforce"], "tims": after_tims_edit["tims"] + 1}
    assert len(tims.all("customers")) == 3
    [command] = await messages_since(connect.bootstrap, commands_before)
    assert (command["external_id_field"], command["external_id"]) == ("customer_id", tims_id)
    assert command["fields"] == {"phone": "+441134960000"}
    return lines


async def messages_since(bootstrap: str, offsets: dict[TopicPartition, int]) -> list[dict[str, Any]]:
    """The messages after ``offsets`` (per partition), up to the current ends."""
    topics = {tp.topic for tp in offsets}
    return [json.loads(record.value) async for record in kafka_admin.read_to_end(bootstrap, topics, since=offsets)]


async def connect_lag(connect: Connect, group: str) -> int:
    return await app_lag(connect.bootstrap, group, connect.prefix, GROUP_TOPICS)


async def test_rebuild_after_wiping_the_state_of_the_group(connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    group = connect.group
    before = await tables(connect, group)
    assert len(before["customer_master"]) == 4 and before["id_map"] and before["customer_sync_identity"]
    # `stream-app privacy export`: one person as the tables hold them, found by an email as typed
    person = first_onboarded()
    exported = await export_person(settings_for(connect.env, monkeypatch), email=f" {person.email.upper()} ")
    sync = exported["flows"]["customer_sync"]
    assert exported["group"] == group and sync["golden_record"] == before["customer_master"][sync["customer_key"]]
    assert {f"email:{person.email}", f"tims:customer:{person.ids['tims']}"} <= set(sync["identity_entries"])
    assert all(before["customer_sync_identity"][entry] == sync["customer_key"] for entry in sync["identity_entries"])
    assert sync["recent_event_ids"] and sync["recent_event_ids"] == sync["golden_record"]["seen"]
    with pytest.raises(PrivacyError, match="no person with that email"):
        await export_person(settings_for(connect.env, monkeypatch), email="nobody@nowhere.example")
    # A group that holds state is never rebuilt over without wipe.
    refused: list[str] = []
    assert await rb.rebuild(settings_for(connect.env, monkeypatch), dry_run=True, say=refused.append) == 1
    assert "already has table state" in refused[-1] and "--wipe" in refused[-1]

    lines = await rebuilt_and_edited(connect, monkeypatch, group, before, wipe=True)
    assert "wiped the state of " + group in "\n".join(lines)


async def test_rebuild_under_a_new_app_version(connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    old = connect.group
    before = await tables(connect, old)
    # The new version: a new consumer group, new changelogs, a new data directory, which is what
    # Faust's `version` changes (CONNECT_APP_ID=<id>-v2 names the group and changelogs exactly as
    # version 2 of <id> does).
    new = f"{old}-v2"
    for env in (connect.env, connect.worker.env):
        env.update(CONNECT_APP_ID=new, CONNECT_DATA_DIR=str(connect.logs / "data-v2"))

    lines = await rebuilt_and_edited(connect, monkeypatch, new, before, previous_group=old)
    assert f"previous state: group {old}" in "\n".join(lines)
    assert substance(await tables(connect, old)) == substance(before)  # the old version is left alone


async def test_rebuild_of_an_app_whose_workers_never_ran(app_env: dict[str, str], tmp_path: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the source topic exists: the rebuild worker creates the stage topics, and the rebuild
    waits for them too (it watched only the topics it found at its start, and could stop while
    the later stages still held work)."""
    from tests.support.kafka import create_topics, produce_json

    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    env = {**app_env, "CONNECT_FLOWS": "customer_sync", "CONNECT_SINK_OBJECTS": ""}
    people = 2000
    events = [(f"C{i:05d}", {"event_id": f"never-ran-{i}", "source": "tims", "entity": "customer",
                             "record_id": f"C{i:05d}", "change_type": "CREATE", "commit_timestamp": 1_000 + i,
                             "fields": {"customer_id": f"C{i:05d}", "name": f"Never Ran {i}",
                                        "email": f"never.ran{i}@example.com", "modified_by": "tims-ui"}})
              for i in range(people)]
    await create_topics(bootstrap, [f"{prefix}src.tims.customer"])
    await produce_json(bootstrap, f"{prefix}src.tims.customer", events)
    stage_topics = [f"{prefix}customer_sync.{stage}" for stage in ("merge", "matching", "identify")]
    assert not set(stage_topics) & await kafka_admin.list_topics(bootstrap)

    lines: list[str] = []
    settings = settings_for(env, monkeypatch)
    code = await rb.rebuild(settings, env=env, log_path=tmp_path / "rebuild.log", timeout=240, progress=False,
                            say=lines.append)
    output = "\n".join(lines)
    assert code == 0, output
    assert f"customer_master {people}" in output, output
    assert await app_lag(bootstrap, rb.group_id(settings), prefix, ["customer_sync.merge", "customer_sync.matching"]) == 0
