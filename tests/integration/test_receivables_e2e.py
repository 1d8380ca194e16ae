"""Accounts receivable end to end: the sandbox, a worker running the receivables flow, the
TIMS, Salesforce and Pardot sources as processes, on the real broker.

- A linked customer (Account, Contact and prospect carry its TIMS id or Contact): two invoices,
  one overdue and part paid, reach the Account, the Contact and the prospect to the cent.
- A corrected invoice replaces its amount and puts the customer over its credit limit: hold.
- A TIMS sales order: its date and items (by name) reach the prospect as the last purchase.
- A customer whose Account is not linked yet waits (metric) and is released by the link.
- Every invoice and payment event delivered again, newest first: nothing changes, no write.
- An edit of the open balance in Salesforce is won back and audited.
- The same payment twice: flagged on audit.anomalies, held out of the balance, listed, released.
- An invoice in another currency and hostile stage messages are quarantined with the reason.
- The Account balances equal what the TIMS sandbox's own invoices and payments add up to.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sandbox.run import Sandbox
from tests.support.flows import flow_rig, mapping_changed, waiting_shows
from tests.support.kafka import produce_json, read_json
from tests.support.worker import STREAM_APP
from topologies.receivables.rollup import DEFAULT_MAPPING_DIR

pytestmark = pytest.mark.integration


def settings(tmp_path: Path) -> Any:
    def of(sandbox: Sandbox) -> dict[str, str]:
        return {**base_settings(sandbox), **mapping_changed(tmp_path, "receivables", DEFAULT_MAPPING_DIR,
                                                             "receivables.yaml", "hold: []", "hold: [duplicate_payment]")}
    return of


def base_settings(sandbox: Sandbox) -> dict[str, str]:
    return {"CONNECT_FLOWS": "receivables",
            "CONNECT_SINK_OBJECTS": "salesforce.Account,salesforce.Contact,pardot.prospect",
            "CONNECT_SALESFORCE_ENTITIES": "Account,Contact", "CONNECT_TIMS_ENTITIES": "customer,invoice,payment,sales_order,item",
            "CONNECT_PARDOT_ENTITIES": "prospect", "CONNECT_PARDOT_POLL_INTERVAL": "1",
            "CONNECT_PARDOT_OVERLAP_SECONDS": "5"}


def balance_in_tims(sandbox: Sandbox, customer: str) -> Decimal:
    """What TIMS's own records add up to in USD: the open invoices' balances less unapplied payments."""
    tims = sandbox.tims
    invoices = [i for i in tims.all("invoices")
                if i["customer_id"] == customer and i["status"] != "void" and i["currency"] == "USD"]
    unapplied = [p for p in tims.all("payments") if p["customer_id"] == customer and not p.get("invoice_id")]
    return (sum((Decimal(repr(i["balance_due"])) for i in invoices), Decimal(0))
            - sum((Decimal(repr(p["amount"])) for p in unapplied), Decimal(0)))


async def test_receivables_roll_up(app_env: dict[str, str], tmp_path: Path) -> None:
    began = time.monotonic()
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    today = datetime.now(timezone.utc).date()
    async with flow_rig(app_env, tmp_path, settings(tmp_path), ("salesforce", "tims", "pardot")) as rig:
        org, tims, pardot = rig.sandbox.org, rig.sandbox.tims, rig.sandbox.pardot
        weld = tims.create("customers", {"name": "Weld Co", "credit_limit": 1000, "payment_terms": "NET30"})["customer_id"]
        account = org.create("Account", {"Name": "Weld Co", "TIMS_Customer_ID__c": weld})
        contact = org.create("Contact", {"LastName": "Welder", "AccountId": account, "TIMS_Customer_ID__c": weld})
        prospect = pardot.create_prospect("welder@example.com")["id"]
        pardot.link_crm(prospect, contact_id=contact)

        overdue = tims.create("invoices", {"customer_id": weld, "invoice_date": "2026-10-01", "due_date": "2026-11-01",
                                           "total_amount": 300.10})["invoice_id"]
        later = tims.create("invoices", {"customer_id": weld, "invoice_date": "2026-12-01",
                                         "due_date": (date(today.year + 1, 1, 31)).isoformat(),
                                         "total_amount": 250.50})["invoice_id"]
        tims.create("payments", {"customer_id": weld, "invoice_id": overdue, "amount": 100.05,
                                 "payment_date": "2026-11-20"})
        days = (today - date(2026, 11, 1)).days
        expected = {"TIMS_Open_Balance__c": 450.55, "TIMS_Overdue_Amount__c": 200.05, "TIMS_Days_Past_Due__c": days,
                    "TIMS_Last_Invoice_Date__c": "2026-12-01", "TIMS_Last_Invoice_Amount__c": 250.5,
                    "TIMS_Last_Payment_Date__c": "2026-11-20", "TIMS_Last_Payment_Amount__c": 100.05,
                    "TIMS_Lifetime_Revenue__c": 550.6, "TIMS_Credit_Hold__c": False}

        def account_shows(wanted: dict[str, Any], record: str = account) -> bool:
            found = org.get("Account", record)
            return all(found.get(k) == v for k, v in wanted.items())

        await rig.until("the roll-up on the Account", lambda: account_shows(expected),
                        state=lambda: org.get("Account", account))
        await rig.until("on the Contact", lambda: (org.get("Contact", contact)["TIMS_Open_Balance__c"],
                                                   org.get("Contact", contact)["TIMS_Days_Past_Due__c"]) == (450.55, days))
        await rig.until("on the prospect", lambda: (pardot.get("prospects", prospect).get("Open_Balance__c"),
                                                    pardot.get("prospects", prospect).get("Last_Payment_Date__c")) == (
                            450.55, "2026-11-20"), state=lambda: pardot.get("prospects", prospect))

        # a corrected invoice replaces its amount; the balance now exceeds the credit limit
        tims.update("invoices", later, {"total_amount": 750.50})
        await rig.until("the correction, and the credit hold", lambda: account_shows(
            {"TIMS_Open_Balance__c": 950.55, "TIMS_Lifetime_Revenue__c": 1050.6, "TIMS_Credit_Hold__c": False}))
        tims.update("invoices", later, {"total_amount": 1000.00})
        await rig.until("over the limit: hold", lambda: account_shows(
            {"TIMS_Open_Balance__c": 1200.05, "TIMS_Credit_Hold__c": True}))
        await rig.until("the hold in Pardot", lambda: pardot.get("prospects", prospect).get("Credit_Hold__c") is True)

        # the last purchase reaches Pardot for marketing: the order's items by name
        argon = tims.create("items", {"sku": "AR-40", "name": "Argon 40 cf", "unit_price": 42.5})["item_id"]
        tims.create("sales_orders", {"customer_id": weld, "order_date": "2026-12-04",
                                     "lines": [{"item_id": argon, "quantity": 2, "unit_price": 42.5}]})
        await rig.until("the last purchase on the prospect", lambda: (
            pardot.get("prospects", prospect).get("Last_Purchased_Products__c"),
            pardot.get("prospects", prospect).get("Last_Order_Date__c")) == ("Argon 40 cf", "2026-12-04"),
            state=lambda: pardot.get("prospects", prospect))

        # a customer whose Account is linked only later waits, then is released
        gas = tims.create("customers", {"name": "Gas Co"})["customer_id"]
        tims.create("invoices", {"customer_id": gas, "invoice_date": "2026-12-02", "total_amount": 80})
        gas_account = org.create("Account", {"Name": "Gas Co"})
        await waiting_shows(rig, "receivables", "account", 1.0)
        org.update("Account", gas_account, {"TIMS_Customer_ID__c": gas})
        await rig.until("the waiting customer released by its Account's link",
                        lambda: account_shows({"TIMS_Open_Balance__c": 80, "TIMS_Lifetime_Revenue__c": 80}, gas_account))

        # an edit of our field in Salesforce is won back, and audited
        org.update("Account", account, {"TIMS_Open_Balance__c": 1.0})
        await rig.until("the edit won back", lambda: account_shows({"TIMS_Open_Balance__c": 1200.05}))
        conflicts = await read_json(bootstrap, f"{prefix}audit.conflicts",
                                    until=lambda vs: any(v.get("flow") == "receivables" for v in vs))
        assert [(c["field"], c["loser"]["value"]) for c in conflicts if c.get("flow") == "receivables"] == [
            ("TIMS_Open_Balance__c", 1.0)]

        # the same payment again a day later: flagged as a duplicate and held (this test's mapping
        # holds duplicate payments) until an operator releases it
        tims.create("payments", {"customer_id": weld, "invoice_id": overdue, "amount": 100.05,
                                 "payment_date": "2026-11-21"})
        flags = await read_json(bootstrap, f"{prefix}audit.anomalies",
                                until=lambda vs: any(v.get("rule") == "duplicate_payment" for v in vs))
        duplicate = next(v for v in flags if v.get("rule") == "duplicate_payment")
        assert duplicate["held"] and duplicate["customer_id"] == weld, duplicate
        assert account_shows({"TIMS_Open_Balance__c": 1200.05}), "a held payment does not count"

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([STREAM_APP, "anomalies", *args], env={**os.environ, **rig.env}, capture_output=True,
                                  text=True, timeout=120)

        listed = await asyncio.to_thread(cli, "list", "--held")
        assert listed.returncode == 0 and f"{weld} {duplicate['subject']}: duplicate_payment" in listed.stdout, (
            listed.stdout + listed.stderr)
        released = await asyncio.to_thread(cli, "release", "--customer", weld, "--subject", duplicate["subject"])
        assert released.returncode == 0, released.stderr
        await rig.until("the released payment counts", lambda: account_shows({"TIMS_Open_Balance__c": 1100.0}))
        assert (await asyncio.to_thread(cli, "list", "--held")).stdout == ""

        # hostile and unusable input is quarantined with the reason
        tims.create("invoices", {"customer_id": weld, "invoice_date": "2026-12-03", "total_amount": 5,
                                 "currency": "EUR"})
        await produce_json(bootstrap, f"{prefix}receivables.merge", [
            ("x", "a string"), (weld, {"kind": "linked", "target": "salesforce.Account"}),
            (weld, {"kind": "event", "event": {"no": "event"}})])
        quarantined = await read_json(bootstrap, f"{prefix}quarantine.receivables",
                                      until=lambda vs: len(vs) >= 4, timeout=40)
        reasons = sorted(v["reason"].split(":")[0] for v in quarantined)
        assert any("is in EUR; the roll-up is kept in USD" in v["reason"] for v in quarantined), quarantined
        assert reasons.count("merge") >= 3, reasons

        # every invoice and payment event again, newest first: nothing moves, nothing is written
        await rig.until_quiet()
        before = {r: org.get("Account", r) for r in (account, gas_account)}
        writes = await rig.until_quiet()
        for entity in ("invoice", "payment"):
            events = await read_json(bootstrap, f"{prefix}src.tims.{entity}", until=lambda vs: len(vs) >= 1,
                                    quiet_after=3)
            await produce_json(bootstrap, f"{prefix}src.tims.{entity}", [(e["record_id"], e) for e in reversed(events)])
        again = await rig.until_quiet()
        assert again == writes, f"replayed events made writes: {writes} → {again}"
        assert {r: org.get("Account", r) for r in (account, gas_account)} == before

        for customer, record in ((weld, account), (gas, gas_account)):
            assert Decimal(repr(org.get("Account", record)["TIMS_Open_Balance__c"])) == balance_in_tims(
                rig.sandbox, customer)
        await waiting_shows(rig, "receivables", "account", 0.0)
        print(f"\nreceivables e2e: {writes} (Salesforce, TIMS) writes; {time.monotonic() - began:.0f}s")
