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
    DEFAULT_MAPPING_DIR, CatalogMapping, PromotionsMapping, apply_item, apply_stock, apply_variant, load_mapping,
    new_row, unmapped_location, variants_of,
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


def level(location: str, available: int, version: int, at: int | None = None, change: str = "UPDATE") -> SourceEvent:
    return SourceEvent(event_id=f"s{next(_n)}", source="tims", entity="stock_level", record_id=f"STK-{location}",
                       change_type=change, full_state=True, commit_timestamp=at if at is not None else 2000 + version,
                       fields={"sku": "AR-125", "location_id": location, "available": available, "version": version})


def stocked(updated: str = "2026-12-01T10:00:00Z", item: str = "gid://shopify/InventoryItem/21") -> dict[str, Any]:
    return {**variant("62.25", updated), "inventory_item_id": item, "handle": "argon-cylinders"}


def test_tims_stock_reaches_each_mapped_location_once_and_never_backwards() -> None:
    row = new_row("AR-125")
    assert apply_stock(row, level("MAIN", 9, 1), MAPPING).commands == []  # held: no shop variant sells it yet
    (first,) = apply_variant(row, stocked(), MAPPING).commands
    assert (first.system, first.object, first.external_id_field, first.external_id, first.fields) == (
        "shop", "inventory", "level", "gid://shopify/InventoryItem/21@gid://shopify/Location/1", {"quantity": 9})
    (east,) = apply_stock(row, level("EAST", 4, 1), MAPPING).commands
    assert east.external_id.endswith("@gid://shopify/Location/2") and east.fields == {"quantity": 4}
    (main,) = apply_stock(row, level("MAIN", 7, 2), MAPPING).commands
    assert main.fields == {"quantity": 7} and main.version > east.version > first.version
    assert apply_stock(row, level("MAIN", 9, 1, at=5000), MAPPING).stale  # older version, later arrival
    assert apply_stock(row, level("MAIN", 9, 1), MAPPING).stale
    assert apply_variant(row, stocked("2026-12-01T10:05:00Z"), MAPPING).commands == []  # nothing changed for stock
    moved = apply_variant(row, stocked("2026-12-01T10:06:00Z", "gid://shopify/InventoryItem/99"), MAPPING).commands
    assert sorted(c.fields["quantity"] for c in moved) == [4, 7]  # a new inventory item gets every level
    (gone,) = apply_stock(row, level("EAST", 4, 2, change="DELETE"), MAPPING).commands
    assert gone.fields == {"quantity": 0}


def test_a_stock_level_of_an_unnamed_location_is_refused_with_the_reason_and_null_means_offline() -> None:
    mapping = MAPPING.model_copy(update={"locations": {"MAIN": "gid://shopify/Location/1", "PLANT": None}})
    assert "'WEST' has no shop location" in (unmapped_location(level("WEST", 1, 1), mapping) or "")
    assert unmapped_location(level("PLANT", 1, 1), mapping) is None
    row = new_row("AR-125")
    apply_variant(row, stocked(), mapping)
    assert apply_stock(row, level("PLANT", 40, 1), mapping).commands == []  # not sold online: never written
    with pytest.raises(ValueError):
        CatalogMapping(locations={"MAIN": "gid://shopify/Location/1", "EAST": "gid://shopify/Location/1"})


def promo_item(promote: bool, version: int) -> SourceEvent:
    return SourceEvent(event_id=f"i{next(_n)}", source="tims", entity="item", record_id="IT1", change_type="UPDATE",
                       fields={"item_id": "IT1", "sku": "AR-125", "unit_price": 62.25, "version": version,
                               "promote": promote}, full_state=True, commit_timestamp=1000 + version)


def test_a_promoted_item_becomes_one_custom_redirect_to_its_product_page_and_retires_to_a_folder() -> None:
    promotions = PromotionsMapping(campaign_id=7, folder_id=11, retired_folder_id=12)
    mapping = MAPPING.model_copy(update={"promotions": promotions, "write_stock": False})
    row = new_row("AR-125")
    assert apply_item(row, promo_item(True, 1), mapping).commands == []  # held: no product page yet
    (redirect,) = [c for c in apply_variant(row, stocked(), mapping).commands if c.system == "pardot"]
    assert (redirect.object, redirect.external_id_field, redirect.external_id) == (
        "custom_redirect", "name", "Shop product AR-125")
    assert redirect.fields == {"destinationUrl": "https://connect-sandbox.myshopify.com/products/argon-cylinders",
                               "campaignId": 7, "folderId": 11}
    assert apply_item(row, promo_item(True, 2), mapping).commands == []  # nothing new
    (retired,) = apply_item(row, promo_item(False, 3), mapping).commands
    assert retired.fields["folderId"] == 12
    assert apply_item(row, promo_item(False, 4), mapping).commands == []


def test_never_promoted_items_and_promotions_off_write_nothing_to_pardot() -> None:
    row = new_row("AR-125")
    apply_variant(row, stocked(), MAPPING)
    assert apply_item(row, promo_item(True, 1), MAPPING).commands == []  # the shipped mapping: no campaign
    mapping = MAPPING.model_copy(update={"promotions": PromotionsMapping(campaign_id=7)})
    other = new_row("AR-125")
    apply_variant(other, stocked(), mapping)
    assert [c for c in apply_item(other, promo_item(False, 1), mapping).commands if c.system == "pardot"] == []
    with pytest.raises(ValueError):
        PromotionsMapping(campaign_id=7, name="Shop product")
    with pytest.raises(ValueError):
        PromotionsMapping(campaign_id=7, retired_folder_id=12)
