"""What one eCommerce platform must provide the shop connector (docs/adr/0033).

The connector (receiver, reconciliation, positions, events) is the same for every platform; an
adapter says how the platform signs and names its webhooks, how its payloads map to
:class:`~connectors.shop.records.ShopRecord`, and how to read records changed since a time.
``connectors/shop/shopify.py`` is the first; a WooCommerce adapter (REST v3, signature in
``X-WC-Webhook-Signature``) would be a second module of this shape.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Mapping

from connectors.shop.records import ShopRecord

__all__ = ["Delivery", "Page", "Platform", "Refused", "NotTheResource"]


class Refused(Exception):
    """An unauthenticated delivery: ``reason`` is ``missing_headers``, ``bad_signature`` or
    ``other_shop`` (signed, but for a shop other than ours)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotTheResource(ValueError):
    """A signed body that is not the resource its topic names; the message quotes no value."""


@dataclass(frozen=True)
class Delivery:
    #: the platform's id of this delivery, the same on its retries
    webhook_id: str
    topic: str
    #: the neutral entity the topic carries; None for a topic the connector does not read
    entity: str | None


@dataclass(frozen=True)
class Page:
    records: list[ShopRecord]
    #: where the next page starts; None when this was the last
    cursor: str | None


class Platform(abc.ABC):
    name: str

    @abc.abstractmethod
    def verify(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        """The delivery a signed request carries, or :class:`Refused`; compare in constant time."""

    @abc.abstractmethod
    def webhook_records(self, delivery: Delivery, payload: Any) -> list[ShopRecord]:
        """The records a webhook body carries, or :class:`NotTheResource`."""

    @abc.abstractmethod
    async def changed_since(self, entity: str, since: str | None, cursor: str | None, limit: int) -> Page:
        """One page of ``entity`` records updated after ``since`` (None: all), oldest first."""

    async def aclose(self) -> None:
        """Release connections."""
