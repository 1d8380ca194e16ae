"""Order-to-cash benchmark: the orders and receivables flows beside the customer sync, same run.

Prints:
1. baseline: raw aiokafka consume→produce on the same broker, msgs/s (as bench/topology_bench.py);
2. orders: a worker running only the orders flow, its links (Accounts → TIMS customers, Product2s
   → TIMS items) read first; then ``--orders`` Opportunities, each created, given three lines and
   won, published straight onto the source topics: events/s until the last TIMS sales order
   command, events/s until every stage caught up, the worker's CPU ms per event;
3. receivables: a worker running only the receivables flow, its Accounts read first; then
   ``--invoices`` TIMS invoices and as many payments for ``--customers`` customers: events/s
   until every stage caught up, CPU ms per event, Account writes per 1,000 events;
4. the customer sync's figures from the same run (bench/topology_bench.py's throughput part,
   ``--customer-events`` new customers, then the same changed);
5. Salesforce API calls per 1,000 records, end to end through the sources, two workers and the
   sandbox (tests/support/order_to_cash_scale.py at ``--scale`` Opportunities, no kill).

Usage: .venv/bin/python bench/order_to_cash_bench.py [--orders 1000] [--invoices 2500]
           [--customers 200] [--customer-events 3000] [--scale 1000] [--parts 1,2,3,4,5]
Needs a broker (KAFKA_BOOTSTRAP_SERVERS or the local one: `stream-app kafka up`). The last line
is one JSON object with the figures; ratios are against the baseline of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import topology_bench as tb  # noqa: E402

from connectors import kafka_admin  # noqa: E402

PRICES = (42.5, 3.25, 27.25, 61.5, 0.85, 129.99, 12.0, 7.45)
_n = 0


def _event(source: str, entity: str, record_id: str, change: str, fields: dict[str, Any],
           full: bool = False) -> tuple[bytes, bytes]:
    global _n
    _n += 1
    value = {"event_id": f"bench-{_n}", "source": source, "entity": entity, "record_id": record_id,
             "change_type": change, "fields": fields, "full_state": full,
             "changed_fields": [] if full else sorted(fields), "commit_timestamp": int(time.time() * 1000)}
    return record_id.encode(), json.dumps(value).encode()


def _sf_id(prefix: str, n: int) -> str:
    return f"{prefix}{n:012d}AAA"


async def _run_flow(flow: str, groups: dict[str, list[str]], links: dict[str, list[tuple[bytes, bytes]]],
                    events: dict[str, list[tuple[bytes, bytes]]], done_topic: str | None, done_count: int,
                    workdir: Path) -> dict[str, Any]:
    """A worker running ``flow`` alone: ``links`` published and read first, then ``events``; the
    figures until ``done_count`` commands on ``done_topic`` and until every stage caught up."""
    run = uuid.uuid4().hex[:8]
    prefix = f"bench-{run}."
    tb.FLOW_TOPICS = groups
    worker = tb.Worker(tb.worker_env(run, str(workdir / f"data-{flow}"), {"CONNECT_FLOWS": flow}),
                       workdir / f"worker-{flow}.log")
    try:
        worker.wait_ready()
        await asyncio.sleep(2)
        for topic, messages in links.items():
            await tb.produce(f"{prefix}{topic}", messages)
        await tb.caught_up(f"bench-{run}", prefix, timeout=300)
        commands_before = (sum((await kafka_admin.end_offsets(tb.BOOTSTRAP, [f"{prefix}{done_topic}"])).values())
                           if done_topic else 0)
        total = sum(len(m) for m in events.values())
        cpu_started, started = worker.cpu_seconds(), time.monotonic()
        await asyncio.gather(*(tb.produce(f"{prefix}{topic}", messages) for topic, messages in events.items()))
        figures: dict[str, Any] = {"events": total}
        if done_topic:
            await tb.consume(f"{prefix}{done_topic}", commands_before + done_count, timeout=600)
            figures["throughput"] = total / (time.monotonic() - started)
        await tb.caught_up(f"bench-{run}", prefix, timeout=600)
        figures["sustained"] = total / (time.monotonic() - started)
        cpu_done = worker.cpu_seconds()
        figures["cpu_ms"] = None if cpu_started is None or cpu_done is None else (cpu_done - cpu_started) * 1000 / total
        sinks = [t for t in await kafka_admin.list_topics(tb.BOOTSTRAP) if t.startswith(f"{prefix}sink.")]
        figures["commands"] = sum((await kafka_admin.end_offsets(tb.BOOTSTRAP, sinks)).values()) - commands_before
        return figures
    finally:
        worker.stop()
        await tb.forget(run)


async def orders(count: int, customers: int, workdir: Path) -> dict[str, Any]:
    rng = random.Random(3)
    accounts = [(_sf_id("001", n), f"C{n:06d}") for n in range(customers)]
    products = [(_sf_id("01t", n), f"IT{n:06d}", price) for n, price in enumerate(PRICES)]
    links = {"src.salesforce.Account": [_event("salesforce", "Account", a, "CREATE", {"Name": a, "TIMS_Customer_ID__c": c})
                                       for a, c in accounts],
             "src.salesforce.Product2": [_event("salesforce", "Product2", p, "CREATE", {"Name": i, "TIMS_Item_Number__c": i})
                                         for p, i, _ in products]}
    opportunities, lines, won = [], [], []
    for n in range(count):
        opportunity, (account, _) = _sf_id("006", n), accounts[n % customers]
        chosen = rng.sample(products, 3)
        quantities = [rng.randint(1, 9) for _ in chosen]
        amount = round(sum(q * price for q, (_, _, price) in zip(quantities, chosen)), 2)
        opportunities.append(_event("salesforce", "Opportunity", opportunity, "CREATE", {
            "Name": f"Deal {n}", "AccountId": account, "StageName": "Negotiation", "CloseDate": "2026-12-01",
            "Amount": amount}))
        for k, ((product, _, price), quantity) in enumerate(zip(chosen, quantities)):
            line = _sf_id("00k", n * 3 + k)
            lines.append(_event("salesforce", "OpportunityLineItem", line, "CREATE", {
                "OpportunityId": opportunity, "Product2Id": product, "Quantity": quantity, "UnitPrice": price}))
        won.append(_event("salesforce", "Opportunity", opportunity, "UPDATE", {"StageName": "Closed Won"}))
    # the lines go first: a won Opportunity whose lines are not in yet waits its grace (60 s)
    events = {"src.salesforce.OpportunityLineItem": lines, "src.salesforce.Opportunity": opportunities + won}
    groups = {".orders.ingest": ["src.salesforce.Opportunity", "src.salesforce.OpportunityLineItem",
                                 "src.tims.sales_order", "src.salesforce.Account", "src.salesforce.Product2"],
              "": ["orders.merge", "orders.waiting"]}
    return await _run_flow("orders", groups, links, events, "sink.tims.sales_order", count, workdir)


async def receivables(invoices: int, customers: int, workdir: Path) -> dict[str, Any]:
    rng = random.Random(5)
    accounts = [(_sf_id("001", n), f"C{n:06d}") for n in range(customers)]
    links = {"src.salesforce.Account": [_event("salesforce", "Account", a, "CREATE", {"Name": a, "TIMS_Customer_ID__c": c})
                                       for a, c in accounts]}
    invoice_events, payment_events = [], []
    for n in range(invoices):
        customer = accounts[rng.randrange(customers)][1]
        invoice, payment = f"INV{n:06d}", f"PAY{n:06d}"
        total = rng.randint(1_000, 500_000) / 100
        invoice_events.append(_event("tims", "invoice", invoice, "CREATE", {
            "invoice_id": invoice, "customer_id": customer, "total_amount": total, "invoice_date": "2026-11-01",
            "due_date": "2026-12-01", "status": "open", "currency": "USD", "version": 1}, full=True))
        payment_events.append(_event("tims", "payment", payment, "CREATE", {
            "payment_id": payment, "customer_id": customer, "invoice_id": invoice if rng.random() < 0.8 else None,
            "amount": round(total / 2, 2), "payment_date": "2026-11-20", "currency": "USD", "version": 1}, full=True))
    events = {"src.tims.invoice": invoice_events, "src.tims.payment": payment_events}
    groups = {".receivables.ingest": ["src.tims.invoice", "src.tims.payment", "src.tims.customer",
                                      "src.salesforce.Account", "src.salesforce.Contact", "src.pardot.prospect"],
              "": ["receivables.merge"]}
    return await _run_flow("receivables", groups, links, events, None, 0, workdir)


async def scale_calls(opportunities: int, workdir: Path) -> dict[str, Any]:
    from tests.support.order_to_cash_scale import ScalePlan, run_order_to_cash_scale

    run = uuid.uuid4().hex[:8]
    env = {"KAFKA_BOOTSTRAP_SERVERS": tb.BOOTSTRAP, "CONNECT_APP_ID": f"bench-{run}",
           "CONNECT_TOPIC_PREFIX": f"bench-{run}.", "CONNECT_DATA_DIR": str(workdir / "data-scale"),
           "CONNECT_LOG_LEVEL": "warning"}
    plan = ScalePlan(opportunities=opportunities, invoices=opportunities, payments=opportunities, kill_at=2.0,
                     restart_at=2.0)
    try:
        return await run_order_to_cash_scale(env, workdir, plan)
    finally:
        await tb.forget(run)


def _per_s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} events/s"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--invoices", type=int, default=2500)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--customer-events", type=int, default=3000)
    parser.add_argument("--scale", type=int, default=1000, help="Opportunities in the end-to-end calls part")
    parser.add_argument("--parts", default="1,2,3,4,5")
    args = parser.parse_args()
    parts = {int(p) for p in args.parts.split(",") if p.strip()}
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        if 1 in parts:
            base = await tb.baseline(5000)
            summary["baseline_msgs_per_s"] = round(base)
            print(f"baseline raw aiokafka consume→produce: {base:,.0f} msgs/s")

        def ratio(value: float | None) -> str:
            return f" = {value / base:.4f} × baseline" if base and value else ""

        if 2 in parts:
            found = await orders(args.orders, args.customers, Path(tmp))
            print(f"orders: {args.orders} Opportunities (create, 3 lines, won: {found['events']} events): "
                  f"{_per_s(found['throughput'])} to the last TIMS order command{ratio(found['throughput'])}; "
                  f"sustained {_per_s(found['sustained'])}{tb._cpu(found['cpu_ms'])}; {found['commands']} commands")
            summary.update(orders_events_per_s=round(found["throughput"]),
                           orders_sustained_events_per_s=round(found["sustained"]),
                           orders_cpu_ms_per_event=tb._round(found["cpu_ms"]))
        if 3 in parts:
            found = await receivables(args.invoices, args.customers, Path(tmp))
            print(f"receivables: {args.invoices} invoices and {args.invoices} payments for {args.customers} customers "
                  f"({found['events']} events): sustained {_per_s(found['sustained'])}{ratio(found['sustained'])}"
                  f"{tb._cpu(found['cpu_ms'])}; {found['commands']} Account commands "
                  f"({found['commands'] * 1000 / found['events']:.0f} per 1,000 events)")
            summary.update(receivables_events_per_s=round(found["sustained"]),
                           receivables_cpu_ms_per_event=tb._round(found["cpu_ms"]),
                           receivables_commands_per_1000_events=round(found["commands"] * 1000 / found["events"]))
        if 4 in parts:
            tb.FLOW_TOPICS = {".customer_sync.ingest": ["src.tims.customer"],
                              ".customer_sync.merge": ["customer_sync.merge"],
                              ".customer_sync.matching": ["customer_sync.matching"],
                              ".customer_sync.identify": ["customer_sync.identify"]}
            found = await tb.topology(args.customer_events, 100.0, 2.0, Path(tmp))
            print(f"customer sync, same run: new customers {_per_s(found['throughput'])}{ratio(found['throughput'])}"
                  f"{tb._cpu(found['cpu_ms'])}; known {_per_s(found['known_throughput'])}{tb._cpu(found['known_cpu_ms'])}")
            summary.update(customer_events_per_s=round(found["throughput"]),
                           customer_known_events_per_s=round(found["known_throughput"]),
                           customer_cpu_ms_per_event=tb._round(found["cpu_ms"]))
        if 5 in parts:
            found = await scale_calls(args.scale, Path(tmp))
            print(f"end to end: {found['won']} won Opportunities × 3 lines, {args.scale} invoices, {args.scale} payments "
                  f"through the sources, two workers and the sandbox: {found['salesforce_calls']} Salesforce calls "
                  f"({found['sf_calls_per_1000_records']} per 1,000 records: {found['calls_by_kind']}); converged "
                  f"{found['converged_s']} s after the first arrival; invariants "
                  f"{ {k: found[k] for k in ('orders_missing', 'orders_duplicated', 'balances_wrong', 'rejected')} }")
            summary.update(sf_calls_per_1000_records=found["sf_calls_per_1000_records"],
                           end_to_end_converged_s=found["converged_s"])
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
