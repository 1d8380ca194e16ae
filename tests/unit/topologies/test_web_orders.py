"""The web order record: a shop order becomes one TIMS sales order once its buyer and SKUs are
linked; bad lines are held with the reason; TIMS shipping fulfils the shop order once, forward
only (docs/adr/0035)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.envelope import SourceEvent
from topologies.web_orders.order import (
    DEFAULT_MAPPING_DIR, WebOrderMapping, apply_shop, apply_tims, load_mapping, new_row, order_id_of, recheck, row_key,
)

MAPPING = load_mapping(DEFAULT_MAPPING_DIR)
ORDER = "gid://shopify/Order/1001"
KEY = "shop:shopify:Order:1001"
NOW = 1_700_000_000_000
_n = itertools.count(1)
LINKED = {"email:ada@example.com": "C000001", "sku:AR-125": "IT1", "sku:HE-80": "IT2"}


def shop_order(updated: str = "2026-12-01T10:00:00Z", **fields: Any) -> SourceEvent:
    record = {"id": ORDER, "name": "#1001", "email": " Ada@Example.com", "currency": "USD",
              "created_at": "2026-12-01T10:00:00Z", "updated_at": updated, "cancelled_at": None,
              "fulfillment_status": "unfulfilled", "customer_id": "gid://shopify/Customer/7",
              "line_items": [{"sku": "AR-125", "title": "Argon 125", "quantity": 2, "price": "61.50"},
                             {"sku": "HE-80", "title": "Helium 80", "quantity": 1, "price": "45.005"}], **fields}
    return SourceEvent(event_id=f"shop:{updated}:{next(_n)}", source="shop", entity="order", record_id=ORDER,
                       change_type="UPDATE", fields=record, full_state=True, commit_timestamp=NOW)


def tims_order(status: str, version: int, tracking: str | None = None) -> SourceEvent:
    record = {"sales_order_id": "SO000042", "external_id": KEY, "status": status, "version": version,
              "tracking_number": tracking, "ship_date": "2026-12-03" if tracking else None}
    return SourceEvent(event_id=f"so{next(_n)}", source="tims", entity="sales_order", record_id="SO000042",
                       change_type="UPDATE", fields=record, full_state=True, commit_timestamp=NOW + version)


def test_keys_are_tims_external_ids_and_come_back() -> None:
    assert row_key(ORDER) == KEY and order_id_of(KEY) == ORDER


def test_an_order_waits_for_its_buyer_and_skus_then_becomes_one_tims_order() -> None:
    row, links = new_row(KEY), {"sku:AR-125": "IT1"}
    first = apply_shop(row, shop_order(), MAPPING, links, NOW)
    assert first.commands == [] and first.wait_for == [
        "customer:shop:shopify:Customer:7", "email:ada@example.com", "sku:HE-80"]
    links.update(LINKED)
    (command,) = recheck(row, MAPPING, links, NOW + 1000).commands
    assert (command.system, command.object, command.external_id_field, command.external_id) == (
        "tims", "sales_order", "external_id", KEY)
    assert command.fields == {"customer_id": "C000001", "currency": "USD", "order_date": "2026-12-01",
                              "po_number": "#1001", "lines": [
                                  {"line_no": 1, "item_id": "IT1", "quantity": 2, "unit_price": 61.5,
                                   "description": "Argon 125"},
                                  {"line_no": 2, "item_id": "IT2", "quantity": 1, "unit_price": 45.005,
                                   "description": "Helium 80"}]}
    assert row["waiting"] is None
    # the same order again (webhook duplicate), a newer edit, a recheck: never a second sales order
    assert apply_shop(row, shop_order(), MAPPING, links, NOW).commands == []
    assert apply_shop(row, shop_order("2026-12-01T11:00:00Z"), MAPPING, links, NOW).commands == []
    assert recheck(row, MAPPING, links, NOW).commands == []


def test_duplicates_and_older_states_are_not_taken() -> None:
    row = new_row(KEY)
    newer, older = shop_order("2026-12-01T12:00:00Z"), shop_order("2026-12-01T09:00:00Z")
    apply_shop(row, newer, MAPPING, {}, NOW)
    assert apply_shop(row, newer, MAPPING, {}, NOW).duplicate
    assert apply_shop(row, older, MAPPING, {}, NOW).stale


def test_an_unknown_sku_is_held_with_the_reason_after_its_grace_and_a_late_item_releases_it() -> None:
    row, links = new_row(KEY), {k: v for k, v in LINKED.items() if k != "sku:HE-80"}
    assert apply_shop(row, shop_order(), MAPPING, links, NOW).wait_for == ["sku:HE-80"]
    final = recheck(row, MAPPING, links, NOW, final=True)
    assert final.rejected == "unknown SKU HE-80: no TIMS item has it" and final.wait_for == ["sku:HE-80"]
    assert recheck(row, MAPPING, links, NOW, final=True).rejected is None  # quarantined once
    links["sku:HE-80"] = "IT2"
    assert len(recheck(row, MAPPING, links, NOW).commands) == 1


@pytest.mark.parametrize(("lines", "reason"), [
    ([{"sku": None, "title": "Gift card", "quantity": 1, "price": "10"}], "line 1 (Gift card) has no SKU"),
    ([{"sku": "AR-125", "title": "x", "quantity": 0, "price": "10"}], "line 1 quantity is not positive"),
    ([{"sku": "AR-125", "title": "x", "quantity": 1, "price": "ten"}], "line 1 price: 'ten' is not a number"),
    ([], "an order without lines"),
])
def test_bad_lines_hold_the_order_at_once(lines: list[dict[str, Any]], reason: str) -> None:
    decision = apply_shop(new_row(KEY), shop_order(line_items=lines), MAPPING, LINKED, NOW)
    assert decision.commands == [] and decision.rejected is not None and decision.rejected.startswith(reason)


def test_a_cancelled_order_is_not_sent() -> None:
    decision = apply_shop(new_row(KEY), shop_order(cancelled_at="2026-12-01T10:05:00Z"), MAPPING, LINKED, NOW)
    assert decision.commands == [] and decision.rejected is None


def test_tims_shipping_fulfils_the_shop_order_once_and_never_backwards() -> None:
    row = new_row(KEY)
    apply_shop(row, shop_order(), MAPPING, LINKED, NOW)
    assert apply_tims(row, tims_order("open", 1), MAPPING, LINKED, NOW).commands == []
    assert apply_tims(row, tims_order("picked", 2), MAPPING, LINKED, NOW).commands == []
    (fulfil,) = apply_tims(row, tims_order("shipped", 3, "1Z999"), MAPPING, LINKED, NOW).commands
    assert (fulfil.system, fulfil.object, fulfil.external_id_field, fulfil.external_id) == (
        "shop", "fulfillment", "order_id", ORDER)
    assert fulfil.fields == {"tracking_number": "1Z999", "notify_customer": True}
    assert apply_tims(row, tims_order("picked", 4), MAPPING, LINKED, NOW).stale  # backwards: not taken
    assert apply_tims(row, tims_order("shipped", 2), MAPPING, LINKED, NOW).stale  # older version
    assert apply_tims(row, tims_order("invoiced", 5, "1Z999"), MAPPING, LINKED, NOW).commands == []


def test_a_tims_event_first_still_finds_its_shop_order_and_a_shop_fulfilled_order_is_left_alone() -> None:
    row = new_row(KEY)
    (fulfil,) = apply_tims(row, tims_order("shipped", 3, "1Z1"), MAPPING, LINKED, NOW).commands
    assert fulfil.external_id == ORDER
    assert apply_shop(row, shop_order(), MAPPING, LINKED, NOW).commands == []  # TIMS has it: not sent again
    other = new_row(KEY)
    apply_shop(other, shop_order(fulfillment_status="fulfilled"), MAPPING, LINKED, NOW)
    assert [c.object for c in apply_tims(other, tims_order("shipped", 3, "1Z1"), MAPPING, LINKED, NOW).commands] == []


def test_the_mapping_is_checked() -> None:
    with pytest.raises(ValidationError):
        WebOrderMapping(fulfil_from="teleported")
    with pytest.raises(ValidationError):
        WebOrderMapping(currency="XXY")
