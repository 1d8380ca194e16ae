"""Activities end to end: the sandbox, a worker running the activities flow, the Pardot and TIMS
sources as processes, on the real broker.

Ada is a TIMS customer (her Contact is linked in TIMS) with an open order and an open invoice;
Bob is only a Lead. Ada submits a form and clicks a link in an email: two Tasks on her Contact,
with her ERP context. Bob views three pages and is sent an email: one page-view roll-up Task on
his Lead counting three, no Task for the send. Then every visitor activity is delivered again,
newest first: no Task is created twice and no Salesforce call is made.
"""

from __future__ import annotations

import time
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest

from sandbox.run import Sandbox
from tests.support.flows import connector_writes, flow_rig
from tests.support.kafka import produce_json, read_json

pytestmark = pytest.mark.integration


def settings(_: Sandbox) -> dict[str, str]:
    return {"CONNECT_FLOWS": "activities", "CONNECT_SINK_OBJECTS": "salesforce.Task",
            "CONNECT_PARDOT_ENTITIES": "prospect,visitor_activity", "CONNECT_PARDOT_POLL_INTERVAL": "1",
            "CONNECT_PARDOT_OVERLAP_SECONDS": "5", "CONNECT_TIMS_ENTITIES": "customer,sales_order,invoice"}


def task(sandbox: Sandbox, key: str) -> dict[str, Any]:
    found = sandbox.org.find("Task", "Pardot_Activity_Key__c", key)
    return found[0] if found else {}


async def test_activities_become_tasks_with_erp_context_once(app_env: dict[str, str], tmp_path: Path) -> None:
    began = time.monotonic()
    async with flow_rig(app_env, tmp_path, settings, ("pardot", "tims")) as rig:
        org, pardot, tims = rig.sandbox.org, rig.sandbox.pardot, rig.sandbox.tims
        contact = org.create("Contact", {"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com"})
        lead = org.create("Lead", {"FirstName": "Bob", "LastName": "Babbage", "Company": "Engines",
                                   "Email": "bob@example.com"})
        customer = tims.create("customers", {"name": "Ada Lovelace", "email": "ada@example.com",
                                             "external_id": contact, "payment_terms": "NET30",
                                             "credit_limit": 5000})["customer_id"]
        tims.create("sales_orders", {"customer_id": customer, "status": "open",
                                     "lines": [{"item_id": tims.create("items", {"sku": "AR-40", "name": "Argon"})["item_id"],
                                                "quantity": 2, "unit_price": 42.5}]})
        invoice = tims.create("invoices", {"customer_id": customer, "invoice_date": "2026-12-01",
                                           "total_amount": 120.25})["invoice_id"]
        bootstrap = app_env["KAFKA_BOOTSTRAP_SERVERS"]
        context_topic = f"{app_env['CONNECT_APP_ID']}-activities_context-changelog"
        await read_json(bootstrap, context_topic, timeout=60,
                        until=lambda vs: any(v.get("open_orders") == 1 and v.get("last_invoice") == invoice for v in vs))

        ada = pardot.create_prospect("ada@example.com", firstName="Ada")["id"]
        pardot.link_crm(ada, contact_id=contact)
        bob = pardot.create_prospect("bob@example.com", firstName="Bob")["id"]
        pardot.link_crm(bob, lead_id=lead)
        _, form = pardot.submit_form("ada@example.com", {"firstName": "Ada"}, handler="contact-us")
        click = pardot.add_visitor_activity(ada, 1, "Click", "https://example.com/offer", emailId=7001)
        for page in ("/pricing", "/cylinders", "/pricing"):
            pardot.add_visitor_activity(bob, 2, "View", page)
        pardot.add_visitor_activity(bob, 6, "Sent", "December newsletter", emailId=7001)

        day = form["createdAt"].astimezone(timezone.utc).date().isoformat()
        rollup = f"pardot:{bob}:page_view:{day}"
        await rig.until("two Tasks on Ada's Contact and Bob's page views counted on his Lead",
                        lambda: bool(task(rig.sandbox, f"pardot:{form['id']}")) and bool(task(rig.sandbox, f"pardot:{click['id']}"))
                        and task(rig.sandbox, rollup).get("Subject") == f"Pardot: 3 page views on {day}",
                        state=lambda: org.records("Task"), timeout=90)
        submitted, clicked = task(rig.sandbox, f"pardot:{form['id']}"), task(rig.sandbox, f"pardot:{click['id']}")
        for found in (submitted, clicked):
            assert found["WhoId"] == contact and found["Status"] == "Completed"
            assert found["TIMS_Open_Orders__c"] == 1 and found["TIMS_Open_Balance__c"] == 120.25
            assert found["TIMS_Last_Invoice__c"] == invoice
            assert f"TIMS customer {customer}" in found["Description"] and "Open orders: 1 (85.00 USD)" in found["Description"]
        assert submitted["Subject"] == "Pardot: form contact-us"
        assert clicked["Subject"] == "Pardot: clicked https://example.com/offer"
        views = task(rig.sandbox, rollup)
        assert views["WhoId"] == lead and views["TIMS_Open_Orders__c"] is None
        assert "/cylinders" in views["Description"]
        assert len(org.records("Task")) == 3, "the email send makes no Task"
        writes = await rig.until_quiet()

        prefix = app_env["CONNECT_TOPIC_PREFIX"]
        events = await read_json(bootstrap, f"{prefix}src.pardot.visitor_activity", until=lambda vs: len(vs) >= 6)
        again = await produce_json(bootstrap, f"{prefix}src.pardot.visitor_activity",
                                   [(e["record_id"], e) for e in reversed(events)])
        await read_json(bootstrap, f"{prefix}activities.merge", timeout=60,
                        until=lambda vs: sum(v["event"]["entity"] == "visitor_activity" for v in vs) >= len(events) + again)
        assert await rig.until_quiet() == writes, "replayed activities made no Salesforce call"
        assert len(org.records("Task")) == 3
        assert task(rig.sandbox, rollup)["Subject"] == f"Pardot: 3 page views on {day}"
        calls = connector_writes(rig.sandbox)[0]
        print(f"\nactivities e2e: {calls} Salesforce writes for {len(events)} activities; {again} replayed; "
              f"{time.monotonic() - began:.0f}s")
