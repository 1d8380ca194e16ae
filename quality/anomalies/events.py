"""What the rules read (money events, customer changes) and what they say (a flag)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

__all__ = ["MoneyEvent", "CustomerChange", "Flag"]

MoneyKind = Literal["invoice", "payment", "order"]


@dataclass(frozen=True)
class MoneyEvent:
    """An invoice, payment or order total of one customer at one time."""

    id: str
    kind: MoneyKind
    customer: str
    amount: Decimal
    at: datetime


@dataclass(frozen=True)
class CustomerChange:
    """A change of a customer's credit limit or payment terms (old and new values)."""

    id: str
    customer: str
    field: Literal["credit_limit", "payment_terms"]
    old: Any
    new: Any
    at: datetime


@dataclass(frozen=True)
class Flag:
    """One rule's finding on one event: ``score`` says how far past its threshold (≥ 1 flags)."""

    rule: str
    event_id: str
    customer: str
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)
