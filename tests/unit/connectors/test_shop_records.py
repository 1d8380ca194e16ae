"""The Shopify adapter's mapping: a webhook body and the API's node for the same state give the
same neutral record (so the same event id), and the queries the source sends are valid against
the simulator's schema (graphql-core validates them) and fit the cost bucket."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from connectors.shop.config import ShopConfig
from connectors.shop.platform import Delivery, NotTheResource, Refused
from connectors.shop.records import RECONCILED, utc
from connectors.shop.shopify import QUERIES, Shopify, _document, from_node, from_webhook, sign
from sandbox.shop.admin_api import run_request
from sandbox.shop.cost import Bucket
from sandbox.shop.store import ShopStore

KIND = {"order": "Order", "checkout": "AbandonedCheckout", "product": "Product", "customer": "Customer"}


def filled_store() -> ShopStore:
    store = ShopStore()
    customer = store.create_customer(email="ada@example.com", first_name="Ada", last_name="Lovelace",
                                     phone="+44 20 7946 0018")
    store.create_product(title="Argon 125 cf", variants=[{"sku": "AR-125", "price": "61.5", "available": 9},
                                                         {"sku": "AR-080", "price": "44", "available": 3}])
    store.create_order(email="ada@example.com", customer_id=customer["id"],
                       line_items=[{"sku": "AR-125", "quantity": 2, "price": "61.50"}])
    store.create_checkout(email="ada@example.com", customer_id=customer["id"],
                          line_items=[{"sku": "AR-080", "quantity": 1, "price": "44.00"}])
    return store


@pytest.mark.parametrize("entity", RECONCILED)
def test_a_webhook_and_the_api_read_the_same_record(entity: str) -> None:
    store = filled_store()
    [record] = store.all(KIND[entity])
    field = QUERIES[entity][0]
    answer = run_request(store, Bucket(), {"query": _document(entity), "variables": {"first": 5}})
    assert "errors" not in answer, answer
    [node] = answer["data"][field]["nodes"]
    from_api = from_node(entity, node)
    from_hook = from_webhook(entity, store.rest(KIND[entity], record))
    assert from_api == from_hook
    assert from_api.event_id == from_hook.event_id and from_api.event_id.startswith(f"shop:{entity}:{record['id']}:")


def test_every_reconciliation_page_fits_the_bucket() -> None:
    store = filled_store()
    for entity in RECONCILED:
        answer = run_request(store, Bucket(), {"query": _document(entity), "variables": {"first": 10}})
        assert answer["extensions"]["cost"]["requestedQueryCost"] <= 1000, entity


def test_neutral_fields_are_utc_lower_case_and_global_ids() -> None:
    store = filled_store()
    [order] = store.all("Order")
    record = from_webhook("order", store.rest("Order", order))
    assert record.updated_at.endswith("Z") and record.fields["fulfillment_status"] == "unfulfilled"
    assert record.fields["financial_status"] == "paid" and record.fields["customer_id"].startswith("gid://shopify/Customer/")
    assert record.fields["line_items"] == [{"sku": "AR-125", "title": "AR-125", "quantity": 2, "price": "61.50"}]
    assert utc("2026-01-01T09:00:00-05:00") == "2026-01-01T14:00:00Z"


def test_two_changes_in_one_second_are_two_events() -> None:
    store = filled_store()
    [customer] = store.all("Customer")
    before = from_webhook("customer", store.rest("Customer", customer))
    customer["firstName"] = "Augusta"
    after = from_webhook("customer", store.rest("Customer", customer))
    assert before.updated_at == after.updated_at and before.event_id != after.event_id


def test_inventory_levels_map_to_global_ids() -> None:
    record = from_webhook("inventory_level", {"inventory_item_id": 7, "location_id": 1, "available": 4,
                                              "updated_at": "2026-01-01T09:00:00-05:00"})
    assert record.id == "gid://shopify/InventoryLevel/1?inventory_item_id=7"
    assert record.fields["inventory_item_id"] == "gid://shopify/InventoryItem/7" and record.fields["available"] == 4


@pytest.mark.parametrize("payload", [[], {"id": "x"}, {"id": 1, "updated_at": "yesterday"},
                                     {"id": 1, "updated_at": "2026-01-01T00:00:00Z", "line_items": "many"}])
def test_a_body_that_is_not_an_order_is_said_so(payload: object) -> None:
    with pytest.raises(NotTheResource):
        from_webhook("order", payload)


def test_signatures_are_checked_in_constant_time_and_topics_mapped() -> None:
    shopify = Shopify(ShopConfig(shop_url="http://127.0.0.1:1", access_token=SecretStr("t"),
                                 webhook_secret=SecretStr("s3cret")))
    body = b'{"id": 1}'
    headers = {"X-Shopify-Hmac-Sha256": sign("s3cret", body), "X-Shopify-Topic": "orders/updated",
               "X-Shopify-Webhook-Id": "w-1"}
    assert shopify.verify(headers, body) == Delivery("w-1", "orders/updated", "order")
    for forged in ({**headers, "X-Shopify-Hmac-Sha256": sign("other", body)},
                   {**headers, "X-Shopify-Hmac-Sha256": "ünïcode"}):
        with pytest.raises(Refused):
            shopify.verify(forged, body)
    with pytest.raises(Refused):
        shopify.verify({k: v for k, v in headers.items() if k != "X-Shopify-Webhook-Id"}, body)
    assert shopify.verify({**headers, "X-Shopify-Topic": "app/uninstalled"}, body).entity is None


def test_a_delivery_for_another_shop_is_refused_when_the_domain_is_set() -> None:
    shopify = Shopify(ShopConfig(shop_url="http://127.0.0.1:1", access_token=SecretStr("t"),
                                 webhook_secret=SecretStr("s3cret"), shop_domain="acme.myshopify.com"))
    body = b"{}"
    headers = {"X-Shopify-Hmac-Sha256": sign("s3cret", body), "X-Shopify-Topic": "orders/create",
               "X-Shopify-Webhook-Id": "w-1", "X-Shopify-Shop-Domain": "ACME.myshopify.com"}
    assert shopify.verify(headers, body).entity == "order"
    with pytest.raises(Refused, match="other_shop"):
        shopify.verify({**headers, "X-Shopify-Shop-Domain": "rival.myshopify.com"}, body)
