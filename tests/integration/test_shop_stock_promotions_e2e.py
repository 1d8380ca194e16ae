"""Stock and promotions end to end: the sandbox (shop, TIMS, Pardot), a worker running the shop
catalogue flow, the shop and TIMS sources as processes, on the real broker (docs/adr/0039).

TIMS stock levels reach the shop's inventory level of the variant with the SKU at the mapped
location; a later change follows; the stock events delivered again, newest first, change
nothing (never backwards); a level at a location the mapping does not name is quarantined with
the reason; a SKU the shop sells only later gets its stock then. An item marked for promotion
becomes one Pardot custom redirect to its product page; unmarked, it moves to the retired folder.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sandbox.run import Sandbox
from sandbox.shop.store import LOCATION
from tests.support.flows import flow_rig
from tests.support.kafka import produce_json, read_json
from topologies.shop_catalog.catalog import DEFAULT_MAPPING_DIR

pytestmark = pytest.mark.integration

EAST = "gid://shopify/Location/2"
REDIRECT = "Shop product AR-125"


def settings(tmp_path: Path) -> Any:
    folder = tmp_path / "mappings" / "shop_catalog"
    folder.mkdir(parents=True)
    text = (DEFAULT_MAPPING_DIR / "shop_catalog.yaml").read_text()
    for old, new in (("  campaign_id: null", "  campaign_id: 7"), ("  folder_id: null", "  folder_id: 11"),
                     ("  retired_folder_id: null", "  retired_folder_id: 12"),
                     ("  EAST: gid://shopify/Location/2", "  EAST: gid://shopify/Location/2\n  PLANT: null")):
        assert old in text, old
        text = text.replace(old, new)
    (folder / "shop_catalog.yaml").write_text(text)

    def of(sandbox: Sandbox) -> dict[str, str]:
        return {"CONNECT_FLOWS": "shop_catalog", "CONNECT_MAPPINGS_DIR": str(tmp_path / "mappings"),
                "CONNECT_SINK_OBJECTS": "shop.variant,shop.inventory,pardot.custom_redirect",
                "CONNECT_TIMS_ENTITIES": "item,stock_level", "CONNECT_SHOP_ENTITIES": "product",
                "CONNECT_SHOP_RECONCILE_INTERVAL": "1"}
    return of


async def test_tims_stock_per_location_and_promoted_items(app_env: dict[str, str], tmp_path: Path) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    async with flow_rig(app_env, tmp_path, settings(tmp_path), ("shop", "tims")) as rig:
        shop, tims, pardot = rig.sandbox.shop, rig.sandbox.tims, rig.sandbox.pardot
        argon = tims.create("items", {"sku": "AR-125", "name": "Argon 125", "unit_price": 62.25, "promote": True})
        helium = tims.create("items", {"sku": "HE-80", "name": "Helium 80", "unit_price": 45})
        main = tims.create("stock_levels", {"item_id": argon["item_id"], "location_id": "MAIN", "on_hand": 12,
                                            "allocated": 2})["stock_level_id"]
        tims.create("stock_levels", {"item_id": argon["item_id"], "location_id": "EAST", "on_hand": 5})
        tims.create("stock_levels", {"item_id": argon["item_id"], "location_id": "WEST", "on_hand": 3})
        tims.create("stock_levels", {"item_id": argon["item_id"], "location_id": "PLANT", "on_hand": 400})
        tims.create("stock_levels", {"item_id": helium["item_id"], "location_id": "MAIN", "on_hand": 6})
        product = shop.store.create_product(title="Argon cylinders", variants=[{"sku": "AR-125", "price": "62.25",
                                                                                "available": 1}])
        item = product["variants"][0]["inventoryItem"]["id"]

        def levels() -> dict[str, Any]:
            return {"main": shop.store.inventory.get((item, LOCATION)), "east": shop.store.inventory.get((item, EAST))}

        await rig.until("TIMS's stock at both mapped locations", lambda: levels() == {"main": 10, "east": 5},
                        state=levels)
        tims.update("stock_levels", main, {"allocated": 4})
        await rig.until("a TIMS stock change shows in the shop", lambda: levels()["main"] == 8, state=levels)

        events = await read_json(bootstrap, f"{prefix}src.tims.stock_level", until=lambda vs: len(vs) >= 6)
        await produce_json(bootstrap, f"{prefix}src.tims.stock_level",
                           [(e["record_id"], e) for e in reversed(events)])
        quarantined = await read_json(bootstrap, f"{prefix}quarantine.shop_catalog",
                                      until=lambda vs: len(vs) >= 2, timeout=60)
        assert {v["reason"] for v in quarantined} == {
            "TIMS location 'WEST' has no shop location: add it to shop_catalog.yaml's locations "
            "(null when it does not sell online)"}

        gas = shop.store.create_product(title="Helium", variants=[{"sku": "HE-80", "price": "45.00"}])
        he80 = gas["variants"][0]["inventoryItem"]["id"]
        await rig.until("stock held for a SKU the shop sells later", lambda: shop.store.inventory.get((he80, LOCATION)) == 6,
                        state=lambda: shop.store.inventory.get((he80, LOCATION)))

        def redirects() -> list[dict[str, Any]]:
            return [r for r in pardot.snapshot()["records"]["custom-redirects"] if r["name"] == REDIRECT]

        await rig.until("the promoted item's custom redirect", lambda: len(redirects()) == 1, state=redirects)
        (redirect,) = redirects()
        assert (redirect["destinationUrl"], redirect["campaignId"], redirect["folderId"]) == (
            "https://connect-sandbox.myshopify.com/products/argon-cylinders", 7, 11)
        tims.update("items", argon["item_id"], {"promote": False})
        await rig.until("an item no longer promoted: its redirect retired", lambda: redirects()[0]["folderId"] == 12,
                        state=redirects)

        await asyncio.sleep(6)  # the replayed stock events and reconciliation passes change nothing
        assert levels() == {"main": 8, "east": 5} and len(redirects()) == 1
        assert 400 not in shop.store.inventory.values()  # PLANT does not sell online
