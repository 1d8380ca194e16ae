"""Orders end to end: the sandbox, a worker running the orders flow, the Salesforce and TIMS
sources as processes, on the real broker.

- An Opportunity on a linked Account, two products, Closed Won: one TIMS sales order, lines
  mapped to the TIMS items, total to the cent.
- One on an Account not linked yet: it waits (metric) and is released when the customer sync's
  link (Account.TIMS_Customer_ID__c) arrives.
- TIMS picks, ships (date, tracking) and invoices the first order: the Opportunity follows.
  Then every sales order event is delivered again, newest first, and the Closed Won event
  twice more: the Opportunity still shows invoiced, TIMS still has exactly the two orders.
- An Opportunity whose lines do not sum to its Amount waits its grace for more lines, then is
  quarantined with the reason, once.
- Hostile messages on the flow's topics are quarantined by the stage that reads them.
- An order entered in TIMS becomes one Closed Won Opportunity on the customer's Account, and no
  TIMS order comes back from it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.run import Sandbox
from tests.support.flows import flow_rig, mapping_changed, waiting_shows
from tests.support.kafka import produce_json, read_json
from topologies.orders.order import DEFAULT_MAPPING_DIR

pytestmark = pytest.mark.integration


def settings(tmp_path: Path) -> Any:
    def of(sandbox: Sandbox) -> dict[str, str]:
        return {"CONNECT_FLOWS": "orders", "CONNECT_SINK_OBJECTS": "tims.sales_order,salesforce.Opportunity",
                "CONNECT_SALESFORCE_ENTITIES": "Opportunity,OpportunityLineItem,Account,Product2",
                "CONNECT_TIMS_ENTITIES": "sales_order",
                **mapping_changed(tmp_path, "orders", DEFAULT_MAPPING_DIR, "orders.yaml",
                                  "lines_grace_seconds: 60", "lines_grace_seconds: 2")}
    return of


def catalogue(sandbox: Sandbox) -> dict[str, tuple[str, str]]:
    """Two items in TIMS and their Product2s and standard prices (as the products flow leaves them)."""
    org, tims, book = sandbox.org, sandbox.tims, sandbox.org.standard_pricebook_id
    out = {}
    for sku, price in (("AR-40", 42.5), ("ER70S-6", 3.25)):
        item = tims.create("items", {"sku": sku, "name": sku, "unit_price": price})["item_id"]
        product = org.create("Product2", {"Name": sku, "ProductCode": sku, "TIMS_Item_Number__c": item, "IsActive": True})
        entry = org.create("PricebookEntry", {"Pricebook2Id": book, "Product2Id": product, "UnitPrice": price,
                                              "IsActive": True, "TIMS_Item_Number__c": item})
        out[sku] = (item, entry)
    return out


def won(sandbox: Sandbox, account: str, lines: list[tuple[str, float]], name: str,
        amount: float | None = None) -> str:
    org = sandbox.org
    opportunity = org.create("Opportunity", {"Name": name, "AccountId": account, "StageName": "Negotiation",
                                             "CloseDate": "2026-12-01"})
    for entry, quantity in lines:
        org.create("OpportunityLineItem", {"OpportunityId": opportunity, "PricebookEntryId": entry,
                                           "Quantity": quantity})
    changes: dict[str, Any] = {"StageName": "Closed Won"}
    if amount is not None:
        changes["Amount"] = amount
    org.update("Opportunity", opportunity, changes)
    return opportunity


def orders_of(sandbox: Sandbox, opportunity: str) -> list[dict[str, Any]]:
    return sandbox.tims.find("sales_orders", external_id=opportunity)


async def test_orders_flow_both_ways(app_env: dict[str, str], tmp_path: Path) -> None:
    began = time.monotonic()
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    async with flow_rig(app_env, tmp_path, settings(tmp_path), ("salesforce", "tims")) as rig:
        org, tims = rig.sandbox.org, rig.sandbox.tims
        items = catalogue(rig.sandbox)
        (argon, argon_entry), (wire, wire_entry) = items["AR-40"], items["ER70S-6"]
        weld = tims.create("customers", {"name": "Weld Co"})["customer_id"]
        gas = tims.create("customers", {"name": "Gas Co"})["customer_id"]
        linked = org.create("Account", {"Name": "Weld Co", "TIMS_Customer_ID__c": weld})
        late = org.create("Account", {"Name": "Gas Co"})

        first = won(rig.sandbox, linked, [(argon_entry, 3), (wire_entry, 10)], "Weld Co cylinders")
        second = won(rig.sandbox, late, [(argon_entry, 1)], "Gas Co first order")
        await rig.until("the first Opportunity is a TIMS order", lambda: len(orders_of(rig.sandbox, first)) == 1)
        order = orders_of(rig.sandbox, first)[0]
        assert order["customer_id"] == weld and order["order_date"] == "2026-12-01" and order["currency"] == "USD"
        assert [(line["item_id"], line["quantity"], line["unit_price"]) for line in order["lines"]] == [
            (argon, 3, 42.5), (wire, 10, 3.25)]
        assert order["total_amount"] == org.get("Opportunity", first)["Amount"] == 160.0
        await rig.until("the TIMS order id on the first Opportunity",
                        lambda: org.get("Opportunity", first)["TIMS_Sales_Order_ID__c"] == order["sales_order_id"])

        assert orders_of(rig.sandbox, second) == []
        await waiting_shows(rig, "orders", "account", 1.0)
        org.update("Account", late, {"TIMS_Customer_ID__c": gas})
        await rig.until("the second order released by the Account's link",
                        lambda: [o["customer_id"] for o in orders_of(rig.sandbox, second)] == [gas])

        number = order["sales_order_id"]
        tims.update("sales_orders", number, {"status": "picked"})
        tims.update("sales_orders", number, {"status": "shipped", "ship_date": "2026-12-03", "tracking_number": "1Z999"})
        tims.update("sales_orders", number, {"status": "invoiced"})

        def shows(status: str) -> bool:
            opportunity = org.get("Opportunity", first)
            return (opportunity["TIMS_Order_Status__c"], opportunity["Ship_Date__c"], opportunity["Tracking__c"]) == (
                status, "2026-12-03", "1Z999")

        await rig.until("invoiced, with ship date and tracking, on the Opportunity", lambda: shows("invoiced"),
                        state=lambda: org.get("Opportunity", first))

        # late, duplicated and reordered: every sales order event again, newest first; Closed Won twice more
        events = await read_json(bootstrap, f"{prefix}src.tims.sales_order", until=lambda vs: len(vs) >= 5)
        await produce_json(bootstrap, f"{prefix}src.tims.sales_order", [(e["record_id"], e) for e in reversed(events)])
        opportunities = await read_json(bootstrap, f"{prefix}src.salesforce.Opportunity",
                                        until=lambda vs: any(v["fields"].get("StageName") == "Closed Won" for v in vs))
        closed = [v for v in opportunities if v["record_id"] == first and v["fields"].get("StageName") == "Closed Won"]
        await produce_json(bootstrap, f"{prefix}src.salesforce.Opportunity", [(first, closed[0])] * 2)

        # hostile input on the flow's topics: quarantined, and the flow goes on (the orders below)
        await produce_json(bootstrap, f"{prefix}orders.merge", [("x", "a string"), ("x", None),
                                                               ("x", {"kind": "event", "event": {"no": "event"}})])
        await produce_json(bootstrap, f"{prefix}orders.waiting", [("account:x", {"kind": "park"})])
        await produce_json(bootstrap, f"{prefix}src.salesforce.Opportunity", [("x", [1, 2])])
        unbalanced = won(rig.sandbox, linked, [(argon_entry, 1)], "Wrong total", amount=99.0)
        entered = tims.create("sales_orders", {"customer_id": weld, "order_date": "2026-12-04",
                                               "lines": [{"item_id": wire, "quantity": 4, "unit_price": 3.25}]})

        def from_tims() -> list[dict[str, Any]]:
            return org.find("Opportunity", "TIMS_Sales_Order_ID__c", entered["sales_order_id"])

        await rig.until("the TIMS order is a Closed Won Opportunity on the customer's Account",
                        lambda: [(o["AccountId"], o["StageName"], o["Amount"], o["TIMS_Order_Status__c"])
                                 for o in from_tims()] == [(linked, "Closed Won", 13.0, "open")])
        held = f"merge: order {unbalanced} held: lines sum to 42.50 USD, the Opportunity Amount is 99.00"
        quarantined = await read_json(bootstrap, f"{prefix}quarantine.orders",
                                      until=lambda vs: any(v["reason"] == held for v in vs), timeout=40)
        assert [v["reason"] for v in quarantined if unbalanced in v["reason"]] == [held], "once, after its grace"
        hostile = [v["reason"] for v in quarantined if v["raw"] in ("a string", None, [1, 2])
                   or (isinstance(v["raw"], dict) and v["raw"].get("kind") in ("event", "park") and "key" not in v["raw"]
                       and v["raw"].get("event") in ({"no": "event"}, None))]
        assert sum(r.startswith("merge: unreadable message") for r in hostile) == 2, hostile
        assert any(r.startswith("merge raised ValidationError") for r in hostile), hostile
        assert any(r.startswith("waiting: unreadable message") for r in hostile), hostile
        assert any(r.startswith("not a source event") for r in hostile), hostile
        writes = await rig.until_quiet()

        assert shows("invoiced"), org.get("Opportunity", first)
        assert len(tims.all("sales_orders")) == 3, "the two Opportunities' orders and the one entered in TIMS"
        assert orders_of(rig.sandbox, unbalanced) == [] and len(orders_of(rig.sandbox, first)) == 1
        await waiting_shows(rig, "orders", "account", 0.0)
        print(f"\norders e2e: {writes} (Salesforce, TIMS) writes; {len(events)} sales order events replayed "
              f"newest first; {time.monotonic() - began:.0f}s")
