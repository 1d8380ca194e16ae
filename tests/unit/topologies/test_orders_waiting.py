"""The orders flow's waiting references across two workers whose copies of the replicated link map
differ for a moment: an order released by a link must reach TIMS even when the worker that
rechecks it has not read that link yet (docs/adr/0021, "Waiting references", addendum)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from connectors.envelope import SourceEvent
from tests.support.lagging_maps import Batch, Bus, Context, MapCopy
from topologies.orders import agents
from topologies.orders.order import DEFAULT_MAPPING_DIR, load_mapping

OPP, ACCOUNT, P1, P2 = "006000000000001AAA", "001000000000001AAA", "01t000000000001AAA", "01t000000000002AAA"


_n = iter(range(1, 1_000_000))


def event(entity: str, record_id: str, change: str = "UPDATE", **fields: Any) -> dict[str, Any]:
    n = next(_n)
    return SourceEvent(event_id=f"sf{n}", source="salesforce", entity=entity, record_id=record_id,
                       change_type=change, fields=fields, commit_timestamp=1_700_000_000_000 + n
                       ).model_dump(mode="json")


class TwoWorkers:
    """Worker ``a`` runs ``ingest`` and ``waiting`` and has read every link; worker ``b`` runs
    ``merge`` and its copy of the map has only what it is given."""

    def __init__(self, b_links: dict[str, str]) -> None:
        self.bus, tables = Bus(), {}
        mapping = load_mapping(DEFAULT_MAPPING_DIR)
        self.a = agents.Orders(Context(agents.FLOW_NAME, self.bus, tables, MapCopy(name="orders_links")), mapping)
        self.b = agents.Orders(Context(agents.FLOW_NAME, self.bus, tables, MapCopy(b_links, "orders_links")), mapping)

    async def ingest(self, value: dict[str, Any]) -> None:
        await self.a.ingest_one(SimpleNamespace(key=None, value=value))

    async def deliver(self) -> None:
        """Every queued stage message to its stage, until none is left."""
        for _ in range(1_000):
            if not any(name in ("orders.merge", "orders.waiting") for name, _, _ in self.bus.queue):
                return
            name, key, value = self.bus.queue.popleft()
            message = SimpleNamespace(key=key.encode(), value=value)
            if name == "orders.merge":
                await self.b.merge.one(Batch(self.b.ctx), message)
            elif name == "orders.waiting":
                await self.a.wait_one(message)
            else:
                self.bus.queue.append((name, key, value))
        raise AssertionError("the stages never went quiet")

    def tims_orders(self) -> list[Any]:
        return [value for key, value in self.bus.on("sink.tims.sales_order")]


async def _won_opportunity(workers: TwoWorkers) -> None:
    await workers.ingest(event("Opportunity", OPP, "CREATE", Name="Deal", AccountId=ACCOUNT, StageName="Prospecting",
                               CloseDate="2026-12-01", Amount=None))
    for line, product in (("00k1", P1), ("00k2", P2)):
        await workers.ingest(event("OpportunityLineItem", line, "CREATE", OpportunityId=OPP, Product2Id=product,
                                   Quantity=2.0, UnitPrice=10.0))
    await workers.ingest(event("Opportunity", OPP, Amount=40.0, StageName="Closed Won"))
    await workers.deliver()


def test_an_order_released_by_a_link_the_merging_worker_has_not_read_yet_still_reaches_tims() -> None:
    async def run() -> None:
        workers = TwoWorkers({f"product2:{P1}": "IT1", f"product2:{P2}": "IT2"})
        await _won_opportunity(workers)
        assert workers.tims_orders() == [], "no customer link yet: the order waits"
        assert workers.b.table[OPP]["waiting"]["refs"] == [f"account:{ACCOUNT}"]
        # the Account's link arrives on worker a; worker b's map does not have it (yet)
        await workers.ingest(event("Account", ACCOUNT, TIMS_Customer_ID__c="C000001"))
        await workers.deliver()
        (order,) = workers.tims_orders()
        assert order["external_id"] == OPP and order["fields"]["customer_id"] == "C000001"
        assert workers.b.table[OPP]["waiting"] is None and workers.bus.quarantined == []

    asyncio.run(run())


def test_links_told_one_at_a_time_add_up_while_the_merging_worker_reads_none_of_them() -> None:
    async def run() -> None:
        workers = TwoWorkers({})
        await _won_opportunity(workers)
        assert sorted(workers.b.table[OPP]["waiting"]["refs"]) == sorted(
            [f"account:{ACCOUNT}", f"product2:{P1}", f"product2:{P2}"])
        for ref_event in (event("Product2", P1, TIMS_Item_Number__c="IT1"),
                          event("Account", ACCOUNT, TIMS_Customer_ID__c="C000001"),
                          event("Product2", P2, TIMS_Item_Number__c="IT2")):
            assert workers.tims_orders() == []
            await workers.ingest(ref_event)
            await workers.deliver()
        (order,) = workers.tims_orders()
        assert [line["item_id"] for line in order["fields"]["lines"]] == ["IT1", "IT2"]
        assert workers.b.ctx.counters["commands"] == 1

    asyncio.run(run())


def test_a_park_that_arrives_after_its_link_is_released_with_the_link() -> None:
    async def run() -> None:
        workers = TwoWorkers({f"product2:{P1}": "IT1", f"product2:{P2}": "IT2"})
        # the link reaches worker a (and the waiting stage) before the order parks under it
        await workers.ingest(event("Account", ACCOUNT, TIMS_Customer_ID__c="C000001"))
        await workers.deliver()
        await _won_opportunity(workers)
        (order,) = workers.tims_orders()
        assert order["fields"]["customer_id"] == "C000001"

    asyncio.run(run())
