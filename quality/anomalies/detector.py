"""The rules, with the little state they need: each customer's recent amounts per kind, an
overall sample per kind, each customer's recent payments. Bounded, so a long stream costs a
fixed memory per customer.

Rules (names as they appear in flags):

- ``amount_outlier``: log(amount) with modified |z| > ``z_limit`` against the customer's own last
  amounts of that kind (from ``min_history`` of them), else > ``overall_z_limit`` against
  everyone's (whose spread is mostly the spread between customers: a new large customer is not
  an outlier). Payments only
  upwards: a payment below the usual is a partial payment, which receivables see every day.
- ``duplicate_payment``: a payment of the same customer and the same amount (to the cent) within
  ``duplicate_window`` of an earlier one.
- ``non_positive_total``: an invoice or order total (or a payment) of zero or less.
- ``credit_limit_jump``: a new credit limit at least ``jump_factor`` times the old one and
  ``jump_floor`` more.
- ``payment_terms_change``: terms lengthened by ``terms_days`` days or more (NET30 → NET60, or
  COD/PREPAID → any credit terms).
"""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Deque, Sequence

from quality.anomalies.events import CustomerChange, Flag, MoneyEvent
from quality.anomalies.robust import modified_z

__all__ = ["Settings", "AnomalyDetector", "terms_days"]


@dataclass(frozen=True)
class Settings:
    z_limit: float = 4.0
    overall_z_limit: float = 5.0
    min_history: int = 6
    history: int = 50
    overall_sample: int = 2000
    duplicate_window: timedelta = timedelta(days=3)
    jump_factor: float = 3.0
    jump_floor: float = 5000.0
    terms_days: int = 30


def terms_days(terms: object) -> int | None:
    """Days of credit a payment-terms code gives (NET30 → 30, COD/PREPAID/DUE_ON_RECEIPT → 0)."""
    text = str(terms or "").upper()
    if text in ("COD", "PREPAID", "DUE_ON_RECEIPT"):
        return 0
    found = re.fullmatch(r"NET\s*(\d+)", text)
    return int(found.group(1)) if found else None


class AnomalyDetector:
    """Feed events in stream order; each call returns the flags the event raised."""

    def __init__(self, settings: Settings = Settings(), seed: int = 0) -> None:
        self.settings = settings
        self._own: dict[tuple[str, str], Deque[float]] = defaultdict(lambda: deque(maxlen=settings.history))
        self._overall: dict[str, list[float]] = defaultdict(list)
        self._seen_overall: dict[str, int] = defaultdict(int)
        self._payments: dict[str, Deque[MoneyEvent]] = defaultdict(lambda: deque(maxlen=settings.history))
        self._random = random.Random(seed)

    # -- money -------------------------------------------------------------------------------
    def money(self, event: MoneyEvent) -> list[Flag]:
        flags: list[Flag] = []
        if event.amount <= 0:
            flags.append(Flag("non_positive_total", event.id, event.customer, 1.0,
                              {"kind": event.kind, "amount": str(event.amount)}))
            return flags  # a non-positive amount says nothing about the size of the next ones
        outlier = self._outlier(event)
        if outlier is not None:
            flags.append(outlier)
        if event.kind == "payment":
            duplicate = self._duplicate(event)
            if duplicate is not None:
                flags.append(duplicate)
            self._payments[event.customer].append(event)
        if outlier is None or outlier.evidence["basis"] == "overall":
            # an amount flagged against the customer's own history does not join it; one flagged
            # against everyone's does, or a customer far from the crowd would be flagged forever
            self._remember(event)
        return flags

    def _outlier(self, event: MoneyEvent) -> Flag | None:
        value = math.log(float(event.amount))
        own = self._own[(event.customer, event.kind)]
        if len(own) >= self.settings.min_history:
            basis, history = "customer", list(own)
        elif len(self._overall[event.kind]) >= self.settings.min_history:
            basis, history = "overall", self._overall[event.kind]
        else:
            return None
        z, centre, spread = modified_z(value, history, floor=0.2)
        limit = self.settings.z_limit if basis == "customer" else self.settings.overall_z_limit
        if abs(z) <= limit or (event.kind == "payment" and z < 0):
            return None
        return Flag("amount_outlier", event.id, event.customer, abs(z) / limit,
                    {"kind": event.kind, "amount": str(event.amount), "basis": basis, "z": round(z, 2),
                     "median": round(math.exp(centre), 2), "mad_log": round(spread, 4), "history": len(history)})

    def _duplicate(self, event: MoneyEvent) -> Flag | None:
        for earlier in reversed(self._payments[event.customer]):
            if event.at - earlier.at > self.settings.duplicate_window:
                break
            if earlier.amount == event.amount and earlier.id != event.id:
                hours = (event.at - earlier.at).total_seconds() / 3600
                return Flag("duplicate_payment", event.id, event.customer,
                            1.0 + (1 - hours / (self.settings.duplicate_window.total_seconds() / 3600)),
                            {"amount": str(event.amount), "earlier": earlier.id, "hours_apart": round(hours, 2)})
        return None

    def _remember(self, event: MoneyEvent) -> None:
        value = math.log(float(event.amount))
        self._own[(event.customer, event.kind)].append(value)
        sample = self._overall[event.kind]
        self._seen_overall[event.kind] += 1
        if len(sample) < self.settings.overall_sample:
            sample.append(value)
        else:  # reservoir sampling: every amount seen has the same chance to be in the sample
            slot = self._random.randrange(self._seen_overall[event.kind])
            if slot < len(sample):
                sample[slot] = value

    # -- customer changes --------------------------------------------------------------------
    def change(self, change: CustomerChange) -> list[Flag]:
        if change.field == "credit_limit":
            return self._credit_jump(change)
        before, after = terms_days(change.old), terms_days(change.new)
        if before is None or after is None or after - before < self.settings.terms_days:
            return []
        return [Flag("payment_terms_change", change.id, change.customer, (after - before) / self.settings.terms_days,
                     {"old": change.old, "new": change.new})]

    def _credit_jump(self, change: CustomerChange) -> list[Flag]:
        try:
            old, new = float(Decimal(str(change.old or 0))), float(Decimal(str(change.new)))
        except (ArithmeticError, ValueError):
            return []
        if new - old < self.settings.jump_floor or new < self.settings.jump_factor * max(old, 1.0):
            return []
        return [Flag("credit_limit_jump", change.id, change.customer, new / (self.settings.jump_factor * max(old, 1.0)),
                     {"old": change.old, "new": change.new})]

    def judge(self, event: MoneyEvent, earlier: Sequence[MoneyEvent]) -> list[Flag]:
        """The flags of ``event`` against the customer's ``earlier`` money events as a stream keeps
        them (a table row: they survive restarts and move with the customer's partition), and this
        detector's overall sample; only the overall sample learns from it."""
        own = [e for e in earlier if e.kind == event.kind and e.amount > 0 and e.id != event.id]
        own = sorted(own, key=lambda e: e.at)[-self.settings.history:]
        self._own[(event.customer, event.kind)] = deque((math.log(float(e.amount)) for e in own),
                                                        maxlen=self.settings.history)
        self._payments[event.customer] = deque(sorted((e for e in earlier if e.kind == "payment" and e.id != event.id),
                                                      key=lambda e: e.at)[-self.settings.history:],
                                               maxlen=self.settings.history)
        try:
            return self.money(event)
        finally:  # the customer's own history lives in the caller's row, not here
            self._own.pop((event.customer, event.kind), None)
            self._payments.pop(event.customer, None)

    def observe(self, event: MoneyEvent | CustomerChange) -> list[Flag]:
        return self.money(event) if isinstance(event, MoneyEvent) else self.change(event)

