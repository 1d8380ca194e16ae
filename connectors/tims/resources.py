"""The TIMS collections the contract (docs/tims-openapi.yaml) defines: their URL segment, entity
name (topics, change feed) and id field. Its own module so that the config (which checks
configured entities) and the client (which calls them) share it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Resource", "RESOURCES", "resource_for"]


@dataclass(frozen=True)
class Resource:
    """One TIMS collection: its URL segment, its entity name (topics, change feed) and id field."""

    name: str
    entity: str
    id_field: str


RESOURCES: dict[str, Resource] = {r.entity: r for r in (
    Resource("customers", "customer", "customer_id"),
    Resource("sales_orders", "sales_order", "sales_order_id"),
    Resource("invoices", "invoice", "invoice_id"),
    Resource("payments", "payment", "payment_id"),
    Resource("items", "item", "item_id"),
    Resource("segments", "segment", "segment_id"),
    Resource("stock_levels", "stock_level", "stock_level_id"),
)}


def resource_for(entity: str) -> Resource:
    try:
        return RESOURCES[entity]
    except KeyError:
        raise ValueError(f"unknown TIMS entity {entity!r}; known: {', '.join(RESOURCES)}") from None
