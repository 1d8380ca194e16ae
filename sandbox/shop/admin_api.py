"""Executing one GraphQL Admin API request against the store: parse, validate, meter, run.

graphql-core does the GraphQL itself (parsing, validation against ``schema.SDL``, variables,
fragments, execution); this module supplies the resolvers, Shopify's cursor pagination
(``first``/``after``, at most 250, ``pageInfo``), the ``query:`` search filter on
``updated_at``/``created_at`` and the cost metering of ``cost.py``.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timezone
from typing import Any, Callable

from graphql import (
    GraphQLError, GraphQLNonNull, OperationDefinitionNode, execute, get_operation_ast, parse, validate,
)

from sandbox.shop.cost import Bucket, actual_cost, requested_cost
from sandbox.shop.schema import schema
from sandbox.shop.store import ShopStore

__all__ = ["run_request", "MAX_PAGE"]

MAX_PAGE = 250
_TERM = re.compile(r"""(updated_at|created_at):(>=|<=|>|<)?['"]?([0-9T:.+\-Z]+)['"]?""")
#: the GraphQL type behind each top-level list and the field its sortKey UPDATED_AT reads
_LISTS = {"orders": "Order", "abandonedCheckouts": "AbandonedCheckout", "products": "Product",
          "customers": "Customer"}
_SORTS = {"ID": "id", "UPDATED_AT": "updatedAt", "CREATED_AT": "createdAt"}


def run_request(store: ShopStore, bucket: Bucket, body: Any) -> dict[str, Any]:
    """The JSON answer to one request body (``{"query", "variables"?, "operationName"?}``)."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return {"errors": [{"message": "Parameter Missing or Invalid: query",
                            "extensions": {"code": "BAD_REQUEST"}}]}
    variables = body.get("variables") or {}
    try:
        document = parse(body["query"])
    except GraphQLError as exc:
        return {"errors": [exc.formatted | {"extensions": {"code": "PARSE_ERROR"}}]}
    problems = validate(schema(), document)
    operation = get_operation_ast(document, body.get("operationName"))
    if problems or operation is None or not isinstance(variables, dict):
        errors = [e.formatted for e in problems] or [{"message": "An operation could not be chosen"}]
        return {"errors": errors}
    return _metered(store, bucket, document, operation, variables)


def _metered(store: ShopStore, bucket: Bucket, document: Any, operation: OperationDefinitionNode,
             variables: dict[str, Any]) -> dict[str, Any]:
    requested = requested_cost(document, operation, variables)
    if requested > bucket.maximum:
        return {"errors": [{"message": f"Query cost is {requested}, which exceeds the single query max cost limit "
                                       f"({int(bucket.maximum)}).", "extensions": {"code": "MAX_COST_EXCEEDED"}}],
                "extensions": _cost(requested, None, bucket)}
    if not bucket.take(requested):
        return {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                "extensions": _cost(requested, None, bucket)}
    result = execute(schema(), document, root_value=_Root(store), variable_values=variables,
                     operation_name=operation.name.value if operation.name else None, field_resolver=_resolve)
    actual = requested if operation.operation.value == "mutation" else min(requested, actual_cost(result.data))
    bucket.refund(requested - actual)
    answer: dict[str, Any] = {"data": result.data}
    if result.errors:
        answer["errors"] = [e.formatted for e in result.errors]
    answer["extensions"] = _cost(requested, actual, bucket)
    return answer


def _cost(requested: int, actual: int | None, bucket: Bucket) -> dict[str, Any]:
    return {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": bucket.status()}}


def _resolve(source: Any, info: Any, **args: Any) -> Any:
    value = source.get(info.field_name) if isinstance(source, dict) else getattr(source, info.field_name, None)
    if callable(value):
        return value(**args)
    kind = info.return_type.of_type if isinstance(info.return_type, GraphQLNonNull) else info.return_type
    if getattr(kind, "name", "").endswith("Connection"):
        return connection(value or [], args.get("first"), args.get("after"), key=lambda i, _: (i,))
    if info.field_name == "trackingInfo" and args.get("first") is not None:
        return (value or [])[: args["first"]]
    return value


def connection(items: list[Any], first: int | None, after: str | None,
               key: Callable[[int, Any], tuple[Any, ...]]) -> dict[str, Any]:
    """A page of ``items`` (already in order) after the cursor ``after``; cursors encode ``key``."""
    if first is None:
        raise GraphQLError("you must provide one of first or last")
    if not 0 <= first <= MAX_PAGE:
        raise GraphQLError(f"The 'first' argument must be between 0 and {MAX_PAGE}")
    keyed = [(list(key(index, item)), item) for index, item in enumerate(items)]
    if after:
        try:
            start = json.loads(base64.urlsafe_b64decode(after.encode()))["k"]
        except (ValueError, KeyError, TypeError):
            raise GraphQLError("Invalid cursor for current pagination sort.") from None
        keyed = [(k, item) for k, item in keyed if k > start]
    page = keyed[:first]
    edges = [{"cursor": _cursor(k), "node": item} for k, item in page]
    return {"edges": edges, "nodes": [item for _, item in page],
            "pageInfo": {"hasNextPage": len(keyed) > first, "hasPreviousPage": bool(after),
                         "startCursor": edges[0]["cursor"] if edges else None,
                         "endCursor": edges[-1]["cursor"] if edges else None}}


def _cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"k": key}).encode()).decode()


def matches(record: dict[str, Any], query: str | None) -> bool:
    """Shopify's search syntax, the part the connector uses: ``updated_at:>'<ISO time>'`` and
    the like on ``updated_at``/``created_at``, terms joined by spaces or AND (other terms are
    ignored, as Shopify ignores fields it cannot filter on)."""
    for name, op, text in _TERM.findall(query or ""):
        value = _when(record["updatedAt" if name == "updated_at" else "createdAt"])
        bound = _when(text)
        if not {">": value > bound, ">=": value >= bound, "<": value < bound,
                "<=": value <= bound, "": value == bound}[op]:
            return False
    return True


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise GraphQLError(f"Invalid date in search query: {text}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class _Root:
    """Top-level fields: each a method graphql-core calls with the field's arguments."""

    def __init__(self, store: ShopStore) -> None:
        self.store = store
        for field, kind in _LISTS.items():
            setattr(self, field, self._lister(kind))

    def _lister(self, kind: str) -> Callable[..., dict[str, Any]]:
        def listing(first: int | None = None, after: str | None = None, query: str | None = None,
                    sortKey: str = "ID", reverse: bool = False) -> dict[str, Any]:  # noqa: N803
            sort = _SORTS[sortKey]
            chosen = [r for r in self.store.all(kind) if matches(r, query)]
            ordered = sorted(chosen, key=lambda r: _order_key(r, sort), reverse=reverse)
            views = [_view(self.store, kind, r) for r in ordered]
            return connection(views, first, after,
                              key=lambda i, v: (i,) if reverse else _order_key(v, sort))
        return listing

    def order(self, id: str) -> dict[str, Any] | None:  # noqa: A002
        record = self.store.records["Order"].get(id)
        return _view(self.store, "Order", record) if record else None

    # -- mutations --------------------------------------------------------------------------

    def fulfillmentCreate(self, fulfillment: dict[str, Any], message: str | None = None) -> dict[str, Any]:  # noqa: N802
        ids = [group["fulfillmentOrderId"] for group in fulfillment["lineItemsByFulfillmentOrder"]]
        try:
            made = self.store.fulfil(ids, fulfillment.get("trackingInfo"))
        except ValueError as exc:
            return {"fulfillment": None, "userErrors": [{"field": ["fulfillment"], "message": str(exc)}]}
        return {"fulfillment": made, "userErrors": []}

    def productVariantsBulkUpdate(self, productId: str, variants: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N802,N803
        try:
            product = self.store.set_prices(productId, {v["id"]: v["price"] for v in variants if v.get("price")})
        except (ValueError, KeyError) as exc:
            return {"product": None, "productVariants": None,
                    "userErrors": [{"field": ["variants"], "message": str(exc).strip("'\"")}]}
        view = _view(self.store, "Product", product)
        return {"product": view, "productVariants": view["variants"], "userErrors": []}

    def inventorySetQuantities(self, input: dict[str, Any]) -> dict[str, Any]:  # noqa: N802,A002
        if input["name"] not in ("available", "on_hand"):
            return {"inventoryAdjustmentGroup": None,
                    "userErrors": [{"field": ["input", "name"], "message": "The quantity name must be available or on_hand."}]}
        errors = []
        for row in input["quantities"]:
            current = self.store.inventory.get((row["inventoryItemId"], row["locationId"]))
            stale = not input.get("ignoreCompareQuantity") and row.get("compareQuantity") != current
            if stale:
                errors.append({"field": ["input", "quantities"],
                               "message": "The compareQuantity argument no longer matches the persisted quantity."})
        if errors:
            return {"inventoryAdjustmentGroup": None, "userErrors": errors}
        try:
            for row in input["quantities"]:
                self.store.set_available(row["inventoryItemId"], row["locationId"], row["quantity"])
        except ValueError as exc:
            return {"inventoryAdjustmentGroup": None, "userErrors": [{"field": ["input"], "message": str(exc)}]}
        return {"inventoryAdjustmentGroup": {"id": f"gid://shopify/InventoryAdjustmentGroup/{len(errors) + 1}",
                                             "reason": input["reason"], "createdAt": self.store._now()},
                "userErrors": []}


def _order_key(record: dict[str, Any], sort: str) -> tuple[Any, ...]:
    number = int(record["id"].rsplit("/", 1)[1])
    return (number,) if sort == "id" else (record[sort], number)


def _money(store: ShopStore, amount: str) -> dict[str, Any]:
    return {"shopMoney": {"amount": amount, "currencyCode": store.currency}}


def _view(store: ShopStore, kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """A record as its GraphQL type shows it."""
    if kind == "Customer":
        return record
    if kind == "Product":
        variants = [{**v, "inventoryQuantity": store.available(v["inventoryItem"]["id"])} for v in record["variants"]]
        return {**record, "variants": variants}
    lines = [{**line, "originalUnitPriceSet": _money(store, line["price"])} for line in record["lineItems"]]
    customer = store.records["Customer"].get(record.get("customerId") or "")
    return {**record, "lineItems": lines, "totalPriceSet": _money(store, record["total"]), "customer": customer,
            "currencyCode": store.currency}

