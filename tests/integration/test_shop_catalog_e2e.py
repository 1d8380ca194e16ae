"""Shop catalogue end to end: the sandbox (shop and TIMS), a worker running the shop catalogue
flow, the shop and TIMS sources as processes, on the real broker (docs/adr/0035).

TIMS prices reach the shop's variants by SKU (a variant TIMS does not sell is left alone); a
TIMS price change shows in the shop; a price edited in the shop is written back over; our own
writes coming back write nothing more.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sandbox.run import Sandbox
from tests.support.flows import flow_rig

pytestmark = pytest.mark.integration


def settings(sandbox: Sandbox) -> dict[str, str]:
    return {"CONNECT_FLOWS": "shop_catalog", "CONNECT_SINK_OBJECTS": "shop.variant", "CONNECT_TIMS_ENTITIES": "item",
            "CONNECT_SHOP_ENTITIES": "product", "CONNECT_SHOP_RECONCILE_INTERVAL": "1"}


async def test_tims_prices_reach_the_shop_by_sku(app_env: dict[str, str], tmp_path: Path) -> None:
    async with flow_rig(app_env, tmp_path, settings, ("shop", "tims")) as rig:
        shop, tims = rig.sandbox.shop, rig.sandbox.tims
        tims.create("items", {"sku": "AR-125", "name": "Argon 125", "unit_price": 62.25})
        helium = tims.create("items", {"sku": "HE-80", "name": "Helium 80", "unit_price": 45})["item_id"]
        argon = shop.store.create_product(title="Argon cylinders", variants=[{"sku": "AR-125", "price": "61.50"},
                                                                             {"sku": "AR-300", "price": "99.00"}])
        gas = shop.store.create_product(title="Helium", variants=[{"sku": "HE-80", "price": "45.00"}])

        def prices() -> dict[str, str]:
            return {v["sku"]: v["price"] for product in (argon, gas)
                    for v in shop.store.get("Product", product["id"])["variants"]}

        await rig.until("TIMS's argon price in the shop", lambda: prices()["AR-125"] == "62.25", state=prices)
        tims.update("items", helium, {"unit_price": 47.1})
        await rig.until("a TIMS price change shows in the shop", lambda: prices()["HE-80"] == "47.10", state=prices)
        shop.store.set_prices(argon["id"], {argon["variants"][0]["id"]: "70.00"})
        await rig.until("a price edited in the shop is written back over", lambda: prices()["AR-125"] == "62.25",
                        state=prices)
        updates = shop.store.get("Product", argon["id"])["updatedAt"], shop.store.get("Product", gas["id"])["updatedAt"]
        await asyncio.sleep(8)  # several reconciliation passes: our writes come back and write nothing
        assert prices() == {"AR-125": "62.25", "AR-300": "99.00", "HE-80": "47.10"}
        assert (shop.store.get("Product", argon["id"])["updatedAt"],
                shop.store.get("Product", gas["id"])["updatedAt"]) == updates
