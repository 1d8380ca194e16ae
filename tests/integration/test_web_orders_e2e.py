"""Web orders end to end: the sandbox (shop and TIMS), a worker running the web orders flow,
the shop and TIMS sources as processes, on the real broker (docs/adr/0035).

- A shop order from a known buyer with known SKUs: one TIMS sales order, external id the shop
  order's, customer by email, lines by SKU, prices to the cent; its webhook delivered twice.
- One from a buyer TIMS does not know yet: it waits (metric) and is released when a TIMS
  customer with that email appears.
- One whose webhook is lost: reconciliation finds it.
- One with a SKU no TIMS item has: quarantined with the reason after its grace.
- TIMS picks, ships (tracking) and invoices the first: the shop order is fulfilled once, with
  the tracking number. Then every sales order event is delivered again, newest first: still one
  fulfilment, still one sales order per shop order.
- With the customer sync: a shop-only person becomes one TIMS customer and gets the order; a
  shop customer whose email differs from TIMS's, joined by the matching rules, gets the order on
  the master's TIMS customer, whether that customer exists already or is made after the order.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.run import Sandbox, port_is_free
from sandbox.shop import WebhookSettings
from tests.support.flows import flow_rig, mapping_changed, waiting_shows
from tests.support.kafka import produce_json, read_json
from tests.support.worker import free_port
from topologies.web_orders.order import DEFAULT_MAPPING_DIR, row_key

pytestmark = pytest.mark.integration

SECRET = "shpss_web_orders"


def settings(tmp_path: Path, webhook_port: int) -> Any:
    def of(sandbox: Sandbox) -> dict[str, str]:
        return {"CONNECT_FLOWS": "web_orders", "CONNECT_SINK_OBJECTS": "tims.sales_order,shop.fulfillment",
                "CONNECT_TIMS_ENTITIES": "sales_order,customer,item", "CONNECT_SHOP_ENTITIES": "order",
                "CONNECT_SHOP_WEBHOOK_SECRET": SECRET, "CONNECT_SHOP_WEBHOOK_PORT": str(webhook_port),
                "CONNECT_SHOP_RECONCILE_INTERVAL": "3", "CONNECT_SHOP_OVERLAP_SECONDS": "5",
                **mapping_changed(tmp_path, "web_orders", DEFAULT_MAPPING_DIR, "web_orders.yaml",
                                  "unknown_sku_grace_seconds: 60", "unknown_sku_grace_seconds: 2")}
    return of


def with_the_customer_master(tmp_path: Path) -> Any:
    """The settings with the customer sync beside web orders, shop customers and orders polled."""
    def of(sandbox: Sandbox) -> dict[str, str]:
        env = {**settings(tmp_path, free_port())(sandbox), "CONNECT_FLOWS": "customer_sync,web_orders",
               "CONNECT_SINK_OBJECTS": "tims.customer,tims.sales_order", "CONNECT_SHOP_ENTITIES": "order,customer",
               "CONNECT_SHOP_RECONCILE_INTERVAL": "1"}
        del env["CONNECT_SHOP_WEBHOOK_SECRET"]  # polling only: the reconciliation reads every second
        return env
    return of


def sales_orders(sandbox: Sandbox, order: dict[str, Any]) -> list[dict[str, Any]]:
    return sandbox.tims.find("sales_orders", external_id=row_key(order["id"]))


async def test_web_orders_to_tims_and_fulfilments_back(app_env: dict[str, str], tmp_path: Path) -> None:
    began = time.monotonic()
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    port = free_port()
    async with flow_rig(app_env, tmp_path, settings(tmp_path, port), ("shop", "tims")) as rig:
        shop, tims = rig.sandbox.shop, rig.sandbox.tims
        argon = tims.create("items", {"sku": "AR-125", "name": "Argon 125", "unit_price": 61.5})["item_id"]
        helium = tims.create("items", {"sku": "HE-80", "name": "Helium 80", "unit_price": 45})["item_id"]
        ada = tims.create("customers", {"name": "Ada Lovelace", "email": "ada@example.com"})["customer_id"]

        def deliver(**options: Any) -> None:
            shop.webhooks.configure(WebhookSettings(url=f"http://127.0.0.1:{port}/shop/webhook", secret=SECRET,
                                                    backoff_seconds=0.05, topics=["orders/create", "orders/updated"],
                                                    **options))

        await rig.until("the shop source's webhook receiver listens", lambda: not port_is_free("127.0.0.1", port))
        deliver(duplicate_rate=1.0)
        first = shop.store.create_order(email="Ada@Example.com", line_items=[
            {"sku": "AR-125", "title": "Argon 125", "quantity": 2, "price": "61.50"},
            {"sku": "HE-80", "title": "Helium 80", "quantity": 1, "price": "45.00"}])
        await rig.until("the first shop order is a TIMS sales order", lambda: len(sales_orders(rig.sandbox, first)) == 1,
                        state=lambda: shop.webhooks.status())
        order = sales_orders(rig.sandbox, first)[0]
        assert (order["customer_id"], order["po_number"], order["currency"]) == (ada, first["name"], "USD")
        assert [(line["item_id"], line["quantity"], line["unit_price"]) for line in order["lines"]] == [
            (argon, 2, 61.5), (helium, 1, 45.0)]
        assert order["total_amount"] == float(first["total"]) == 168.0
        assert shop.webhooks.counts["duplicated"] >= 1, shop.webhooks.status()

        deliver()
        second = shop.store.create_order(email="bob@example.com", line_items=[{"sku": "HE-80", "quantity": 3,
                                                                               "price": "45.00"}])
        await waiting_shows(rig, "web_orders", "email", 1.0)
        bob = tims.create("customers", {"name": "Bob Brown", "email": "BOB@example.com"})["customer_id"]
        await rig.until("the second order released by Bob's TIMS customer",
                        lambda: [o["customer_id"] for o in sales_orders(rig.sandbox, second)] == [bob])

        deliver(drop_rate=1.0)
        lost = shop.store.create_order(email="ada@example.com", line_items=[{"sku": "AR-125", "quantity": 1,
                                                                             "price": "61.50"}])
        await rig.until("the order whose webhook was lost, found by reconciliation",
                        lambda: len(sales_orders(rig.sandbox, lost)) == 1, timeout=60)
        assert shop.webhooks.counts["dropped"] >= 1
        deliver()
        unknown = shop.store.create_order(email="ada@example.com", line_items=[{"sku": "XX-1", "quantity": 1,
                                                                                "price": "9.99"}])
        held = f"merge: web order {row_key(unknown['id'])} held: unknown SKU XX-1: no TIMS item has it"
        quarantined = await read_json(bootstrap, f"{prefix}quarantine.web_orders",
                                      until=lambda vs: any(v["reason"] == held for v in vs), timeout=60)
        assert [v["reason"] for v in quarantined if row_key(unknown["id"]) in v["reason"]] == [held]

        number = order["sales_order_id"]
        tims.update("sales_orders", number, {"status": "picked"})
        tims.update("sales_orders", number, {"status": "shipped", "ship_date": "2026-12-03", "tracking_number": "1Z999"})
        tims.update("sales_orders", number, {"status": "invoiced"})

        def tracking() -> list[str]:
            return [t["number"] for f in shop.store.get("Order", first["id"])["fulfillments"] for t in f["trackingInfo"]]

        await rig.until("the shop order fulfilled with TIMS's tracking number", lambda: tracking() == ["1Z999"],
                        state=lambda: shop.store.get("Order", first["id"]))
        assert shop.store.get("Order", first["id"])["displayFulfillmentStatus"] == "FULFILLED"

        # late, duplicated and reordered: every sales order event again, newest first
        events = await read_json(bootstrap, f"{prefix}src.tims.sales_order", until=lambda vs: len(vs) >= 6)
        await produce_json(bootstrap, f"{prefix}src.tims.sales_order", [(e["record_id"], e) for e in reversed(events)])
        await produce_json(bootstrap, f"{prefix}web_orders.merge", [("x", "a string"), ("x", {"kind": "event"})])
        writes = await rig.until_quiet()

        assert tracking() == ["1Z999"], "fulfilled once"
        assert len(tims.all("sales_orders")) == 3, "one sales order per shop order with known SKUs"
        assert sales_orders(rig.sandbox, unknown) == []
        assert shop.store.get("Order", second["id"])["fulfillments"] == []  # not shipped yet
        await waiting_shows(rig, "web_orders", "email", 0.0)
        print(f"\nweb orders e2e: {writes} (Salesforce, TIMS) writes; {len(events)} sales order events replayed "
              f"newest first; {time.monotonic() - began:.0f}s")


async def test_shop_customers_join_the_customer_master(app_env: dict[str, str], tmp_path: Path) -> None:
    """Flow 4 with flow 1: a person only the shop knows becomes one TIMS customer (by the customer
    sync) and their web order goes to it; a shop customer TIMS already has by email is the same
    person, not a second customer."""
    async with flow_rig(app_env, tmp_path, with_the_customer_master(tmp_path), ("shop", "tims")) as rig:
        shop, tims = rig.sandbox.shop, rig.sandbox.tims
        tims.create("items", {"sku": "AR-125", "name": "Argon 125", "unit_price": 61.5})
        known = tims.create("customers", {"name": "Ada Lovelace", "email": "ada@example.com"})["customer_id"]
        grace = shop.store.create_customer(email="grace@example.com", first_name="Grace", last_name="Hopper")
        shop.store.create_customer(email="ADA@example.com", first_name="Ada", last_name="Lovelace")
        order = shop.store.create_order(email="grace@example.com", customer_id=grace["id"],
                                        line_items=[{"sku": "AR-125", "quantity": 1, "price": "61.50"}])

        def made_for_grace() -> list[dict[str, Any]]:
            return tims.find("customers", external_id=row_key(grace["id"]))

        await rig.until("Grace is one TIMS customer, made from her shop customer", lambda: len(made_for_grace()) == 1,
                        state=lambda: tims.all("customers"))
        await rig.until("her web order goes to that customer",
                        lambda: [o["customer_id"] for o in sales_orders(rig.sandbox, order)]
                        == [made_for_grace()[0]["customer_id"]])
        await rig.until_quiet()
        assert sorted(c["email"] for c in tims.all("customers")) == ["ada@example.com", "grace@example.com"]
        assert [c["customer_id"] for c in tims.all("customers") if c["email"] == "ada@example.com"] == [known]


def contact(record_id: str, email: str, first: str, last: str, phone: str) -> tuple[str, dict[str, Any]]:
    """A Salesforce Contact event as the Salesforce source publishes it (Salesforce owns the email)."""
    return record_id, {"event_id": f"sf-{record_id}", "source": "salesforce", "entity": "Contact",
                       "record_id": record_id, "change_type": "CREATE", "commit_timestamp": int(time.time() * 1000),
                       "full_state": True,
                       "fields": {"Email": email, "FirstName": first, "LastName": last, "Phone": phone}}


async def test_a_buyer_matched_under_another_email_gets_the_order_on_the_masters_tims_customer(
        app_env: dict[str, str], tmp_path: Path) -> None:
    """Issue #15 flow 1, "email first, then the matching rules": the shop customer's email is private,
    TIMS and Salesforce hold the work email; the customer master's matching rules join them (names
    and phone agree, docs/adr/0036), and the web order lands on that TIMS customer, once. Ada's
    TIMS customer exists before she orders; Grace's does not: her order waits until the master
    has made it (from her Contact, now joined by her shop customer). The emails in TIMS stay the
    work emails (Salesforce owns them), so no email link could have released either order."""
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]

    async with flow_rig(app_env, tmp_path, with_the_customer_master(tmp_path), ("shop", "tims")) as rig:
        shop, tims = rig.sandbox.shop, rig.sandbox.tims
        tims.create("items", {"sku": "AR-125", "name": "Argon 125", "unit_price": 61.5})
        await produce_json(bootstrap, f"{prefix}src.salesforce.Contact", [
            contact("003A", "ada@lovelace-welding.com", "Ada", "Lovelace", "+1 415-555-0100"),
            contact("003B", "grace@navy.example", "Grace", "Hopper", "+1 212-555-0199")])
        ada = tims.create("customers", {"name": "Ada Lovelace", "email": "ada@lovelace-welding.com",
                                        "phone": "+1 415-555-0100"})["customer_id"]
        await read_json(bootstrap, f"{prefix}customer_master.links", timeout=60, until=lambda vs: any(
            v["links"].get("tims_customer") == ada for v in vs))  # Ada's Contact and TIMS customer are one

        shoppers = [shop.store.create_customer(email=email, first_name=first, last_name=last, phone=phone)
                    for email, first, last, phone in (("ada.private@example.com", "Ada", "Lovelace", "+1 415-555-0100"),
                                                      ("gh1906@example.com", "Grace", "Hopper", "+1 212-555-0199"))]
        orders = [shop.store.create_order(email=shopper["email"], customer_id=shopper["id"],
                                          line_items=[{"sku": "AR-125", "quantity": 1, "price": "61.50"}])
                  for shopper in shoppers]

        def grace() -> list[dict[str, Any]]:
            return tims.find("customers", external_id="003B")

        await rig.until("Ada's order on her TIMS customer",
                        lambda: [o["customer_id"] for o in sales_orders(rig.sandbox, orders[0])] == [ada],
                        state=lambda: tims.all("sales_orders"))
        await rig.until("Grace's TIMS customer made by the master, and her order on it", lambda: len(grace()) == 1 and [
            o["customer_id"] for o in sales_orders(rig.sandbox, orders[1])] == [grace()[0]["customer_id"]],
            state=lambda: (tims.all("customers"), tims.all("sales_orders")), timeout=90)
        await rig.until_quiet()
        assert len(tims.all("sales_orders")) == 2, "one TIMS sales order per shop order"
        assert sorted((c["email"], c["customer_id"] == ada) for c in tims.all("customers")) == [
            ("ada@lovelace-welding.com", True), ("grace@navy.example", False)], "one TIMS customer per person"
        await waiting_shows(rig, "web_orders", "customer", 0.0)
        await waiting_shows(rig, "web_orders", "email", 0.0)  # the private emails' parkings were let go
