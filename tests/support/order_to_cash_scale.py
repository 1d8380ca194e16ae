"""The order-to-cash flows at scale: won Opportunities, invoices and payments arriving at once,
two workers, one SIGKILLed mid-run and restarted on its own (stale) data dir.

The run starts the sandbox, two workers (orders and receivables flows) and the Salesforce and
TIMS sources; it sets up customers (a TIMS customer and its linked Account, as the customer
sync leaves them) and a catalogue (TIMS items with their Product2 and standard price, as the
products flow leaves them); then it plays a seeded script in which Opportunities are created
with three lines and won, and TIMS invoices (some corrected later), payments (applied or not)
arrive for the same customers, all interleaved. It then waits until the systems agree and goes
quiet, and counts:

- ``orders_missing`` / ``orders_duplicated``: won Opportunities without exactly one TIMS sales
  order (by ``external_id``); ``orders_unlinked``: Opportunities not showing their TIMS order id;
- ``balances_wrong``: Accounts whose open balance or lifetime revenue is not, to the cent, what
  the TIMS sandbox's own invoices and payments add up to;
- ``rejected``: messages on the dead-letter and quarantine topics.

tests/integration/test_order_to_cash_scale.py runs it; bench/order_to_cash_bench.py prints the
figures (events/s, Salesforce calls per 1,000 records) beside the customer sync's.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Awaitable, Callable

from sandbox.demo import Processes
from sandbox.run import Sandbox, start_sandbox
from tests.support.flows import CLIENT, SALESFORCE_WRITES, settle
from tests.support.kafka import rejections, topic_sizes
from tests.support.worker import WorkerProcess, free_port

__all__ = ["ScalePlan", "run_order_to_cash_scale", "INVARIANTS", "balance_in_tims"]

INVARIANTS = ("orders_missing", "orders_duplicated", "orders_unlinked", "balances_wrong", "rejected")
PRICES = (42.5, 3.25, 27.25, 61.5, 0.85, 129.99, 12.0, 7.45)


@dataclass(frozen=True)
class ScalePlan:
    opportunities: int = 1_000
    lines: int = 3
    invoices: int = 1_000
    payments: int = 1_000
    customers: int = 100
    #: share of invoices corrected (a new amount) after they were first sent
    corrections: float = 0.1
    #: share of payments applied to no invoice
    unapplied: float = 0.2
    arrival_seconds: float = 40.0
    kill_at: float = 0.35
    restart_at: float = 0.6
    converge_timeout: float = 240.0
    seed: int = 13


def balance_in_tims(sandbox: Sandbox, customer: str) -> tuple[Decimal, Decimal]:
    """(open balance, lifetime revenue) as TIMS's own records add them up: the balance due of the
    invoices that are not void less the payments applied to none; the invoices' totals."""
    invoices = [i for i in sandbox.tims.find("invoices", customer_id=customer) if i["status"] != "void"]
    unapplied = [p for p in sandbox.tims.find("payments", customer_id=customer) if not p.get("invoice_id")]
    due = sum((Decimal(repr(i["balance_due"])) for i in invoices), Decimal(0))
    credit = sum((Decimal(repr(p["amount"])) for p in unapplied), Decimal(0))
    return due - credit, sum((Decimal(repr(i["total_amount"])) for i in invoices), Decimal(0))


def _setup(sandbox: Sandbox, plan: ScalePlan) -> tuple[list[tuple[str, str]], list[str]]:
    """Customers (TIMS id, Account Id) and standard price book entries, as the other flows leave them."""
    org, tims, book = sandbox.org, sandbox.tims, sandbox.org.standard_pricebook_id
    customers = []
    for n in range(plan.customers):
        customer = tims.create("customers", {"name": f"Customer {n}", "payment_terms": "NET30"})["customer_id"]
        customers.append((customer, org.create("Account", {"Name": f"Customer {n}", "TIMS_Customer_ID__c": customer})))
    entries = []
    for n, price in enumerate(PRICES):
        item = tims.create("items", {"sku": f"SKU-{n}", "name": f"Item {n}", "unit_price": price})["item_id"]
        product = org.create("Product2", {"Name": f"Item {n}", "ProductCode": f"SKU-{n}", "TIMS_Item_Number__c": item,
                                          "IsActive": True})
        entries.append(org.create("PricebookEntry", {"Pricebook2Id": book, "Product2Id": product, "UnitPrice": price,
                                                     "IsActive": True, "TIMS_Item_Number__c": item}))
    return customers, entries


Step = Callable[[], None]


def _script(sandbox: Sandbox, plan: ScalePlan, rng: random.Random, customers: list[tuple[str, str]],
            entries: list[str], won: list[str]) -> list[Step]:
    """The steps, interleaved at random; a step that needs another's result comes after it."""
    org, tims = sandbox.org, sandbox.tims
    journeys: list[list[Step]] = []
    for n in range(plan.opportunities):
        _, account = customers[n % len(customers)]
        made: dict[str, str] = {}

        def create(account: str = account, made: dict[str, str] = made, n: int = n) -> None:
            made["id"] = org.create("Opportunity", {"Name": f"Deal {n}", "AccountId": account,
                                                    "StageName": "Negotiation", "CloseDate": "2026-12-01"})
            for entry in rng.sample(entries, plan.lines):
                org.create("OpportunityLineItem", {"OpportunityId": made["id"], "PricebookEntryId": entry,
                                                   "Quantity": rng.randint(1, 9)})

        def win(made: dict[str, str] = made) -> None:
            org.update("Opportunity", made["id"], {"StageName": "Closed Won"})
            won.append(made["id"])

        journeys.append([create, win])
    invoices: dict[str, list[str]] = {}
    for n in range(plan.invoices):
        customer, _ = customers[rng.randrange(len(customers))]
        held: dict[str, str] = {}
        total = Decimal(rng.randint(1_000, 500_000)) / 100
        due = f"2026-{rng.randint(9, 12):02d}-{rng.randint(1, 28):02d}" if rng.random() < 0.5 else "2027-02-15"

        def invoice(customer: str = customer, held: dict[str, str] = held, total: Decimal = total,
                    due: str = due) -> None:
            held["id"] = tims.create("invoices", {"customer_id": customer, "invoice_date": "2026-11-01",
                                                  "due_date": due, "total_amount": float(total)})["invoice_id"]
            invoices.setdefault(customer, []).append(held["id"])

        steps: list[Step] = [invoice]
        if rng.random() < plan.corrections:
            fixed = Decimal(rng.randint(1_000, 500_000)) / 100
            steps.append(lambda held=held, fixed=fixed: tims.update("invoices", held["id"],
                                                                    {"total_amount": float(fixed)}))
        journeys.append(steps)
    for n in range(plan.payments):
        customer, _ = customers[rng.randrange(len(customers))]
        amount = Decimal(rng.randint(100, 100_000)) / 100
        applied = rng.random() >= plan.unapplied

        def pay(customer: str = customer, amount: Decimal = amount, applied: bool = applied) -> None:
            mine = invoices.get(customer) or []
            target = rng.choice(mine) if applied and mine else None
            tims.create("payments", {"customer_id": customer, "invoice_id": target, "amount": float(amount),
                                     "payment_date": "2026-11-20"})

        journeys.append([pay])
    # interleave: repeatedly take the next step of a random journey
    steps: list[Step] = []
    pending = [list(journey) for journey in journeys]
    while pending:
        journey = pending[rng.randrange(len(pending))]
        steps.append(journey.pop(0))
        if not journey:
            pending.remove(journey)
    return steps


def _salesforce_calls(sandbox: Sandbox) -> dict[str, int]:
    api = sandbox.org.snapshot(with_records=False)["api"]
    return {k.split(" ", 1)[1]: n for k, n in sorted(api["by_client_kind"].items()) if k.startswith(CLIENT + " ")}


def _writes(sandbox: Sandbox) -> tuple[int, int]:
    calls = _salesforce_calls(sandbox)
    return (sum(n for kind, n in calls.items() if kind.split(" ")[-1] in SALESFORCE_WRITES),
            sum(1 for change in sandbox.tims.changes if change.modified_by == "connect"))


def _tally(sandbox: Sandbox, won: list[str], customers: list[tuple[str, str]]) -> dict[str, int]:
    orders: dict[str, int] = {}
    for order in sandbox.tims.all("sales_orders"):
        orders[str(order.get("external_id"))] = orders.get(str(order.get("external_id")), 0) + 1
    unlinked = sum(1 for opportunity in won if not (sandbox.org.get("Opportunity", opportunity) or {}).get(
        "TIMS_Sales_Order_ID__c"))
    wrong = 0
    for customer, account in customers:
        balance, revenue = balance_in_tims(sandbox, customer)
        shown = sandbox.org.get("Account", account) or {}
        if revenue == 0 and shown.get("TIMS_Open_Balance__c") is None and balance == 0:
            continue
        if (shown.get("TIMS_Open_Balance__c") is None
                or Decimal(repr(shown["TIMS_Open_Balance__c"])) != balance
                or Decimal(repr(shown.get("TIMS_Lifetime_Revenue__c") or 0)) != revenue):
            wrong += 1
    return {"orders_missing": sum(1 for o in won if orders.get(o, 0) == 0),
            "orders_duplicated": sum(n - 1 for n in orders.values() if n > 1), "orders_unlinked": unlinked,
            "balances_wrong": wrong}


async def run_order_to_cash_scale(env: dict[str, str], workdir: Path, plan: ScalePlan,
                                  progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    began = time.monotonic()
    rng = random.Random(plan.seed)
    sandbox = await start_sandbox(ports={"salesforce-rest": 0, "salesforce-pubsub": 0, "pardot": 0, "tims": 0},
                                  keepalive_seconds=5)
    settings = {**env, **sandbox.worker_env(), "CONNECT_FLOWS": "orders,receivables",
                "CONNECT_SINK_OBJECTS": "tims.sales_order,salesforce.Opportunity,salesforce.Account,"
                                        "salesforce.Contact,pardot.prospect",
                "CONNECT_SALESFORCE_ENTITIES": "Opportunity,OpportunityLineItem,Account,Contact,Product2",
                "CONNECT_TIMS_ENTITIES": "customer,sales_order,invoice,payment",
                "CONNECT_SINK_LINGER": "0.2", "CONNECT_TIMS_POLL_INTERVAL": "1", "CONNECT_TOPIC_PARTITIONS": "4",
                "CONNECT_BROKER_SESSION_TIMEOUT": "10", "CONNECT_BROKER_HEARTBEAT_INTERVAL": "1"}
    workers = {name: WorkerProcess({**settings, "CONNECT_DATA_DIR": str(workdir / f"data-{name}"),
                                    "CONNECT_WEB_PORT": str(free_port())}, workdir / f"worker-{name}.log", name)
               for name in ("a", "b")}
    sources = Processes({**os.environ, **settings}, workdir)
    figures: dict[str, Any] = {}
    restart: asyncio.Task[Any] | None = None
    try:
        customers, entries = _setup(sandbox, plan)
        await asyncio.gather(*(asyncio.to_thread(w.start, 120.0) for w in workers.values()))
        for system in ("salesforce", "tims"):
            sources.start(f"source-{system}", "source", system)
        figures["started_s"] = round(time.monotonic() - began, 1)
        await asyncio.sleep(3)
        won: list[str] = []
        steps = _script(sandbox, plan, rng, customers, entries, won)

        wrote = re.compile(r"sink \S+: \d+ message\(s\), \d+ stale, [1-9]\d* written")
        killing: list[asyncio.Task[None]] = []

        async def kill_when_b_has_written() -> None:
            # on a loaded machine b may not have written yet at the planned share of the arrival:
            # the kill waits for its first write (arrival goes on meanwhile), so it always hits work
            # in flight
            deadline = time.monotonic() + 120
            while not wrote.search(workers["b"].log_text()):
                assert time.monotonic() < deadline, "worker b wrote nothing in 2 minutes: " + \
                    workers["b"].log_text()[-3000:]
                await asyncio.sleep(0.5)
            figures["killed_at_s"] = round(time.monotonic() - arrival, 1)
            assert await asyncio.to_thread(workers["b"].kill) == -9

        async def kill_b() -> None:
            killing.append(asyncio.create_task(kill_when_b_has_written()))

        async def restart_b() -> None:
            nonlocal restart
            for task in killing:
                await task
            figures["restarted_at_s"] = round(time.monotonic() - arrival, 1)
            restart = asyncio.create_task(asyncio.to_thread(workers["b"].start, 120.0))

        events: dict[float, Callable[[], Awaitable[None]]] = {plan.kill_at: kill_b, plan.restart_at: restart_b}
        arrival = time.monotonic()
        for index, step in enumerate(steps):
            for share in [s for s in events if index >= s * len(steps)]:
                await events.pop(share)()
            step()
            target = arrival + plan.arrival_seconds * (index + 1) / len(steps)
            if (pause := target - time.monotonic()) > 0:
                await asyncio.sleep(pause)
            if index % 500 == 0:
                progress(f"arrival: {index}/{len(steps)} steps")
                sources.check()
        figures["arrival_s"] = round(time.monotonic() - arrival, 1)

        deadline, figures["converged_s"] = time.monotonic() + plan.converge_timeout, None
        while True:
            sources.check()
            assert workers["a"].proc is not None and workers["a"].proc.poll() is None, workers["a"].log_text()[-3000:]
            tally = _tally(sandbox, won, customers)
            if not any(tally.values()):
                figures["converged_s"] = round(time.monotonic() - arrival, 1)
                break
            if time.monotonic() > deadline:
                break
            progress(f"converging: {tally}")
            await asyncio.sleep(2)
        if restart is not None:
            await restart

        figures["quiet"], windows = await settle(lambda: _writes(sandbox))
        figures["quiet_s"] = round(time.monotonic() - arrival, 1)

        tally = _tally(sandbox, won, customers)
        prefix = env["CONNECT_TOPIC_PREFIX"]
        bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
        rejected, reasons = await rejections(bootstrap, [f"{prefix}{t}" for t in (
            "dlq.salesforce", "dlq.tims", "dlq.pardot", "quarantine.orders", "quarantine.receivables",
            "quarantine.sink")])
        source_events = sum((await topic_sizes(bootstrap, [f"{prefix}src.salesforce.{e}" for e in (
            "Opportunity", "OpportunityLineItem", "Account", "Product2")] + [f"{prefix}src.tims.{e}" for e in (
                "customer", "sales_order", "invoice", "payment", "item")])).values())
        records = plan.opportunities * (1 + plan.lines) + plan.invoices + plan.payments
        calls = _salesforce_calls(sandbox)
        converged = figures["converged_s"]
        return {**tally, "rejected": sum(rejected.values()), "rejected_by_topic": rejected,
                "rejected_reasons": reasons,
                "tims_orders": len(sandbox.tims.all("sales_orders")), "won": len(won), "source_events": source_events,
                "events_per_s": round(source_events / converged, 1) if converged else None,
                "salesforce_calls": sum(calls.values()), "calls_by_kind": calls,
                "sf_calls_per_1000_records": round(sum(calls.values()) / records * 1000, 1),
                "writes_while_settling": windows, **figures, "took_s": round(time.monotonic() - began, 1)}
    finally:
        if restart is not None and not restart.done():
            await asyncio.wait([restart])
        await asyncio.gather(asyncio.to_thread(sources.stop), *(asyncio.to_thread(w.stop, 60.0)
                                                                   for w in workers.values() if w.proc is not None))
        await sandbox.stop()
