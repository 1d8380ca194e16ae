"""Probabilistic matching in the customer sync, end to end on the real broker (issue 16,
docs/adr/0036): a worker fed with source events, the review commands run as a user runs them.

- A TIMS customer entered at the counter with another email and a typo in the name, with the
  same phone and street, joins the existing customer (its TIMS id reaches their Contact).
- A borderline pair (same names and postcode, nothing else shared) becomes a customer of its
  own and a review; accepted, the two merge (the TIMS id reaches the Contact, a later TIMS edit
  lands on the survivor, the merge is audited); rejected after that, the unmerge restores both
  (the Contact's TIMS id is cleared, the TIMS customer's edits go to its own customer again).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.kafka import produce_json, read_json
from tests.support.worker import STREAM_APP, WorkerProcess
from topologies.customer_sync.identity import mint_key

pytestmark = pytest.mark.integration
_ids = itertools.count(1)


def src(source: str, entity: str, record_id: str, ts: int, change: str = "CREATE", **fields: Any) -> tuple[str, dict]:
    return record_id, {"event_id": f"m{next(_ids)}", "source": source, "entity": entity, "record_id": record_id,
                       "change_type": change, "fields": fields, "commit_timestamp": ts, "full_state": True}


async def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [STREAM_APP, *args], capture_output=True, text=True, timeout=120,
                                   env={**os.environ, **env}, stdin=subprocess.DEVNULL)


async def golden(env: dict[str, str], key: str) -> dict[str, Any]:
    done = await cli(env, "privacy", "export", "--customer", key)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["flows"]["customer_sync"]["golden_record"]


def writes_to(values: list[dict[str, Any]], record_id: str, field: str) -> list[Any]:
    return [v["fields"][field] for v in values if v["external_id"] == record_id and field in v["fields"]]


async def test_a_counter_entered_tims_customer_joins_and_a_reviewed_pair_merges_and_unmerges(
        app_env: dict[str, str], tmp_path: Path) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    ada, grace = mint_key("ada@example.com"), mint_key("grace@navy.example")
    counter_grace = mint_key("ghopper@contractor.example")
    with WorkerProcess(app_env, tmp_path / "worker.log").start() as worker:
        await produce_json(bootstrap, f"{prefix}src.salesforce.Contact", [
            src("salesforce", "Contact", "003A", 1000, Email="ada@example.com", FirstName="Ada", LastName="Lovelace",
                Phone="(415) 555-0100", MailingStreet="12 Main Street", MailingCity="Springfield",
                MailingPostalCode="62701"),
            src("salesforce", "Contact", "003B", 1000, Email="grace@navy.example", FirstName="Grace",
                LastName="Hopper", MailingCity="Arlington", MailingPostalCode="22201")])
        # the golden records and their profiles exist before the TIMS customers arrive
        await read_json(bootstrap, f"{prefix}customer_sync.merge",
                        until=lambda vs: sum(v.get("kind") == "event" for v in vs) >= 2, timeout=60)
        await asyncio.sleep(3)

        # 1. another email, a typo in the last name, the same phone and street: a link
        await produce_json(bootstrap, f"{prefix}src.tims.customer", [
            src("tims", "customer", "C9", 2000, name="Ada Lovelase", email="ada@lovelace-welding.com",
                phone="415-555-0100", modified_by="tims-ui",
                billing_address={"street": "12 Main St", "city": "Springfield", "postal_code": "62701"})])
        contacts = await read_json(bootstrap, f"{prefix}sink.salesforce.Contact",
                                   until=lambda vs: "C9" in writes_to(vs, "003A", "TIMS_Customer_ID__c"), timeout=90)
        assert {v["record_key"] for v in contacts if v["external_id"] == "003A"} == {ada}

        # 2. the same names and postcode, another email, nothing else shared: a review
        await produce_json(bootstrap, f"{prefix}src.tims.customer", [
            src("tims", "customer", "C20", 3000, name="Grace Hopper", email="ghopper@contractor.example",
                modified_by="tims-ui", payment_terms="NET30",
                billing_address={"city": "Arlington", "postal_code": "22201"})])
        [review] = await read_json(bootstrap, f"{prefix}audit.match_review", until=lambda vs: len(vs) >= 1,
                                   timeout=90, quiet_after=2)
        assert (review["status"], review["candidate_key"], review["customer_key"]) == ("open", grace, counter_grace)
        assert review["reference"] == "tims:customer:C20" and 0.5 <= review["score"]
        assert review["levels"]["address"] == "postcode" and "ghopper" not in json.dumps(review)
        listed = await cli(app_env, "identity", "review", "list")
        assert listed.returncode == 0 and f"{review['review_id']}  open" in listed.stdout, listed.stdout + listed.stderr

        accepted = await cli(app_env, "identity", "review", "accept", review["review_id"], "--by", "alice")
        assert accepted.returncode == 0, accepted.stderr
        contacts = await read_json(bootstrap, f"{prefix}sink.salesforce.Contact",
                                   until=lambda vs: "C20" in writes_to(vs, "003B", "TIMS_Customer_ID__c"), timeout=90)
        assert {v["record_key"] for v in contacts if v["external_id"] == "003B"} == {grace}
        merged = await golden(app_env, grace)
        assert "tims:customer:C20" in merged["refs"] and merged["links"]["tims_customer"] == "C20"
        assert list(merged["absorbed"]) == [counter_grace]
        assert (await golden(app_env, counter_grace))["merged_into"]["into"] == grace
        # a later edit of the TIMS customer lands on the survivor (its reference was repointed)
        await produce_json(bootstrap, f"{prefix}src.tims.customer", [
            src("tims", "customer", "C20", 4000, change="UPDATE", name="Grace Hopper",
                email="ghopper@contractor.example", modified_by="tims-ui", payment_terms="NET60",
                billing_address={"city": "Arlington", "postal_code": "22201"})])
        await read_json(bootstrap, f"{prefix}sink.salesforce.Contact",
                        until=lambda vs: "NET60" in writes_to(vs, "003B", "TIMS_Payment_Terms__c"), timeout=90)
        again = await cli(app_env, "identity", "review", "accept", review["review_id"])
        assert again.returncode == 1 and "is accepted" in again.stderr

        # 3. the reviewer says it was wrong: unmerge
        rejected = await cli(app_env, "identity", "review", "reject", review["review_id"], "--by", "bob")
        assert rejected.returncode == 0, rejected.stderr
        await read_json(bootstrap, f"{prefix}sink.salesforce.Contact",
                        until=lambda vs: writes_to(vs, "003B", "TIMS_Customer_ID__c")[-1:] == [None], timeout=90)
        audit = await read_json(bootstrap, f"{prefix}audit.merges", until=lambda vs: len(vs) >= 2, timeout=60)
        survivor, duplicate = await golden(app_env, grace), await golden(app_env, counter_grace)
        await produce_json(bootstrap, f"{prefix}src.tims.customer", [
            src("tims", "customer", "C20", 5000, change="UPDATE", name="Grace Hopper",
                email="ghopper@contractor.example", modified_by="tims-ui", payment_terms="NET45",
                billing_address={"city": "Arlington", "postal_code": "22201"})])
        tims = await read_json(bootstrap, f"{prefix}sink.tims.customer",
                               until=lambda vs: any(v["record_key"] == counter_grace for v in vs), timeout=90)
        decisions = await read_json(bootstrap, f"{prefix}audit.match_review", until=lambda vs: len(vs) >= 3, timeout=30)
        assert worker.proc.poll() is None, "the worker died"
        log = worker.log_text()
        worker.stop()

    assert [(a["action"], a["survivor"], a["duplicate"], a["by"]) for a in audit] == [
        ("merge", grace, counter_grace, "alice"), ("unmerge", grace, counter_grace, "bob")]
    assert audit[0]["links"] == {"tims_customer": "C20"} and "ghopper" not in json.dumps(audit)
    assert "tims:customer:C20" not in survivor["refs"] and "tims_customer" not in survivor["links"]
    assert survivor["absorbed"] == {} and survivor["fields"]["email"]["v"] == "grace@navy.example"
    assert "merged_into" not in duplicate and "tims:customer:C20" in duplicate["refs"]
    assert all(c["external_id"] == "C20" for c in tims if c["record_key"] == counter_grace)
    assert [(d["decision"], d["status"], d["by"]) for d in decisions[1:]] == [
        ("accept", "accepted", "alice"), ("reject", "unmerged", "bob")]
    assert "Crashed" not in log and "ada@example.com" not in log
