"""Abandoned carts end to end: the sandbox (shop and Pardot), a worker running the abandoned carts
flow, the shop and Pardot sources as processes, on the real broker (docs/adr/0035).

- Ada (a prospect already) leaves a cart: after the wait her prospect shows the cart's value,
  items, recovery URL and time, and she is on the nurture list. She orders: the fields are
  cleared and she leaves the list.
- Bob (unknown to Pardot) leaves a cart: a prospect is made with the cart, and joins the list
  once Pardot shows him.
- Carol orders within the wait: Pardot never hears of her cart.
- Every checkout event is delivered again: nothing is written twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox.run import Sandbox
from tests.support.flows import flow_rig
from tests.support.kafka import produce_json, read_json
from topologies.abandoned_carts.cart import DEFAULT_MAPPING_DIR

pytestmark = pytest.mark.integration

FIELDS = ("Abandoned_Cart_Value__c", "Abandoned_Cart_Items__c", "Abandoned_Cart_URL__c", "Abandoned_Cart_At__c")


async def test_abandoned_carts_reach_pardot_and_orders_clear_them(app_env: dict[str, str], tmp_path: Path) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    made: dict[str, Any] = {}

    def settings(sandbox: Sandbox) -> dict[str, str]:
        made["list"] = sandbox.pardot.create_list("Cart recovery")["id"]
        folder = tmp_path / "mappings" / "abandoned_carts"
        folder.mkdir(parents=True)
        text = (DEFAULT_MAPPING_DIR / "abandoned_carts.yaml").read_text()
        assert "abandon_after_seconds: 3600" in text and "nurture_list_id: 0" in text
        (folder / "abandoned_carts.yaml").write_text(text.replace("abandon_after_seconds: 3600", "abandon_after_seconds: 3")
                                                     .replace("nurture_list_id: 0", f"nurture_list_id: {made['list']}"))
        return {"CONNECT_FLOWS": "abandoned_carts", "CONNECT_SINK_OBJECTS": "pardot.prospect,pardot.list_membership",
                "CONNECT_MAPPINGS_DIR": str(tmp_path / "mappings"), "CONNECT_SHOP_ENTITIES": "checkout,order",
                "CONNECT_SHOP_RECONCILE_INTERVAL": "1", "CONNECT_PARDOT_ENTITIES": "prospect",
                "CONNECT_PARDOT_POLL_INTERVAL": "1", "CONNECT_PARDOT_OVERLAP_SECONDS": "5"}

    async with flow_rig(app_env, tmp_path, settings, ("shop", "pardot")) as rig:
        shop, pardot = rig.sandbox.shop.store, rig.sandbox.pardot
        ada = pardot.create_prospect("ada@example.com", firstName="Ada")["id"]
        lines = [{"sku": "AR-125", "title": "Argon 125", "quantity": 2, "price": "61.50"}]
        # the API shows a checkout's email through its customer only (webhook bodies carry it too)
        buyers = {name: shop.create_customer(email=f"{name}@example.com")["id"] for name in ("ada", "bob", "carol")}
        cart = shop.create_checkout(email="Ada@example.com", line_items=lines, customer_id=buyers["ada"])
        shop.create_checkout(email="bob@example.com", line_items=[{"sku": "HE-80", "quantity": 1, "price": "45"}],
                             customer_id=buyers["bob"])
        carol = shop.create_checkout(email="carol@example.com", line_items=lines, customer_id=buyers["carol"])
        shop.create_order(email="carol@example.com", line_items=lines, customer_id=buyers["carol"])  # within the wait
        shop.complete_checkout(carol["id"])

        def prospect(email: str) -> dict[str, Any]:
            found = pardot.prospects_by_email(email)
            return found[0] if found else {}

        def members() -> set[int]:
            return {m["prospectId"] for m in pardot.memberships(list_id=made["list"])}

        await rig.until("Ada's prospect shows her cart and she is on the nurture list",
                        lambda: prospect("ada@example.com").get("Abandoned_Cart_Value__c") == 123.0
                        and ada in members(), state=lambda: (prospect("ada@example.com"), members()))
        shown = prospect("ada@example.com")
        assert shown["Abandoned_Cart_Items__c"] == "2 × Argon 125 (AR-125)"
        assert shown["Abandoned_Cart_URL__c"] == cart["abandonedCheckoutUrl"]
        assert shown["Abandoned_Cart_At__c"] == cart["updatedAt"]
        await rig.until("Bob is a new prospect with his cart, on the list",
                        lambda: prospect("bob@example.com").get("Abandoned_Cart_Value__c") == 45.0
                        and prospect("bob@example.com")["id"] in members())

        shop.create_order(email="ada@example.com", line_items=lines)
        await rig.until("Ada ordered: her cart fields are cleared and she left the list",
                        lambda: all(prospect("ada@example.com").get(f) is None for f in FIELDS) and ada not in members(),
                        state=lambda: (prospect("ada@example.com"), members()))

        checkouts = await read_json(bootstrap, f"{prefix}src.shop.checkout", until=lambda vs: len(vs) >= 3)
        await produce_json(bootstrap, f"{prefix}src.shop.checkout", [(c["record_id"], c) for c in checkouts])
        await produce_json(bootstrap, f"{prefix}abandoned_carts.merge", [("x@example.com", {"kind": "due", "x": [1]}),
                                                                        ("x@example.com", "a string")])
        before = len(pardot.snapshot()["records"]["list-memberships"])
        await rig.until_quiet(still=6.0)
        assert prospect("carol@example.com") == {}, "an order within the wait: Pardot never hears of the cart"
        assert all(prospect("ada@example.com").get(f) is None for f in FIELDS) and ada not in members()
        assert len(pardot.snapshot()["records"]["list-memberships"]) == before
        quarantined = await read_json(bootstrap, f"{prefix}quarantine.abandoned_carts",
                                      until=lambda vs: any(v["raw"] == "a string" for v in vs))
        assert any(v["reason"].startswith("merge: unreadable message") for v in quarantined)
