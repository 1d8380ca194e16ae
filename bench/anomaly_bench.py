"""Anomaly rules on a synthetic money stream with known anomalies injected: precision and recall
per rule (quality/anomalies, docs/adr/0030).

The stream: customers with their own order sizes (log-normal, levels spread over two orders of
magnitude), orders, invoices and payments over a year (payments 10-40 days after the invoice,
some partial), monthly subscribers paying the same amount every month, credit limits raised a
little and terms moved by 15 days now and then (all normal). Injected, each labelled with the
rule that should catch it: wild amounts (invoices and orders 15-60 times larger or smaller than
the customer's usual, payments 15-60 times larger), payments sent twice within two days, zero or negative totals, credit limits multiplied
by 5-20, terms lengthened to NET60/NET90 or from COD to credit.

Usage: .venv/bin/python bench/anomaly_bench.py [--customers 400] [--seed 2026]
The last line is one JSON object; exit status 0 when every rule reaches precision ≥ 0.9 at
recall ≥ 0.8 (the issue's goal).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality.anomalies import AnomalyDetector, CustomerChange, MoneyEvent  # noqa: E402

RULES = ("amount_outlier", "duplicate_payment", "non_positive_total", "credit_limit_jump", "payment_terms_change")
START = datetime(2026, 1, 1)


class Stream:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.events: list[tuple[datetime, MoneyEvent | CustomerChange]] = []
        self.labels: dict[str, str] = {}  # event id → the rule that should flag it
        self._ids = 0

    def _id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids}"

    def money(self, kind: str, customer: str, amount: Decimal, day: float, label: str | None = None) -> MoneyEvent:
        event = MoneyEvent(self._id(kind[:3]), kind, customer, amount, START + timedelta(days=day))  # type: ignore[arg-type]
        self.events.append((event.at, event))
        if label:
            self.labels[event.id] = label
        return event

    def change(self, customer: str, field: str, old: object, new: object, day: float, label: str | None = None) -> None:
        event = CustomerChange(self._id("chg"), customer, field, old, new, START + timedelta(days=day))  # type: ignore[arg-type]
        self.events.append((event.at, event))
        if label:
            self.labels[event.id] = label


def _cents(value: float) -> Decimal:
    return Decimal(f"{max(value, 1.0):.2f}")


def _customer(stream: Stream, name: str) -> None:
    rng = stream.rng
    level = rng.gauss(7.0, 1.0)
    subscriber = rng.random() < 0.1
    fixed = _cents(math.exp(level))
    day = rng.uniform(0, 20)
    while day < 330:
        amount = fixed if subscriber else _cents(math.exp(rng.gauss(level, 0.25)))
        stream.money("order", name, amount, day)
        stream.money("invoice", name, amount, day + rng.uniform(1, 5))
        paid = amount if rng.random() < 0.85 else _cents(float(amount) / 2)
        payment = stream.money("payment", name, paid, day + rng.uniform(10, 40))
        if rng.random() < 0.015:
            stream.money("payment", name, paid, (payment.at - START).total_seconds() / 86400 + rng.uniform(0.01, 2),
                         "duplicate_payment")
        if rng.random() < 0.012:
            factor = rng.uniform(15, 60)
            kind = rng.choice(("invoice", "order", "payment"))
            upwards = kind == "payment" or rng.random() < 0.7  # a wild payment is too large (a partial one is normal)
            wild = math.exp(level) * (factor if upwards else 1 / factor)
            stream.money(kind, name, _cents(wild), day + rng.uniform(0, 20), "amount_outlier")
        if rng.random() < 0.005:
            stream.money(rng.choice(("invoice", "order")), name, Decimal(rng.choice(("0.00", "-120.00", "-5.50"))),
                         day + rng.uniform(0, 20), "non_positive_total")
        day += 30 if subscriber else rng.uniform(4, 14)
    limit = float(_cents(math.exp(level) * rng.uniform(3, 6)))
    if rng.random() < 0.3:
        stream.change(name, "credit_limit", limit, round(limit * rng.uniform(1.1, 1.5), 2), rng.uniform(30, 300))
    if rng.random() < 0.08:
        stream.change(name, "credit_limit", limit, round(max(limit * rng.uniform(5, 20), limit + 6000), 2),
                      rng.uniform(30, 300), "credit_limit_jump")
    if rng.random() < 0.2:
        stream.change(name, "payment_terms", "NET30", "NET45", rng.uniform(30, 300))
    if rng.random() < 0.05:
        old, new = rng.choice((("NET30", "NET90"), ("NET30", "NET60"), ("COD", "NET60")))
        stream.change(name, "payment_terms", old, new, rng.uniform(30, 300), "payment_terms_change")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    stream = Stream(args.seed)
    for n in range(args.customers):
        _customer(stream, f"C{n:05d}")
    stream.events.sort(key=lambda item: item[0])
    detector = AnomalyDetector()
    flagged: dict[str, set[str]] = defaultdict(set)
    for _, event in stream.events:
        for flag in detector.observe(event):
            flagged[flag.rule].add(flag.event_id)
    expected = Counter(stream.labels.values())
    results: dict[str, dict[str, float | int]] = {}
    for rule in RULES:
        truth = {event_id for event_id, label in stream.labels.items() if label == rule}
        hits = len(flagged[rule] & truth)
        precision = hits / len(flagged[rule]) if flagged[rule] else 1.0
        recall = hits / len(truth) if truth else 1.0
        results[rule] = {"precision": round(precision, 4), "recall": round(recall, 4), "flagged": len(flagged[rule]),
                         "injected": expected[rule]}
        print(f"{rule:22s} precision {precision:.3f}  recall {recall:.3f}  ({len(flagged[rule])} flagged, "
              f"{expected[rule]} injected)")
    ok = all(r["precision"] >= 0.9 and r["recall"] >= 0.8 for r in results.values())
    print(json.dumps({"events": len(stream.events), "customers": args.customers, "seed": args.seed, "rules": results,
                      "goal": "precision >= 0.9 at recall >= 0.8", "met": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
