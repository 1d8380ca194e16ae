"""Clears end to end: the sandbox in this process, a worker and the three sources as processes.

A Salesforce user creates a graded Contact with a phone; the connector onboards it to TIMS (the
phone goes along) and writes the TIMS id and TIMS's default payment terms back to the Contact
and its Account. Then:

- a Salesforce user blanks the Contact's Phone (Salesforce owns the phone): the TIMS customer's
  phone must end cleared, by our write;
- a TIMS user removes the customer's payment terms (TIMS owns them): the Contact's and the
  Account's TIMS_Payment_Terms__c must end cleared.

Afterwards the connector must stop writing (our clears coming back are echoes), with both
clears still in place and nothing dead-lettered or quarantined.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.run import Sandbox, start_sandbox
from sandbox.demo import Processes
from tests.support.flows import connector_writes, wait_until
from tests.support.kafka import topic_sizes
from tests.support.worker import WorkerProcess, free_port

pytestmark = pytest.mark.integration

QUIET_WINDOW = 5.0  # seconds without a connector write that count as quiet
SETTLE_TIMEOUT = 60.0
EMAIL = "clara.clear@clears.example"
PHONE = "+19185550100"


async def test_a_cleared_field_is_cleared_in_the_other_system_then_all_is_quiet(app_env: dict[str, str],
                                                                                  tmp_path: Path) -> None:
    sandbox = await start_sandbox(ports={"salesforce-rest": 0, "salesforce-pubsub": 0, "pardot": 0, "tims": 0},
                                  keepalive_seconds=5)
    env = {**app_env, **sandbox.worker_env(), "CONNECT_WEB_PORT": str(free_port()),
           "CONNECT_SINK_OBJECTS": "salesforce.Contact,salesforce.Account,tims.customer",
           "CONNECT_SINK_LINGER": "0.2", "CONNECT_TIMS_POLL_INTERVAL": "1", "CONNECT_PARDOT_POLL_INTERVAL": "1"}
    worker = WorkerProcess(env, tmp_path / "worker.log")
    sources = Processes({**os.environ, **env}, tmp_path)
    org, tims = sandbox.org, sandbox.tims
    ids: dict[str, str] = {}

    def contact() -> dict[str, Any]:
        return org.get("Contact", ids["contact"]) or {}

    def account() -> dict[str, Any]:
        return org.get("Account", ids["account"]) or {}

    def customer() -> dict[str, Any]:
        return tims.customer(ids["tims"])

    def state() -> dict[str, Any]:
        wanted = ("Phone", "TIMS_Customer_ID__c", "TIMS_Payment_Terms__c")
        return {"contact": {k: contact().get(k) for k in wanted},
                "account": {k: account().get(k) for k in wanted[1:]} if "account" in ids else None,
                "tims": {k: customer().get(k) for k in ("phone", "payment_terms", "modified_by")}
                if "tims" in ids else None}

    def onboarded() -> bool:
        try:
            found = tims.customer_by_external_id(ids["contact"])
        except Exception:  # noqa: BLE001 - not there yet
            return False
        ids["tims"] = found["customer_id"]
        return (found["phone"] == PHONE
                and contact().get("TIMS_Customer_ID__c") == account().get("TIMS_Customer_ID__c") == ids["tims"]
                and contact().get("TIMS_Payment_Terms__c") == account().get("TIMS_Payment_Terms__c") == "NET30")

    try:
        await asyncio.to_thread(worker.start, 120.0)
        for system in ("salesforce", "tims", "pardot"):
            sources.start(f"source-{system}", "source", system)

        # A Salesforce user enters the account and a qualified contact with a phone.
        ids["account"] = org.create("Account", {"Name": "Clear Gases Ltd"})
        ids["contact"] = org.create("Contact", {"FirstName": "Clara", "LastName": "Clear", "Email": EMAIL,
                                                "Phone": "(918) 555-0100", "AccountId": ids["account"],
                                                "pi__score__c": 150.0, "pi__grade__c": "A"})
        await wait_until("onboarded: phone in TIMS, TIMS id and payment terms on Contact and Account",
                         onboarded, sources, worker, state, timeout=120)

        # 1. Salesforce owns the phone: blanked on the Contact, it must be cleared in TIMS, by us.
        cleared_at = len(tims.changes)
        org.update("Contact", ids["contact"], {"Phone": None})
        await wait_until("the phone blanked on the Contact is cleared in TIMS",
                         lambda: customer()["phone"] is None, sources, worker, state)
        ours = [c for c in tims.changes[cleared_at:] if c.id == ids["tims"]]
        assert ours and ours[-1].modified_by == "connect" and ours[-1].record["phone"] is None, ours

        # 2. TIMS owns the payment terms: removed in TIMS, they must be cleared on Contact and Account.
        tims.update_customer(ids["tims"], payment_terms=None)
        await wait_until("the payment terms removed in TIMS are cleared on the Contact and the Account",
                         lambda: contact().get("TIMS_Payment_Terms__c") is None
                         and account().get("TIMS_Payment_Terms__c") is None, sources, worker, state)

        # Quiet: our clears come back as echoes and cause no further writes.
        settle_deadline = time.monotonic() + SETTLE_TIMEOUT
        windows: list[tuple[int, int]] = []
        while True:
            before = connector_writes(sandbox)
            await asyncio.sleep(QUIET_WINDOW)
            after = connector_writes(sandbox)
            windows.append((after[0] - before[0], after[1] - before[1]))
            if after == before:
                break
            sources.check()
            assert time.monotonic() < settle_deadline, \
                f"the connector keeps writing; (Salesforce, TIMS) writes per window: {windows}"

        # Still cleared on both sides, nothing else lost, no value flip-flopped back in between.
        final = customer()
        assert (final["phone"], final["payment_terms"]) == (None, None), state()
        assert (final["name"], final["email"], final["external_id"]) == ("Clara Clear", EMAIL, ids["contact"])
        assert contact().get("Phone") is None and contact().get("TIMS_Payment_Terms__c") is None, state()
        assert account().get("TIMS_Payment_Terms__c") is None, state()
        assert contact().get("TIMS_Customer_ID__c") == account().get("TIMS_Customer_ID__c") == ids["tims"]
        after_clear = [c.record["phone"] for c in tims.changes[cleared_at:] if c.id == ids["tims"]]
        assert after_clear and all(phone is None for phone in after_clear), after_clear
        prefix = app_env["CONNECT_TOPIC_PREFIX"]
        rejected = await topic_sizes(app_env["KAFKA_BOOTSTRAP_SERVERS"], [
            f"{prefix}{t}" for t in ("dlq.salesforce", "dlq.tims", "quarantine.customer_sync", "quarantine.sink")])
        assert set(rejected.values()) == {0}, rejected
    finally:
        await asyncio.gather(asyncio.to_thread(sources.stop), asyncio.to_thread(worker.stop, 60.0))
        await sandbox.stop()
