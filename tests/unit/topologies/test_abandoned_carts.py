"""The cart record: a checkout without an order after the wait reaches the prospect and the nurture
list; the order clears both; duplicates, old states and carts older than the order change nothing
(docs/adr/0035)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.envelope import SourceEvent
from topologies.abandoned_carts.cart import (
    DEFAULT_MAPPING_DIR, CartMapping, apply_checkout, apply_order, apply_prospect, due, load_mapping, new_row,
)

MAPPING = load_mapping(DEFAULT_MAPPING_DIR).model_copy(update={"nurture_list_id": 2001, "abandon_after_seconds": 60})
EMAIL = "ada@example.com"
T0 = "2026-12-01T10:00:00Z"
T0_MS = 1_796_119_200_000
_n = itertools.count(1)


def checkout(updated: str = T0, checkout_id: str = "gid://shopify/AbandonedCheckout/5", **fields: Any) -> SourceEvent:
    record = {"id": checkout_id, "email": EMAIL, "updated_at": updated, "created_at": T0, "currency": "USD",
              "total_price": "168.00", "recovery_url": "https://shop.example/recover?key=abc", "completed_at": None,
              "line_items": [{"sku": "AR-125", "title": "Argon 125", "quantity": 2, "price": "61.50"},
                             {"sku": "HE-80", "title": None, "quantity": 1, "price": "45.00"}], **fields}
    return SourceEvent(event_id=f"c{next(_n)}", source="shop", entity="checkout", record_id=checkout_id,
                       change_type="UPDATE", fields=record, full_state=True, commit_timestamp=T0_MS)


def order(created: str) -> SourceEvent:
    return SourceEvent(event_id=f"o{next(_n)}", source="shop", entity="order", record_id="gid://shopify/Order/9",
                       change_type="CREATE", fields={"email": EMAIL, "created_at": created, "updated_at": created},
                       full_state=True, commit_timestamp=T0_MS)


def prospect(prospect_id: int) -> SourceEvent:
    return SourceEvent(event_id=f"p{next(_n)}", source="pardot", entity="prospect", record_id=str(prospect_id),
                       change_type="UPDATE", fields={"id": prospect_id, "email": EMAIL}, commit_timestamp=T0_MS)


def test_an_abandoned_cart_reaches_the_prospect_and_the_list_and_the_order_clears_both() -> None:
    row = new_row(EMAIL)
    assert apply_checkout(row, checkout(), MAPPING).due_at == T0_MS + 60_000
    assert due(row, MAPPING, T0_MS + 59_000).commands == []  # not yet
    (fields,) = due(row, MAPPING, T0_MS + 60_000).commands
    assert (fields.system, fields.object, fields.external_id_field, fields.external_id) == (
        "pardot", "prospect", "email", EMAIL)
    assert fields.fields == {"Abandoned_Cart_Value__c": 168, "Abandoned_Cart_Items__c": "2 × Argon 125 (AR-125); 1 × HE-80",
                             "Abandoned_Cart_URL__c": "https://shop.example/recover?key=abc",
                             "Abandoned_Cart_At__c": T0}
    assert due(row, MAPPING, T0_MS + 120_000).commands == []  # once
    (join,) = apply_prospect(row, prospect(77), MAPPING).commands  # the prospect's id: it joins the list
    assert (join.object, join.operation, join.external_id) == ("list_membership", "upsert", "2001:77")
    assert apply_prospect(row, prospect(77), MAPPING).commands == []
    clear, leave = apply_order(row, order("2026-12-01T10:30:00Z"), MAPPING).commands
    assert clear.fields == dict.fromkeys(fields.fields) and clear.version > join.version
    assert (leave.object, leave.operation, leave.external_id) == ("list_membership", "delete", "2001:77")
    assert row["state"] == "recovered" and row["cart"] is None


def test_an_order_in_time_means_no_nurture_and_a_known_prospect_joins_at_once() -> None:
    row = new_row(EMAIL)
    apply_checkout(row, checkout(), MAPPING)
    assert apply_order(row, order("2026-12-01T10:00:30Z"), MAPPING).commands == []
    assert due(row, MAPPING, T0_MS + 600_000).commands == [] and row["state"] == "ordered"
    # the same checkout's older state or a cart from before the order: still nothing
    assert apply_checkout(row, checkout("2026-12-01T09:59:00Z", "gid://shopify/AbandonedCheckout/4"),
                          MAPPING).due_at is None
    later = new_row(EMAIL)
    apply_prospect(later, prospect(78), MAPPING)
    apply_checkout(later, checkout(), MAPPING)
    assert [c.object for c in due(later, MAPPING, T0_MS + 60_000).commands] == ["prospect", "list_membership"]


def test_duplicates_are_dropped_and_a_completed_checkout_is_an_order() -> None:
    row = new_row(EMAIL)
    first = checkout()
    apply_checkout(row, first, MAPPING)
    assert apply_checkout(row, first, MAPPING).duplicate
    due(row, MAPPING, T0_MS + 60_000)
    done = apply_checkout(row, checkout("2026-12-01T10:20:00Z", completed_at="2026-12-01T10:20:00Z"), MAPPING)
    assert [c.object for c in done.commands] == ["prospect"] and row["state"] == "recovered"


def test_a_cart_that_changes_moves_its_deadline() -> None:
    row = new_row(EMAIL)
    apply_checkout(row, checkout(), MAPPING)
    assert apply_checkout(row, checkout("2026-12-01T10:00:50Z"), MAPPING).due_at == T0_MS + 110_000
    assert due(row, MAPPING, T0_MS + 60_000).due_at == T0_MS + 110_000


def test_the_mapping_is_checked() -> None:
    with pytest.raises(ValidationError):
        CartMapping(currency="XXY")
    with pytest.raises(ValidationError):
        CartMapping(nurture_list_id=-1)


def test_a_second_cart_after_nurture_is_written_again_and_its_order_still_clears() -> None:
    row = new_row(EMAIL)
    apply_checkout(row, checkout(), MAPPING)
    due(row, MAPPING, T0_MS + 60_000)
    apply_prospect(row, prospect(77), MAPPING)
    second = apply_checkout(row, checkout("2026-12-01T11:00:00Z", "gid://shopify/AbandonedCheckout/6"), MAPPING)
    assert second.due_at == T0_MS + 3_660_000
    assert [c.object for c in due(row, MAPPING, T0_MS + 3_660_000).commands] == ["prospect"]  # already a member
    assert [(c.object, c.operation) for c in apply_order(row, order("2026-12-01T11:30:00Z"), MAPPING).commands] == [
        ("prospect", "upsert"), ("list_membership", "delete")]
