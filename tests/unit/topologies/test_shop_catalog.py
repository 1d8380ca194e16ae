"""The shop catalogue record: TIMS's price reaches every variant with the SKU, once per
difference; our write coming back writes nothing; a shop edit is written back over; older TIMS
events are not taken (docs/adr/0035)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from connectors.envelope import SourceEvent
from topologies.money import MoneyError
from topologies.shop_catalog.catalog import (
    DEFAULT_MAPPING_DIR, apply_item, apply_variant, load_mapping, new_row, variants_of,
)

MAPPING = load_mapping(DEFAULT_MAPPING_DIR)
_n = itertools.count(1)


def item(price: Any, version: int) -> SourceEvent:
    return SourceEvent(event_id=f"i{next(_n)}", source="tims", entity="item", record_id="IT1", change_type="UPDATE",
                       fields={"item_id": "IT1", "sku": "AR-125", "unit_price": price, "version": version},
                       full_state=True, commit_timestamp=1000 + version)


def variant(price: str, updated: str, variant_id: str = "gid://shopify/ProductVariant/11") -> dict[str, Any]:
    return {"sku": "AR-125", "variant_id": variant_id, "product_id": "gid://shopify/Product/10", "price": price,
            "updated_at": updated}


def test_the_tims_price_reaches_each_variant_once_and_our_echo_writes_nothing() -> None:
    row = new_row("AR-125")
    assert apply_variant(row, variant("61.50", "2026-12-01T10:00:00Z"), MAPPING).commands == []  # no TIMS price yet
    (write,) = apply_item(row, item(62.245, 1), MAPPING).commands
    assert (write.system, write.object, write.external_id_field, write.external_id) == (
        "shop", "variant", "id", "gid://shopify/ProductVariant/11")
    assert write.fields == {"product_id": "gid://shopify/Product/10", "price": "62.25"}  # half up, to the cent
    assert apply_variant(row, variant("61.50", "2026-12-01T10:00:00Z"), MAPPING).duplicate
    assert apply_item(row, item(62.245, 1), MAPPING).stale
    assert apply_variant(row, variant("62.25", "2026-12-01T10:01:00Z"), MAPPING).commands == []  # our own write back
    (back,) = apply_variant(row, variant("70.00", "2026-12-01T10:02:00Z"), MAPPING).commands  # edited in the shop
    assert back.fields["price"] == "62.25" and back.version > write.version
    assert apply_variant(row, variant("61.50", "2026-12-01T09:00:00Z"), MAPPING).stale
    two = apply_variant(row, variant("1.00", "2026-12-01T10:03:00Z", "gid://shopify/ProductVariant/12"), MAPPING)
    assert [c.external_id for c in two.commands] == ["gid://shopify/ProductVariant/12"]


def test_variants_without_sku_are_not_ours_and_a_bad_price_raises() -> None:
    event = SourceEvent(event_id="p1", source="shop", entity="product", record_id="gid://shopify/Product/10",
                        change_type="UPDATE", full_state=True, commit_timestamp=1, fields={
                            "updated_at": "2026-12-01T10:00:00Z", "variants": [
                                {"id": "gid://shopify/ProductVariant/11", "sku": "AR-125", "price": "61.50"},
                                {"id": "gid://shopify/ProductVariant/13", "sku": None, "price": "5.00"}]})
    assert [v["variant_id"] for v in variants_of(event)] == ["gid://shopify/ProductVariant/11"]
    with pytest.raises(MoneyError):
        apply_item(new_row("AR-125"), item("n/a", 1), MAPPING)
