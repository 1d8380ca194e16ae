"""Products end to end: the sandbox, a worker running the products flow, the TIMS and Salesforce
sources as processes, on the real broker.

A TIMS user creates two items: each becomes a Product2 with its standard PricebookEntry, and the
TIMS item learns its Product2 Id. TIMS changes a price: Product2 and the entry follow. Marketing
edits a description in Salesforce (it owns it: TIMS follows) and a name (TIMS owns it: won
back). Then every item event is delivered again, newest first: nothing changes and nothing is
written. The systems go quiet.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.run import Sandbox
from tests.support.flows import flow_rig, mapping_changed
from tests.support.kafka import produce_json, read_json
from topologies.products.catalog import DEFAULT_MAPPING_DIR

pytestmark = pytest.mark.integration


def settings(tmp_path: Path) -> Any:
    def of(sandbox: Sandbox) -> dict[str, str]:
        return {"CONNECT_FLOWS": "products",
                "CONNECT_SINK_OBJECTS": "salesforce.Product2,salesforce.PricebookEntry,tims.item",
                "CONNECT_SALESFORCE_ENTITIES": "Product2", "CONNECT_TIMS_ENTITIES": "item",
                **mapping_changed(tmp_path, "products", DEFAULT_MAPPING_DIR, "products.yaml", 'standard_pricebook_id: ""',
                                  f'standard_pricebook_id: "{sandbox.org.standard_pricebook_id}"')}
    return of


def product(sandbox: Sandbox, item_id: str) -> dict[str, Any]:
    found = sandbox.org.find("Product2", "TIMS_Item_Number__c", item_id)
    return found[0] if found else {}


def entry(sandbox: Sandbox, item_id: str) -> dict[str, Any]:
    found = sandbox.org.find("PricebookEntry", "TIMS_Item_Number__c", item_id)
    return found[0] if found else {}


async def test_tims_items_and_product2_stay_in_step(app_env: dict[str, str], tmp_path: Path) -> None:
    began = time.monotonic()
    async with flow_rig(app_env, tmp_path, settings(tmp_path), ("tims", "salesforce")) as rig:
        org, tims = rig.sandbox.org, rig.sandbox.tims
        argon = tims.create("items", {"sku": "AR-40", "name": "Argon 40 cf", "category": "Gas", "uom": "CYL",
                                      "unit_price": 42.5, "description": "Welding grade"})["item_id"]
        wire = tims.create("items", {"sku": "ER70S-6", "name": "MIG wire 0.035", "category": "Filler", "uom": "LB",
                                     "unit_price": 3.125})["item_id"]

        def linked(item_id: str, price: float) -> bool:
            p, e = product(rig.sandbox, item_id), entry(rig.sandbox, item_id)
            return bool(p) and bool(e) and e["Product2Id"] == p["Id"] and e["UnitPrice"] == price \
                and e["Pricebook2Id"] == org.standard_pricebook_id and tims.get("items", item_id)["external_id"] == p["Id"]

        await rig.until("both items are Product2s with a standard price and linked back in TIMS",
                        lambda: linked(argon, 42.5) and linked(wire, 3.13),
                        state=lambda: (product(rig.sandbox, argon), entry(rig.sandbox, argon)))
        assert product(rig.sandbox, argon)["ProductCode"] == "AR-40" and product(rig.sandbox, wire)["Family"] == "Filler"
        assert product(rig.sandbox, argon)["Description"] == "Welding grade"

        tims.update("items", argon, {"unit_price": 44.0})
        await rig.until("the new price on Product2 and the PricebookEntry", lambda: linked(argon, 44.0)
                        and product(rig.sandbox, argon)["TIMS_List_Price__c"] == 44.0)

        org.update("Product2", product(rig.sandbox, argon)["Id"],
                   {"Description": "The welder's favourite", "Name": "Argon (promo)"})
        await rig.until("Salesforce's description in TIMS, TIMS's name back on Product2",
                        lambda: tims.get("items", argon)["description"] == "The welder's favourite"
                        and product(rig.sandbox, argon)["Name"] == "Argon 40 cf",
                        state=lambda: (tims.get("items", argon), product(rig.sandbox, argon)))
        writes = await rig.until_quiet()

        bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
        events = await read_json(bootstrap, f"{prefix}src.tims.item", until=lambda vs: len(vs) >= 4)
        again = await produce_json(bootstrap, f"{prefix}src.tims.item",
                                   [(e["record_id"], e) for e in reversed(events)])
        merged = await read_json(bootstrap, f"{prefix}products.merge",
                                 until=lambda vs: sum(v["event"]["entity"] == "item" for v in vs) >= len(events) + again)
        assert len(merged) > 0
        assert await rig.until_quiet() == writes, "replayed and reordered item events wrote nothing"
        assert len(org.records("Product2")) == 2 and len(org.records("PricebookEntry")) == 2
        assert product(rig.sandbox, argon)["Name"] == "Argon 40 cf" and linked(argon, 44.0)
        conflicts = await read_json(bootstrap, f"{prefix}audit.conflicts", until=lambda vs: len(vs) >= 1)
        assert any(c["flow"] == "products" and c["field"] == "name" and c["winner"]["system"] == "tims"
                   for c in conflicts)
        print(f"\nproducts e2e: {writes} (Salesforce, TIMS) writes; {again} item events replayed; "
              f"{time.monotonic() - began:.0f}s")
