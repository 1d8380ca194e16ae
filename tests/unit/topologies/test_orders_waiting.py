"""The orders flow's waiting references across two workers whose copies of the replicated link map
differ for a moment: an order released by a link must reach TIMS even when the worker that
rechecks it has not read that link yet (docs/adr/0021, "Waiting references", addendum)."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from types import SimpleNamespace
from typing import Any

from connectors.envelope import SourceEvent
from stream_app.flows import BoundMetrics
from topologies.orders import agents
from topologies.orders.order import DEFAULT_MAPPING_DIR, load_mapping

OPP, ACCOUNT, P1, P2 = "006000000000001AAA", "001000000000001AAA", "01t000000000001AAA", "01t000000000002AAA"


class Links:
    """One worker's copy of the replicated link map; ``entry`` writes only to this copy (the
    other worker reads it later, or not at all in these tests)."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.values = dict(values or {})

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def entry(self, key: str, value: str) -> tuple[Any, str, bytes]:
        self.values[key] = value
        return SimpleNamespace(name="orders_links"), key, value.encode()

    async def ready(self) -> None:
        return None


class Bus:
    """The stage topics between the two workers: messages queued in the order they were sent."""

    def __init__(self) -> None:
        self.queue: deque[tuple[str, str, Any]] = deque()
        self.quarantined: list[str] = []

    async def send(self, topic: Any, key: str, value: Any) -> Any:
        self.queue.append((topic.name, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def on(self, topic: str) -> list[tuple[str, Any]]:
        return [(key, value) for name, key, value in self.queue if name == topic]


class Context:
    """One worker's flow context: its own link map; tables and topics shared through ``bus``."""

    def __init__(self, bus: Bus, tables: dict[str, dict[str, Any]], links: Links) -> None:
        self.bus, self.tables, self.links = bus, tables, links
        self.counters: Counter[str] = Counter()
        self.metrics = BoundMetrics(agents.FLOW_NAME)

    def topic(self, *names: str, **options: Any) -> Any:
        return SimpleNamespace(name=names[0])

    def table(self, name: str, **options: Any) -> Any:
        return self.tables.setdefault(name, {})

    def replicated(self, name: str, *, lasting: bool = False) -> Links:
        return self.links

    async def send(self, topic: Any, key: str, value: Any) -> Any:
        return await self.bus.send(topic, key, value)

    async def quarantine(self, reason: str, raw: Any) -> None:
        self.bus.quarantined.append(reason)


class Batch:
    """A batch of one event, straight onto the shared tables."""

    def __init__(self, ctx: Context) -> None:
        self.ctx, self.notes = ctx, {}

    def get(self, table: Any, key: str, event: Any) -> Any:
        return table.get(key)

    def put(self, table: Any, key: str, value: Any, event: Any) -> None:
        table[key] = value

    def forget(self, table: Any, key: str) -> None:
        return None

    async def send(self, topic: Any, key: str, value: Any) -> None:
        await self.ctx.send(topic, key, value)


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
        self.a = agents.Orders(Context(self.bus, tables, Links()), mapping)
        self.b = agents.Orders(Context(self.bus, tables, Links(b_links)), mapping)

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
