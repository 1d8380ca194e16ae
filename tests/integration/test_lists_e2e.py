"""Lists end to end: the sandbox, a worker running the lists flow, the Pardot, Salesforce and TIMS
sources as processes, on the real broker.

A Pardot list is linked to a Campaign by the mapping. Bob (a Lead) is added to the list in
Pardot: he becomes a CampaignMember; Ada (a Contact) is added to the Campaign in Salesforce:
she lands on the list. Each is then removed where they were added, and is removed from the
other side. A TIMS segment appears as a Campaign and a Pardot list; Ada, a TIMS customer, is
added to the segment in TIMS and lands in both, then is removed and leaves both. Then every
membership and customer event is delivered again, newest first: nothing is written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.run import Sandbox
from tests.support.flows import mapping_changed, flow_rig
from tests.support.kafka import produce_json, read_json
from topologies.lists.membership import DEFAULT_MAPPING_DIR

pytestmark = pytest.mark.integration


def members(sandbox: Sandbox, campaign: str) -> set[str]:
    return {r["ContactId"] or r["LeadId"] for r in sandbox.org.records("CampaignMember") if r["CampaignId"] == campaign}


def on_list(sandbox: Sandbox, list_id: int) -> set[int]:
    return {m["prospectId"] for m in sandbox.pardot.memberships(list_id=list_id)}


async def test_lists_campaigns_and_segments_stay_in_step(app_env: dict[str, str], tmp_path: Path) -> None:
    began = time.monotonic()
    made: dict[str, Any] = {}

    def settings(sandbox: Sandbox) -> dict[str, str]:
        made["campaign"] = sandbox.org.create("Campaign", {"Name": "Spring welding days", "IsActive": True})
        made["list"] = sandbox.pardot.create_list("Spring welding days")["id"]
        return {"CONNECT_FLOWS": "lists",
                "CONNECT_SINK_OBJECTS": "salesforce.CampaignMember,salesforce.Campaign,pardot.list_membership,pardot.list",
                "CONNECT_SALESFORCE_ENTITIES": "Campaign,CampaignMember",
                "CONNECT_PARDOT_ENTITIES": "prospect,list,list_membership", "CONNECT_PARDOT_POLL_INTERVAL": "1",
                "CONNECT_PARDOT_OVERLAP_SECONDS": "5", "CONNECT_TIMS_ENTITIES": "customer,segment",
                **mapping_changed(tmp_path, "lists", DEFAULT_MAPPING_DIR, "lists.yaml", "links: []",
                                  f"links: [{{pardot_list: {made['list']}, campaign: {made['campaign']}}}]")}

    async with flow_rig(app_env, tmp_path, settings, ("pardot", "salesforce", "tims")) as rig:
        org, pardot, tims = rig.sandbox.org, rig.sandbox.pardot, rig.sandbox.tims
        campaign, list_id = made["campaign"], made["list"]
        ada_contact = org.create("Contact", {"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com"})
        bob_lead = org.create("Lead", {"FirstName": "Bob", "LastName": "Babbage", "Company": "Engines"})
        ada = pardot.create_prospect("ada@example.com")["id"]
        pardot.link_crm(ada, contact_id=ada_contact)
        bob = pardot.create_prospect("bob@example.com")["id"]
        pardot.link_crm(bob, lead_id=bob_lead)

        bob_on_list = pardot.add_to_list(list_id, bob)
        ada_member = org.create("CampaignMember", {"CampaignId": campaign, "ContactId": ada_contact})
        await rig.until("Bob in the Campaign (added in Pardot), Ada on the list (added in Salesforce)",
                        lambda: members(rig.sandbox, campaign) == {ada_contact, bob_lead}
                        and on_list(rig.sandbox, list_id) == {ada, bob},
                        state=lambda: (members(rig.sandbox, campaign), on_list(rig.sandbox, list_id)), timeout=90)

        pardot.delete("list-memberships", bob_on_list["id"])
        org.delete("CampaignMember", ada_member)
        await rig.until("each removed from the other side too",
                        lambda: members(rig.sandbox, campaign) == set() and on_list(rig.sandbox, list_id) == set(),
                        state=lambda: (members(rig.sandbox, campaign), on_list(rig.sandbox, list_id)), timeout=90)

        customer = tims.create("customers", {"name": "Ada Lovelace", "email": "ada@example.com",
                                             "external_id": ada_contact})["customer_id"]
        segment = tims.create("segments", {"name": "Monthly welding gas buyers"})["segment_id"]
        tims.update("customers", customer, {"segment_ids": [segment]})

        def published() -> tuple[str | None, int | None]:
            found = org.find("Campaign", "TIMS_Segment_ID__c", segment)
            lists = [r for r in pardot.snapshot()["records"]["lists"] if r["name"] == f"TIMS segment {segment}"]
            return (found[0]["Id"] if found else None), (lists[0]["id"] if lists else None)

        await rig.until("the segment is a Campaign and a Pardot list, with Ada in both",
                        lambda: all(published()) and members(rig.sandbox, published()[0]) == {ada_contact}
                        and on_list(rig.sandbox, published()[1]) == {ada},
                        state=lambda: (published(), org.records("Campaign")), timeout=90)
        segment_campaign, segment_list = published()
        assert org.find("Campaign", "TIMS_Segment_ID__c", segment)[0]["Name"] == "Monthly welding gas buyers"
        tims.update("customers", customer, {"segment_ids": []})
        await rig.until("Ada removed from the segment's Campaign and list",
                        lambda: members(rig.sandbox, segment_campaign) == set()
                        and on_list(rig.sandbox, segment_list) == set(), timeout=90)
        writes = await rig.until_quiet()
        pardot_rows = len(pardot.snapshot()["records"]["list-memberships"])

        bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
        replayed = 0
        for entity in ("src.pardot.list_membership", "src.tims.customer", "src.salesforce.CampaignMember"):
            events = await read_json(bootstrap, f"{prefix}{entity}", until=lambda vs: len(vs) >= 2)
            replayed += await produce_json(bootstrap, f"{prefix}{entity}", [(e["record_id"], e) for e in reversed(events)])
        await rig.until_quiet()
        assert await rig.until_quiet() == writes, "replayed membership events wrote nothing"
        assert members(rig.sandbox, campaign) == set() and members(rig.sandbox, segment_campaign) == set()
        assert on_list(rig.sandbox, list_id) == set() and on_list(rig.sandbox, segment_list) == set()
        assert len(org.records("Campaign")) == 2
        assert len(pardot.snapshot()["records"]["list-memberships"]) == pardot_rows, "no list membership was made again"
        print(f"\nlists e2e: {writes} (Salesforce, TIMS) writes; {replayed} events replayed; "
              f"{time.monotonic() - began:.0f}s")
