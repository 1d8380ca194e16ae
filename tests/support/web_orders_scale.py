"""Web orders at scale through crashes (issue #15): shop orders arriving at once, two workers and
the shop source, one worker and the shop source SIGKILLed mid-run and started again.

The run starts the sandbox (shop and TIMS), two workers (the web orders flow, the TIMS sales
order and shop fulfilment sinks) and the TIMS and shop sources (the shop's with its webhook
receiver, which the sandbox shop delivers ``orders/create`` and ``orders/updated`` to). It sets up
TIMS customers and items (as the customer sync and the products flow leave them), then creates
the orders at a steady pace. Meanwhile a shipper plays TIMS's warehouse: every sales order that
came from the shop is shipped with a tracking number of its own as soon as it appears.

Mid-run, once it has written, worker b is killed; once it has published, the shop source is
killed too, so the deliveries of the next seconds fail and the sandbox gives up on them (only
reconciliation can bring those orders); both are started again later, worker b on its own stale
data dir. The run then waits until every shop order is one TIMS sales order and one fulfilment,
and the systems go quiet, and counts:

- ``orders_missing`` / ``orders_duplicated``: shop orders without exactly one TIMS sales order
  (by its ``external_id``, the shop order's);
- ``fulfilments_missing`` / ``fulfilments_duplicated``: shop orders without exactly one
  fulfilment; ``tracking_wrong``: fulfilments whose tracking number is not their TIMS order's;
- ``rejected``: messages on the dead-letter and quarantine topics.

tests/integration/test_web_orders_scale.py runs it (``make scale``).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from sandbox.demo import Processes
from sandbox.run import Sandbox, port_is_free, start_sandbox
from sandbox.shop import WebhookSettings
from tests.support.flows import settle
from tests.support.kafka import rejections, topic_sizes
from tests.support.worker import WorkerProcess, free_port
from topologies.web_orders.order import row_key

__all__ = ["WebOrdersPlan", "run_web_orders_scale", "INVARIANTS"]

INVARIANTS = ("orders_missing", "orders_duplicated", "fulfilments_missing", "fulfilments_duplicated",
              "tracking_wrong", "rejected")
ITEMS = (("AR-125", "61.50"), ("HE-80", "45.00"), ("CO2-20", "27.25"), ("OX-40", "33.10"), ("NI-60", "52.00"),
         ("MIG-1", "129.99"), ("TIG-2", "12.00"), ("ROD-3", "7.45"))
SECRET = "shpss_web_orders_scale"
REJECTED = ("dlq.tims", "dlq.shop", "quarantine.web_orders", "quarantine.shop", "quarantine.sink")
SHOP_SOURCE = "source-shop"


@dataclass(frozen=True)
class WebOrdersPlan:
    orders: int = 500
    customers: int = 50
    max_lines: int = 3
    arrival_seconds: float = 40.0
    kill_worker_at: float = 0.3
    kill_source_at: float = 0.45
    restart_worker_at: float = 0.6
    #: the shop source stays down this long (the sandbox gives up on the deliveries meanwhile)
    source_down_seconds: float = 8.0
    converge_timeout: float = 480.0
    #: how long a precondition of a kill (the process has written, or published) may take
    precondition_timeout: float = 240.0
    seed: int = 15


def _setup(sandbox: Sandbox, plan: WebOrdersPlan) -> list[str]:
    """TIMS customers (their emails, which the buyers use) and items, and the shop's products."""
    emails = []
    for n in range(plan.customers):
        email = f"buyer{n}@example.com"
        sandbox.tims.create("customers", {"name": f"Buyer {n}", "email": email})
        emails.append(email)
    for sku, price in ITEMS:
        sandbox.tims.create("items", {"sku": sku, "name": f"Item {sku}", "unit_price": float(price)})
        sandbox.shop.store.create_product(title=f"Item {sku}", variants=[{"sku": sku, "price": price,
                                                                          "available": 100_000}])
    return emails


def _ship(sandbox: Sandbox, shipped: set[str]) -> None:
    """TIMS's warehouse: ship every sales order from the shop not shipped yet, tracking ``1Z<id>``."""
    for order in sandbox.tims.all("sales_orders"):
        number = order["sales_order_id"]
        if number in shipped or not str(order.get("external_id") or "").startswith("shop:"):
            continue
        sandbox.tims.update("sales_orders", number, {"status": "shipped", "ship_date": "2026-12-06",
                                                     "tracking_number": f"1Z{number}"})
        shipped.add(number)


def _tally(sandbox: Sandbox, orders: list[dict[str, Any]]) -> dict[str, int]:
    made = Counter(str(o.get("external_id")) for o in sandbox.tims.all("sales_orders"))
    tracking_of = {str(o.get("external_id")): f"1Z{o['sales_order_id']}" for o in sandbox.tims.all("sales_orders")}
    tally = dict.fromkeys(INVARIANTS[:-1], 0)
    for order in orders:
        key = row_key(order["id"])
        tally["orders_missing"] += made[key] == 0
        tally["orders_duplicated"] += max(0, made[key] - 1)
        fulfilments = sandbox.shop.store.get("Order", order["id"])["fulfillments"]
        tally["fulfilments_missing"] += not fulfilments
        tally["fulfilments_duplicated"] += max(0, len(fulfilments) - 1)
        numbers = [t["number"] for f in fulfilments for t in f["trackingInfo"]]
        tally["tracking_wrong"] += bool(fulfilments) and numbers != [tracking_of.get(key)]
    return tally


def _writes(sandbox: Sandbox) -> tuple[int, int]:
    """(TIMS changes made by the connector, fulfilments in the shop)."""
    return (sum(1 for change in sandbox.tims.changes if change.modified_by == "connect"),
            sum(len(o["fulfillments"]) for o in sandbox.shop.store.all("Order")))


async def _wait_for(what: str, check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Wait (the run goes on meanwhile) until ``check`` holds; how long it took."""
    began = time.monotonic()
    while not await check():
        assert time.monotonic() - began < timeout, f"{what}: not after {timeout:.0f}s"
        await asyncio.sleep(0.5)
    return time.monotonic() - began


def _settings(env: dict[str, str], sandbox: Sandbox, webhook_port: int) -> dict[str, str]:
    return {**env, **sandbox.worker_env(), "CONNECT_FLOWS": "web_orders",
            "CONNECT_SINK_OBJECTS": "tims.sales_order,shop.fulfillment",
            "CONNECT_TIMS_ENTITIES": "sales_order,customer,item", "CONNECT_SHOP_ENTITIES": "order",
            "CONNECT_SHOP_WEBHOOK_SECRET": SECRET, "CONNECT_SHOP_WEBHOOK_PORT": str(webhook_port),
            "CONNECT_SHOP_RECONCILE_INTERVAL": "3", "CONNECT_SHOP_OVERLAP_SECONDS": "5",
            "CONNECT_SINK_LINGER": "0.2", "CONNECT_TIMS_POLL_INTERVAL": "1", "CONNECT_TOPIC_PARTITIONS": "4",
            "CONNECT_BROKER_SESSION_TIMEOUT": "10", "CONNECT_BROKER_HEARTBEAT_INTERVAL": "1"}


async def run_web_orders_scale(env: dict[str, str], workdir: Path, plan: WebOrdersPlan,
                               progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    began = time.monotonic()
    rng = random.Random(plan.seed)
    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["CONNECT_TOPIC_PREFIX"]
    sandbox = await start_sandbox(ports={"salesforce-rest": 0, "salesforce-pubsub": 0, "pardot": 0, "tims": 0,
                                         "shop": 0}, keepalive_seconds=5)
    webhook_port = free_port()
    settings = _settings(env, sandbox, webhook_port)
    workers = {name: WorkerProcess({**settings, "CONNECT_DATA_DIR": str(workdir / f"data-{name}"),
                                    "CONNECT_WEB_PORT": str(free_port())}, workdir / f"worker-{name}.log", name)
               for name in ("a", "b")}
    sources = Processes({**os.environ, **settings}, workdir)
    figures: dict[str, Any] = {}
    background: dict[str, asyncio.Task[Any]] = {}
    try:
        emails = _setup(sandbox, plan)
        await asyncio.gather(*(asyncio.to_thread(w.start, 120.0) for w in workers.values()))
        for system in ("tims", "shop"):
            sources.start(f"source-{system}", "source", system)
        await _wait_for("the shop source's webhook receiver listens",
                        lambda: _true(not port_is_free("127.0.0.1", webhook_port)), 60)
        sandbox.shop.webhooks.configure(WebhookSettings(
            url=f"http://127.0.0.1:{webhook_port}/shop/webhook", secret=SECRET, topics=["orders/create",
                                                                                         "orders/updated"],
            max_attempts=3, backoff_seconds=0.2, timeout_seconds=2.0))
        figures["started_s"] = round(time.monotonic() - began, 1)

        wrote = re.compile(r"sink \S+: \d+ message\(s\), \d+ stale, [1-9]\d* written")
        arrival = time.monotonic()

        def at() -> float:
            return round(time.monotonic() - arrival, 1)

        async def b_has_written() -> bool:
            return bool(wrote.search(workers["b"].log_text()))

        async def shop_source_published() -> bool:
            return (await topic_sizes(bootstrap, [f"{prefix}src.shop.order"]))[f"{prefix}src.shop.order"] > 0

        async def kill_worker_b() -> None:
            # on a loaded machine b may not have written at the planned share: the kill waits for its
            # first write (orders keep arriving meanwhile), so it always hits work in flight
            figures["worker_b_waited_s"] = round(await _wait_for(
                "worker b writes before it is killed", b_has_written, plan.precondition_timeout), 1)
            figures["worker_b_killed_at_s"] = at()
            assert await asyncio.to_thread(workers["b"].kill) == -9

        async def kill_shop_source() -> None:
            figures["source_waited_s"] = round(await _wait_for(
                "the shop source publishes before it is killed", shop_source_published, plan.precondition_timeout), 1)
            figures["source_killed_at_s"] = at()
            assert await asyncio.to_thread(sources.kill, SHOP_SOURCE) == -9
            await asyncio.sleep(plan.source_down_seconds)
            sources.start(SHOP_SOURCE, "source", "shop")
            figures["source_restarted_at_s"] = at()

        async def restart_worker_b() -> None:
            await background[kill_worker_b.__name__]
            figures["worker_b_restarted_at_s"] = at()
            await asyncio.to_thread(workers["b"].start, 120.0)

        events: dict[float, Callable[[], Awaitable[None]]] = {
            plan.kill_worker_at: kill_worker_b, plan.kill_source_at: kill_shop_source,
            plan.restart_worker_at: restart_worker_b}
        orders: list[dict[str, Any]] = []
        shipped: set[str] = set()
        for index in range(plan.orders):
            for share in sorted(s for s in events if index >= s * plan.orders):
                event = events.pop(share)
                background[event.__name__] = asyncio.create_task(event())
            lines = [{"sku": sku, "title": f"Item {sku}", "quantity": rng.randint(1, 5), "price": price}
                     for sku, price in rng.sample(ITEMS, rng.randint(1, plan.max_lines))]
            orders.append(sandbox.shop.store.create_order(email=rng.choice(emails), line_items=lines))
            if index % 25 == 0:
                _ship(sandbox, shipped)
            if index % 100 == 0:
                progress(f"arrival: {index}/{plan.orders} orders")
            if (pause := arrival + plan.arrival_seconds * (index + 1) / plan.orders - time.monotonic()) > 0:
                await asyncio.sleep(pause)
        figures["arrival_s"] = at()

        deadline, figures["converged_s"] = time.monotonic() + plan.converge_timeout, None
        while True:
            for task in [t for t in background.values() if t.done()]:
                task.result()  # a failed precondition or kill fails the run here
            sources.check()
            assert workers["a"].proc is not None and workers["a"].proc.poll() is None, workers["a"].log_text()[-3000:]
            _ship(sandbox, shipped)
            tally = _tally(sandbox, orders)
            if not any(tally.values()) and all(t.done() for t in background.values()):
                figures["converged_s"] = at()
                break
            if time.monotonic() > deadline:
                break
            progress(f"converging: {tally}")
            await asyncio.sleep(2)
        await asyncio.gather(*background.values())

        figures["quiet"], windows = await settle(lambda: _writes(sandbox))
        rejected, reasons = await rejections(bootstrap, [f"{prefix}{t}" for t in REJECTED])
        source_events = (await topic_sizes(bootstrap, [f"{prefix}src.shop.order"]))[f"{prefix}src.shop.order"]
        hooks = sandbox.shop.webhooks.counts
        return {**_tally(sandbox, orders), "rejected": sum(rejected.values()), "rejected_by_topic": rejected,
                "rejected_reasons": reasons, "shop_orders": len(orders),
                "tims_sales_orders": len(sandbox.tims.all("sales_orders")),
                "fulfilments": _writes(sandbox)[1], "shipped": len(shipped), "shop_order_events": source_events,
                "webhooks": {k: hooks[k] for k in sorted(hooks)}, "writes_while_settling": windows, **figures,
                "took_s": round(time.monotonic() - began, 1)}
    finally:
        for task in background.values():
            task.cancel()
        await asyncio.gather(*background.values(), return_exceptions=True)
        await asyncio.gather(asyncio.to_thread(sources.stop), *(asyncio.to_thread(w.stop, 60.0)
                                                                   for w in workers.values() if w.proc is not None))
        await sandbox.stop()


async def _true(value: bool) -> bool:
    return value
