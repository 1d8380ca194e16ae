"""The Shopify writer: fulfilments, variant prices and inventory levels (docs/adr/0035).

Three objects, each batched as far as the platform's API allows:

``fulfillment`` (key ``order_id``, the order's global id; fields ``tracking_number``,
``tracking_company``, ``tracking_url``, ``notify_customer``)
    One query reads the open fulfillment orders of every order in the batch (one aliased field
    per order); one document then fulfils them all (one aliased ``fulfillmentCreate`` per
    order, with its tracking). An order with no open fulfillment order is already fulfilled:
    the write is done (idempotent: a retried or replayed command fulfils nothing twice).

``variant`` (key ``id``, the variant's global id; fields ``product_id``, ``price``)
    ``productVariantsBulkUpdate`` takes many variants of one product: the batch is grouped by
    product, one aliased mutation per product, all in one document.

``inventory`` (key ``level``, ``<inventory item id>@<location id>``; or key ``inventory_item_id``
with ``location_id`` in the fields; field ``quantity``)
    One ``inventorySetQuantities`` (name ``available``) for the whole batch. The sender owns
    stock (TIMS), so the compare quantity is not used (``ignoreCompareQuantity``). A sender
    that writes one item at several locations keys by the level: the sink framework folds the
    commands of one key, and one item's levels are several records (docs/adr/0039).

Throttling is the client's (connectors/shop/shopify.py): it waits for the cost bucket before a
document it cannot pay and retries ``THROTTLED`` after the refill time. ``userErrors`` become
per-command outcomes (final); a whole call that fails raises, and the sink framework retries
or dead-letters the batch.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from connectors.envelope import SinkCommand
from connectors.redact import redact_text
from connectors.shop.config import ShopConfig
from connectors.shop.shopify import ShopifyClient
from connectors.sink import WriteOutcome, Writer

__all__ = ["ShopifyWriter", "OBJECTS"]

log = logging.getLogger(__name__)
#: object → the key fields its commands may carry
OBJECTS = {"fulfillment": ("order_id",), "variant": ("id",), "inventory": ("level", "inventory_item_id")}
#: orders (or products) per document: a document's requested cost must stay below the bucket
#: (10 points per mutation, about 10 per order read)
PER_DOCUMENT = 25


#: one aliased field of a document: alias, field, arguments (name → (GraphQL type, value)), selection
Part = tuple[str, str, dict[str, tuple[str, Any]], str]


def _document(operation: str, name: str, parts: list[Part]) -> tuple[str, dict[str, Any]]:
    """One document of several aliased fields; every value travels as a variable, never spliced."""
    declared, variables, fields = [], {}, []
    for alias, field, arguments, selection in parts:
        given = []
        for argument, (kind, value) in arguments.items():
            variable = f"{alias}_{argument}"
            declared.append(f"${variable}: {kind}")
            variables[variable] = value
            given.append(f"{argument}: ${variable}")
        fields.append(f"{alias}: {field}({', '.join(given)}) {{ {selection} }}")
    return f"{operation} {name}({', '.join(declared)}) {{ {' '.join(fields)} }}", variables


def _errors(payload: Any) -> str | None:
    errors = (payload or {}).get("userErrors") or []
    if not errors:
        return None
    return redact_text("; ".join(str(e.get("message")) for e in errors if isinstance(e, dict))[:300])


class ShopifyWriter(Writer):
    system = "shop"
    max_batch = 100

    def __init__(self, config: ShopConfig, *, client: ShopifyClient | None = None) -> None:
        self.client = client or ShopifyClient(config)

    async def close(self) -> None:
        await self.client.aclose()

    async def check_auth(self) -> None:
        """A one-point query: a refused token is a FatalError (401)."""
        await self.client.query("query { products(first: 1) { nodes { id } } }")

    async def write(self, commands: Sequence[SinkCommand]) -> list[WriteOutcome]:
        outcomes: dict[int, WriteOutcome] = {}
        groups: dict[str, list[int]] = {}
        for index, command in enumerate(commands):
            wanted = OBJECTS.get(command.object, ())
            if command.operation != "upsert" or command.external_id_field not in wanted:
                keys = "; ".join(f"{name} by {'/'.join(fields)}" for name, fields in OBJECTS.items())
                outcomes[index] = _failed(command, "unsupported", f"the shop writes {keys} (upsert only)")
            else:
                groups.setdefault(command.object, []).append(index)
        for name, indexes in groups.items():
            for start in range(0, len(indexes), PER_DOCUMENT):
                chunk = indexes[start:start + PER_DOCUMENT]
                written = await getattr(self, f"_{name}")([commands[i] for i in chunk])
                outcomes.update(zip(chunk, written))
        return [outcomes[i] for i in range(len(commands))]

    # -- fulfilments -------------------------------------------------------------------------
    async def _fulfillment(self, commands: list[SinkCommand]) -> list[WriteOutcome]:
        reads: list[Part] = [(f"o{n}", "order", {"id": ("ID!", c.external_id)},
                              "id fulfillmentOrders(first: 10) { nodes { id status } }") for n, c in enumerate(commands)]
        orders = await self.client.query(*_document("query", "FulfillmentOrders", reads))
        outcomes: dict[int, WriteOutcome] = {}
        mutations = []
        for n, command in enumerate(commands):
            order = orders.get(f"o{n}")
            if order is None:
                outcomes[n] = _failed(command, "not_found", "the shop has no such order")
                continue
            open_ids = [fo["id"] for fo in order["fulfillmentOrders"]["nodes"] if fo["status"] == "OPEN"]
            if not open_ids:
                outcomes[n] = WriteOutcome(command, ok=True, target_id=command.external_id, created=False)
                continue
            mutations.append((n, _fulfilment_input(command, open_ids)))
        if mutations:
            parts: list[Part] = [(f"f{n}", "fulfillmentCreate", {"fulfillment": ("FulfillmentInput!", given)},
                                  "fulfillment { id } userErrors { field message }") for n, given in mutations]
            made = await self.client.query(*_document("mutation", "Fulfil", parts))
            for n, _ in mutations:
                outcomes[n] = _outcome(commands[n], made.get(f"f{n}"), lambda p: (p.get("fulfillment") or {}).get("id"))
        return [outcomes[n] for n in range(len(commands))]

    # -- prices ------------------------------------------------------------------------------
    async def _variant(self, commands: list[SinkCommand]) -> list[WriteOutcome]:
        by_product: dict[str, list[int]] = {}
        outcomes: dict[int, WriteOutcome] = {}
        for n, command in enumerate(commands):
            product, price = command.fields.get("product_id"), command.fields.get("price")
            if not product or price is None:
                outcomes[n] = _failed(command, "invalid", "a variant write needs product_id and price")
            else:
                by_product.setdefault(str(product), []).append(n)
        if by_product:
            parts: list[Part] = []
            for p, (product, indexes) in enumerate(by_product.items()):
                variants = [{"id": commands[n].external_id, "price": str(commands[n].fields["price"])} for n in indexes]
                parts.append((f"p{p}", "productVariantsBulkUpdate",
                              {"productId": ("ID!", product), "variants": ("[ProductVariantsBulkInput!]!", variants)},
                              "productVariants { id } userErrors { field message }"))
            done = await self.client.query(*_document("mutation", "Prices", parts))
            for p, indexes in enumerate(by_product.values()):
                for n in indexes:
                    outcomes[n] = _outcome(commands[n], done.get(f"p{p}"), lambda _: commands[n].external_id)
        return [outcomes[n] for n in range(len(commands))]

    # -- stock -------------------------------------------------------------------------------
    async def _inventory(self, commands: list[SinkCommand]) -> list[WriteOutcome]:
        outcomes: dict[int, WriteOutcome] = {}
        rows: list[tuple[int, dict[str, Any]]] = []
        for n, command in enumerate(commands):
            (item, location), quantity = _level(command), command.fields.get("quantity")
            if not item or not location or type(quantity) is not int:
                outcomes[n] = _failed(command, "invalid", "an inventory write needs a level (an inventory level id, "
                                                          "or an inventory item and location_id) and a whole quantity")
            else:
                rows.append((n, {"inventoryItemId": item, "locationId": location, "quantity": quantity}))
        latest = {(r["inventoryItemId"], r["locationId"]): r for _, r in rows}  # the last command per level wins
        if latest:
            given = {"name": "available", "reason": "correction", "ignoreCompareQuantity": True,
                     "quantities": list(latest.values())}
            part: Part = ("s", "inventorySetQuantities", {"input": ("InventorySetQuantitiesInput!", given)},
                          "inventoryAdjustmentGroup { id } userErrors { field message }")
            done = await self.client.query(*_document("mutation", "Stock", [part]))
            for n, _ in rows:
                outcomes[n] = _outcome(commands[n], done.get("s"), lambda _: commands[n].external_id)
        return [outcomes[n] for n in range(len(commands))]


def _level(command: SinkCommand) -> tuple[str | None, str | None]:
    """(inventory item, location) global ids of an inventory command."""
    if command.external_id_field == "inventory_item_id":
        return command.external_id, command.fields.get("location_id")
    item, _, location = command.external_id.partition("@")
    return item or None, location or None


def _fulfilment_input(command: SinkCommand, open_ids: list[str]) -> dict[str, Any]:
    fields = command.fields
    tracking = {"number": fields.get("tracking_number"), "company": fields.get("tracking_company"),
                "url": fields.get("tracking_url")}
    given: dict[str, Any] = {"lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": i} for i in open_ids],
                             "notifyCustomer": bool(fields.get("notify_customer", True))}
    if any(v for v in tracking.values()):
        given["trackingInfo"] = tracking
    return given


def _outcome(command: SinkCommand, payload: Any, target: Any) -> WriteOutcome:
    if payload is None:
        return _failed(command, "no_answer", "the mutation answered nothing")
    problem = _errors(payload)
    if problem:
        return _failed(command, "user_error", problem)
    return WriteOutcome(command, ok=True, target_id=target(payload), created=False)


def _failed(command: SinkCommand, code: str, message: str) -> WriteOutcome:
    log.warning("shop refused %s %s: %s %s", command.object, command.external_id, code, message)
    return WriteOutcome(command, ok=False, error_code=code, error=message)
