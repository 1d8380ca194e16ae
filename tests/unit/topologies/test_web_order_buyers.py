"""A web order's buyer resolved to the customer master: by the link of its shop customer as the
master decided it (exact, whatever the emails), else by email; while neither is linked the order
waits for both and the first linked releases it (docs/adr/0035, addendum)."""

from __future__ import annotations

import asyncio
import itertools
from types import SimpleNamespace
from typing import Any

from connectors.envelope import SourceEvent
from tests.support.lagging_maps import Batch, Bus, Context, MapCopy
from topologies.customer_links import TOPIC, CustomerLinks, links_to_tell
from topologies.customer_sync.golden import new_record
from topologies.web_orders import agents
from topologies.web_orders.order import (
    DEFAULT_MAPPING_DIR, apply_shop, buyer_refs, load_mapping, master_link, new_row, recheck, resolve_buyer, row_key,
)

MAPPING = load_mapping(DEFAULT_MAPPING_DIR)
ORDER, SHOPPER = "gid://shopify/Order/1001", "gid://shopify/Customer/7"
KEY, BY_SHOPPER = row_key(ORDER), "customer:shop:shopify:Customer:7"
NOW = 1_700_000_000_000
_n = itertools.count(1)


def order_event(**fields: Any) -> SourceEvent:
    record = {"id": ORDER, "name": "#1001", "email": "ada.private@example.com", "currency": "USD",
              "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z", "cancelled_at": None,
              "fulfillment_status": "unfulfilled", "customer_id": SHOPPER,
              "line_items": [{"sku": "AR-125", "title": "Argon 125", "quantity": 1, "price": "61.50"}], **fields}
    return SourceEvent(event_id=f"shop{next(_n)}", source="shop", entity="order", record_id=ORDER,
                       change_type="UPDATE", fields=record, full_state=True, commit_timestamp=NOW)


# -- pure --------------------------------------------------------------------------------------

def test_the_buyer_is_named_by_its_shop_customer_first_then_its_email() -> None:
    assert buyer_refs({"customer_id": SHOPPER, "email": " Ada@Example.com"}) == [BY_SHOPPER, "email:ada@example.com"]
    assert buyer_refs({"customer_id": None, "email": "ada@example.com"}) == ["email:ada@example.com"]  # a guest
    assert buyer_refs({"customer_id": SHOPPER, "email": "not an email"}) == [BY_SHOPPER]
    assert buyer_refs({"email": None}) == []


def test_the_masters_link_wins_over_the_email_and_the_email_is_the_fallback() -> None:
    order = {"customer_id": SHOPPER, "email": "ada@example.com"}
    both = {BY_SHOPPER: "C000007", "email:ada@example.com": "C000001"}
    assert resolve_buyer(order, both) == ("C000007", [BY_SHOPPER, "email:ada@example.com"])
    assert resolve_buyer(order, {"email:ada@example.com": "C000001"})[0] == "C000001"
    assert resolve_buyer(order, {})[0] is None


def test_an_order_waits_for_either_reference_and_the_masters_link_releases_it() -> None:
    row, links = new_row(KEY), {"sku:AR-125": "IT1"}
    waiting = apply_shop(row, order_event(), MAPPING, links, NOW)
    assert waiting.commands == [] and waiting.wait_for == [BY_SHOPPER, "email:ada.private@example.com"]
    assert row["waiting"]["refs"] == [BY_SHOPPER, "email:ada.private@example.com"]
    links[BY_SHOPPER] = "C000007"
    (command,) = recheck(row, MAPPING, links, NOW + 1000).commands
    assert command.fields["customer_id"] == "C000007" and row["waiting"] is None and row["sent"]
    links["email:ada.private@example.com"] = "C000099"  # an email linked later changes nothing
    assert recheck(row, MAPPING, links, NOW + 2000).commands == []


def test_a_guest_waits_for_its_email_only_and_an_order_naming_no_buyer_is_held() -> None:
    guest = apply_shop(new_row(KEY), order_event(customer_id=None), MAPPING, {"sku:AR-125": "IT1"}, NOW)
    assert guest.wait_for == ["email:ada.private@example.com"]
    nobody = apply_shop(new_row(KEY), order_event(customer_id=None, email=None), MAPPING, {"sku:AR-125": "IT1"}, NOW)
    assert nobody.rejected == "the buyer has no shop customer and no usable email" and nobody.wait_for == []


def test_the_master_links_a_shop_customer_only_once_it_has_their_tims_customer() -> None:
    told = CustomerLinks(customer_key="k1", version=3, links={"shop_customer": "shop:shopify:Customer:7",
                                                              "tims_customer": "C000007"})
    assert master_link(told) == (BY_SHOPPER, "C000007")
    assert master_link(CustomerLinks(customer_key="k1", version=2,
                                     links={"shop_customer": "shop:shopify:Customer:7", "salesforce_contact": "003A"})) is None
    assert master_link(CustomerLinks(customer_key="k1", version=2, links={"tims_customer": "C1", "pardot_prospect": "9"})) is None


def test_the_master_tells_a_records_links_when_they_change_and_only_then() -> None:
    record = new_record("k1")
    record["links"] = {"tims_customer": "C000007"}
    assert links_to_tell(record) is None, "one link links nothing"
    record["links"]["shop_customer"] = "shop:shopify:Customer:7"
    record["version"] = 4
    told = links_to_tell(record)
    assert told is not None and (told.customer_key, told.version) == ("k1", 4)
    assert told.links == {"tims_customer": "C000007", "shop_customer": "shop:shopify:Customer:7"}
    assert links_to_tell(record) is None, "unchanged: told already"
    del record["links"]["shop_customer"]  # an unmerge gave it back
    lost = links_to_tell(record)
    assert lost is not None and lost.links == {"tims_customer": "C000007"}
    record["links"]["shop_customer"] = "shop:shopify:Customer:7"
    links_to_tell(record)
    record["merged_into"] = {"into": "k2", "merge_id": "r1", "at": NOW}
    merged = links_to_tell(record)
    assert merged is not None and merged.links == {}, "a merged record holds nothing of its own"


# -- the stages, on a bus --------------------------------------------------------------------------

class Flow:
    """The web orders flow's stages on one worker, its topics on a bus the test delivers."""

    def __init__(self, links: dict[str, str]) -> None:
        self.bus = Bus()
        self.flow = agents.WebOrders(Context(agents.FLOW_NAME, self.bus, {}, MapCopy(links, "web_orders_links")),
                                     MAPPING)

    async def ingest(self, topic: str, value: dict[str, Any]) -> None:
        await self.flow.ingest_one(SimpleNamespace(key=None, value=value, topic=f"test.{topic}"))
        await self.deliver()

    async def tell(self, version: int, tims: str) -> None:
        await self.ingest(TOPIC, CustomerLinks(customer_key="k1", version=version, links={
            "shop_customer": "shop:shopify:Customer:7", "tims_customer": tims}).wire())

    async def deliver(self) -> None:
        for _ in range(1_000):
            stages = [i for i, (name, _, _) in enumerate(self.bus.queue) if name in ("web_orders.merge", "web_orders.waiting")]
            if not stages:
                return
            name, key, value = self.bus.queue[stages[0]]
            del self.bus.queue[stages[0]]
            message = SimpleNamespace(key=key.encode(), value=value)
            if name == "web_orders.merge":
                await self.flow.merge.one(Batch(self.flow.ctx), message)
            else:
                await self.flow.wait_one(message)
        raise AssertionError("the stages never went quiet")

    def sales_orders(self) -> list[Any]:
        return [value for _, value in self.bus.on("sink.tims.sales_order")]

    def parked(self) -> dict[str, list[str]]:
        return {ref: list(entry["orders"]) for ref, entry in self.flow.waiting.items() if entry["orders"]}


def test_a_waiting_order_is_released_by_the_masters_link_and_leaves_its_email_parking() -> None:
    async def run() -> None:
        flow = Flow({"sku:AR-125": "IT1"})
        await flow.ingest("src.shop.order", order_event().model_dump(mode="json"))
        assert flow.sales_orders() == []
        assert flow.parked() == {BY_SHOPPER: [KEY], "email:ada.private@example.com": [KEY]}
        await flow.tell(5, "C000007")
        (order,) = flow.sales_orders()
        assert order["external_id"] == KEY and order["fields"]["customer_id"] == "C000007"
        assert flow.parked() == {}, "nothing waits for the private email any more"
        # told again (a redone batch), an older statement, a newer one: never a second sales order
        await flow.tell(5, "C000007")
        await flow.tell(4, "C000004")
        assert flow.flow.links.get(BY_SHOPPER) == "C000007" and flow.flow.links.get(f"version:{BY_SHOPPER}") == "5"
        await flow.tell(9, "C000009")  # a merge moved the shop customer to another person
        assert flow.flow.links.get(BY_SHOPPER) == "C000009"
        assert len(flow.sales_orders()) == 1 and flow.bus.quarantined == []

    asyncio.run(run())


def test_an_order_released_by_its_email_leaves_its_shop_customer_parking() -> None:
    async def run() -> None:
        flow = Flow({"sku:AR-125": "IT1"})
        await flow.ingest("src.shop.order", order_event().model_dump(mode="json"))
        tims_customer = SourceEvent(event_id="t1", source="tims", entity="customer", record_id="C000001",
                                    change_type="CREATE", fields={"customer_id": "C000001",
                                                                  "email": "ada.private@example.com"},
                                    full_state=True, commit_timestamp=NOW)
        await flow.ingest("src.tims.customer", tims_customer.model_dump(mode="json"))
        (order,) = flow.sales_orders()
        assert order["fields"]["customer_id"] == "C000001" and flow.parked() == {}
        await flow.tell(5, "C000007")  # the master's link later: the order went already
        assert len(flow.sales_orders()) == 1

    asyncio.run(run())


def test_unreadable_master_links_are_quarantined() -> None:
    async def run() -> None:
        flow = Flow({})
        await flow.ingest(TOPIC, {"links": "not a map"})
        assert len(flow.bus.quarantined) == 1 and flow.bus.quarantined[0].startswith("ingest: unreadable customer links")

    asyncio.run(run())
