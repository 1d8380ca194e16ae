"""The shop catalogue record: one per SKU, folded from TIMS item and stock level events and the
shop's products. Pure: no Kafka, no Faust (docs/adr/0035, docs/adr/0039).

TIMS owns the price (``unit_price``, in the shop's currency); the shop owns titles, images and
everything else about its products and is never written but for the price. A row holds the
TIMS price taken last (by TIMS ``version``) and each shop variant with that SKU as the shop
showed it. Where a variant's price differs from TIMS's (both Decimal, rounded to the currency's
minor unit), the variant's price is written, once per difference: our own write coming back
shows the TIMS price and writes nothing; an edit in the shop is written back over.

TIMS owns stock too: the row keeps each TIMS location's ``available`` (the newest by the level's
``version``, or by ``updated_at`` when the level was deleted and made again: an older change never
overwrites a newer one), and each variant's
inventory level at the mapped shop location is set to it, once per change. The shop's own
movements (a sale takes stock before TIMS allocates it) are not written back over: TIMS's next
change brings the level in line. A SKU no shop variant has is held in its row until one shows.

An item marked ``promote`` in TIMS becomes a Pardot custom redirect named after its SKU, to the
shop's product page, in the configured campaign and folder; unmarked, the redirect moves to the
retired folder (it is never deleted: links in sent emails keep working).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.envelope import SinkCommand, SourceEvent
from topologies.mapping_file import load_model
from topologies.money import currency_code, quantize, text, to_decimal

__all__ = ["CatalogMapping", "PromotionsMapping", "Decision", "load_mapping", "new_row", "apply_item",
           "apply_variant", "apply_stock", "variants_of", "unmapped_location", "DEFAULT_MAPPING_DIR"]

DEFAULT_MAPPING_DIR = Path(__file__).with_name("mappings")
SEEN_LIMIT = 20


class PromotionsMapping(BaseModel):
    """Items marked ``promote`` in TIMS → Pardot custom redirects to their shop product pages."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the Pardot campaign the redirects belong to (v5 requires one); None: promotions off
    campaign_id: int | None = None
    #: the folder of a promoted item's redirect (None: Pardot's uncategorised folder)
    folder_id: int | None = None
    #: where an item's redirect moves when it is no longer promoted (None: it stays)
    retired_folder_id: int | None = None
    #: the redirect's name, its key in Pardot: keep ``{sku}`` in it
    name: str = "Shop product {sku}"
    #: the product's page in the shop, from the shop product's ``{handle}``
    product_url: str = "https://connect-sandbox.myshopify.com/products/{handle}"

    def model_post_init(self, _: Any) -> None:
        if self.retired_folder_id is not None and self.folder_id is None:
            raise ValueError("retired_folder_id needs folder_id (a promoted item's redirect moves back there)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if "{sku}" not in value or len(value.format(sku="X" * 40)) > 255:
            raise ValueError("must hold {sku} (the redirect's key in Pardot) and fit 255 characters")
        return value

    @field_validator("product_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if "{handle}" not in value or not re.match(r"^https?://[^/\s]+\.[^/\s]+/", value):
            raise ValueError("must be a full http(s) URL holding {handle}")
        return value


class CatalogMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the shop's currency, which TIMS prices are in (ISO 4217)
    currency: str = "USD"
    #: write prices to the shop (false: watch only)
    write_prices: bool = True
    #: TIMS location code → the shop's location id; None: the location does not sell online
    locations: dict[str, str | None] = Field(default_factory=dict)
    #: write stock to the shop (false: watch only)
    write_stock: bool = True
    promotions: PromotionsMapping = Field(default_factory=PromotionsMapping)

    def model_post_init(self, _: Any) -> None:
        currency_code(self.currency)

    @field_validator("locations")
    @classmethod
    def _locations(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        shops = [v for v in value.values() if v is not None]
        if any(not v.strip() for v in shops) or len(shops) != len(set(shops)):
            raise ValueError("each shop location may serve one TIMS location, and none is empty")
        return value


def load_mapping(directory: Path) -> CatalogMapping:
    return load_model(directory / "shop_catalog.yaml", CatalogMapping)


@dataclass
class Decision:
    commands: list[SinkCommand] = field(default_factory=list)
    duplicate: bool = False
    stale: bool = False


def new_row(sku: str) -> dict[str, Any]:
    return {"sku": sku, "price": None, "item_version": None, "variants": {}, "version": 0, "seen": [],
            "stock": {}, "promote": False, "promotion": None}


def variants_of(event: SourceEvent) -> list[dict[str, Any]]:
    """The variants of a shop product event that have a SKU, each with its product's id."""
    return [{"sku": str(v["sku"]), "variant_id": str(v["id"]), "product_id": event.record_id, "price": v.get("price"),
             "updated_at": str(event.fields.get("updated_at") or ""),
             "inventory_item_id": v.get("inventory_item_id") or None, "handle": event.fields.get("handle") or None}
            for v in event.fields.get("variants") or [] if isinstance(v, dict) and v.get("sku") and v.get("id")]


def unmapped_location(event: SourceEvent, mapping: CatalogMapping) -> str | None:
    """Why a TIMS stock level cannot reach the shop (its location is in no mapping), else None.
    A location mapped to None does not sell online: that is no reason, it is simply not written."""
    location = event.fields.get("location_id")
    if location in mapping.locations:
        return None
    return (f"TIMS location {location!r} has no shop location: add it to shop_catalog.yaml's locations "
            "(null when it does not sell online)")


def apply_item(row: dict[str, Any], event: SourceEvent, mapping: CatalogMapping) -> Decision:
    """A TIMS item: its price and promotion mark, when newer than the ones taken."""
    if _seen(row, event):
        return Decision(duplicate=True)
    version = event.fields.get("version") if isinstance(event.fields.get("version"), int) else event.commit_timestamp
    if row["item_version"] is not None and version <= row["item_version"]:
        return Decision(stale=True)
    row["item_version"] = version
    price = event.fields.get("unit_price")
    row["price"] = None if price is None or event.change_type == "DELETE" else text(
        quantize(to_decimal(price, "unit_price"), currency_code(mapping.currency)))
    row["promote"] = event.fields.get("promote") is True and event.change_type != "DELETE"
    return _writes(row, mapping)


def apply_stock(row: dict[str, Any], event: SourceEvent, mapping: CatalogMapping) -> Decision:
    """A TIMS stock level of this SKU: its location's ``available``, unless an older change (a
    deleted level holds nothing)."""
    if _seen(row, event):
        return Decision(duplicate=True)
    version = event.fields.get("version") if isinstance(event.fields.get("version"), int) else 0
    location = str(event.fields.get("location_id"))
    known = row.setdefault("stock", {}).get(location)
    if known is not None and not (version > known["version"] if known["record"] == event.record_id
                                  else event.commit_timestamp > known["at"]):
        return Decision(stale=True)
    available = event.fields.get("available")
    if event.change_type == "DELETE":
        available = 0
    elif type(available) is not int:
        raise ValueError(f"TIMS stock level {event.record_id}: available must be a whole number, not {available!r}")
    row["stock"][location] = {"available": available, "record": event.record_id, "version": version,
                              "at": event.commit_timestamp}
    return _writes(row, mapping)


def apply_variant(row: dict[str, Any], variant: dict[str, Any], mapping: CatalogMapping) -> Decision:
    """A shop variant with this SKU, as a product event showed it (older states are not taken)."""
    known = row["variants"].get(variant["variant_id"])
    if known is not None and variant["updated_at"] < known["updated_at"]:
        return Decision(stale=True)
    shown = (variant["price"], variant["updated_at"], variant.get("inventory_item_id"), variant.get("handle"))
    if known is not None and shown == (known["price"], known["updated_at"], known.get("inventory_item_id"),
                                       known.get("handle")):
        return Decision(duplicate=True)
    same_item = known is not None and known.get("inventory_item_id") == variant.get("inventory_item_id")
    row["variants"][variant["variant_id"]] = {"product_id": variant["product_id"], "price": variant["price"],
                                              "updated_at": variant["updated_at"],
                                              "inventory_item_id": variant.get("inventory_item_id"),
                                              "handle": variant.get("handle"),
                                              "written": (known or {}).get("written"),
                                              "written_over": (known or {}).get("written_over"),
                                              "stock_written": (known or {}).get("stock_written", {}) if same_item else {}}
    return _writes(row, mapping)


def _seen(row: dict[str, Any], event: SourceEvent) -> bool:
    if event.event_id in row["seen"]:
        return True
    row["seen"] = [*row["seen"], event.event_id][-SEEN_LIMIT:]
    return False


def _writes(row: dict[str, Any], mapping: CatalogMapping) -> Decision:
    return Decision(commands=[*_price_writes(row, mapping), *_stock_writes(row, mapping),
                              *_promotion_writes(row, mapping)])


def _command(row: dict[str, Any], system: str, object_: str, key_field: str, key: str,
             fields: dict[str, Any]) -> SinkCommand:
    row["version"] += 1
    return SinkCommand(system=system, object=object_, external_id_field=key_field, external_id=key, fields=fields,
                       version=row["version"], record_key=f"sku:{row['sku']}")


def _price_writes(row: dict[str, Any], mapping: CatalogMapping) -> list[SinkCommand]:
    if row["price"] is None or not mapping.write_prices:
        return []
    currency, commands = currency_code(mapping.currency), []
    for variant_id, variant in sorted(row["variants"].items()):
        shown = variant["price"]
        if shown is not None and quantize(to_decimal(shown, "variant price"), currency) == to_decimal(row["price"]):
            continue
        if variant.get("written") == row["price"] and variant.get("written_over") == shown:
            continue  # asked already; the shop has not shown it yet
        variant["written"], variant["written_over"] = row["price"], shown
        commands.append(_command(row, "shop", "variant", "id", variant_id,
                                 {"product_id": variant["product_id"], "price": row["price"]}))
    return commands


def _stock_writes(row: dict[str, Any], mapping: CatalogMapping) -> list[SinkCommand]:
    """Each level TIMS changed, to each variant's inventory item at the mapped shop location,
    keyed by the level (``<inventory item>@<location>``): one item's levels are several records."""
    if not mapping.write_stock:
        return []
    commands = []
    for variant in (v for _, v in sorted(row["variants"].items()) if v.get("inventory_item_id")):
        written = variant.setdefault("stock_written", {})
        for location, level in sorted(row.get("stock", {}).items()):
            shop_location = mapping.locations.get(location)
            if shop_location is None or written.get(location) == level["available"]:
                continue
            written[location] = level["available"]
            commands.append(_command(row, "shop", "inventory", "level",
                                     f"{variant['inventory_item_id']}@{shop_location}",
                                     {"quantity": level["available"]}))
    return commands


def _promotion_writes(row: dict[str, Any], mapping: CatalogMapping) -> list[SinkCommand]:
    """The item's custom redirect when its promotion or its page changed (held while no shop
    variant shows the product's handle)."""
    promotions = mapping.promotions
    handle = next((v["handle"] for _, v in sorted(row["variants"].items()) if v.get("handle")), None)
    promoted, written = row.get("promote", False), row.get("promotion")
    if promotions.campaign_id is None or handle is None or (not promoted and written is None):
        return []
    folder = promotions.folder_id if promoted else promotions.retired_folder_id
    if not promoted and folder is None:
        return []
    wanted = {"destinationUrl": promotions.product_url.format(handle=handle), "campaignId": promotions.campaign_id,
              "folderId": folder}
    if wanted == written:
        return []
    row["promotion"] = wanted
    return [_command(row, "pardot", "custom_redirect", "name", promotions.name.format(sku=row["sku"]),
                     {k: v for k, v in wanted.items() if v is not None})]
