"""The shop catalogue record: one per SKU, folded from TIMS item events and the shop's products.
Pure: no Kafka, no Faust (docs/adr/0035).

TIMS owns the price (``unit_price``, in the shop's currency); the shop owns titles, images and
everything else about its products and is never written but for the price. A row holds the
TIMS price taken last (by TIMS ``version``) and each shop variant with that SKU as the shop
showed it. Where a variant's price differs from TIMS's (both Decimal, rounded to the currency's
minor unit), the variant's price is written, once per difference: our own write coming back
shows the TIMS price and writes nothing; an edit in the shop is written back over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from connectors.envelope import SinkCommand, SourceEvent
from topologies.mapping_file import load_model
from topologies.money import currency_code, quantize, text, to_decimal

__all__ = ["CatalogMapping", "Decision", "load_mapping", "new_row", "apply_item", "apply_variant", "variants_of",
           "DEFAULT_MAPPING_DIR"]

DEFAULT_MAPPING_DIR = Path(__file__).with_name("mappings")
SEEN_LIMIT = 20


class CatalogMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the shop's currency, which TIMS prices are in (ISO 4217)
    currency: str = "USD"
    #: write prices to the shop (false: watch only)
    write_prices: bool = True

    def model_post_init(self, _: Any) -> None:
        currency_code(self.currency)


def load_mapping(directory: Path) -> CatalogMapping:
    return load_model(directory / "shop_catalog.yaml", CatalogMapping)


@dataclass
class Decision:
    commands: list[SinkCommand] = field(default_factory=list)
    duplicate: bool = False
    stale: bool = False


def new_row(sku: str) -> dict[str, Any]:
    return {"sku": sku, "price": None, "item_version": None, "variants": {}, "version": 0, "seen": []}


def variants_of(event: SourceEvent) -> list[dict[str, Any]]:
    """The variants of a shop product event that have a SKU, each with its product's id."""
    return [{"sku": str(v["sku"]), "variant_id": str(v["id"]), "product_id": event.record_id, "price": v.get("price"),
             "updated_at": str(event.fields.get("updated_at") or "")}
            for v in event.fields.get("variants") or [] if isinstance(v, dict) and v.get("sku") and v.get("id")]


def apply_item(row: dict[str, Any], event: SourceEvent, mapping: CatalogMapping) -> Decision:
    """A TIMS item: its price, when newer than the one taken."""
    if event.event_id in row["seen"]:
        return Decision(duplicate=True)
    row["seen"] = [*row["seen"], event.event_id][-SEEN_LIMIT:]
    version = event.fields.get("version") if isinstance(event.fields.get("version"), int) else event.commit_timestamp
    if row["item_version"] is not None and version <= row["item_version"]:
        return Decision(stale=True)
    row["item_version"] = version
    price = event.fields.get("unit_price")
    row["price"] = None if price is None or event.change_type == "DELETE" else text(
        quantize(to_decimal(price, "unit_price"), currency_code(mapping.currency)))
    return _writes(row, mapping)


def apply_variant(row: dict[str, Any], variant: dict[str, Any], mapping: CatalogMapping) -> Decision:
    """A shop variant with this SKU, as a product event showed it (older states are not taken)."""
    known = row["variants"].get(variant["variant_id"])
    if known is not None and variant["updated_at"] < known["updated_at"]:
        return Decision(stale=True)
    if known is not None and (known["price"], known["updated_at"]) == (variant["price"], variant["updated_at"]):
        return Decision(duplicate=True)
    row["variants"][variant["variant_id"]] = {"product_id": variant["product_id"], "price": variant["price"],
                                              "updated_at": variant["updated_at"],
                                              "written": (known or {}).get("written"),
                                              "written_over": (known or {}).get("written_over")}
    return _writes(row, mapping)


def _writes(row: dict[str, Any], mapping: CatalogMapping) -> Decision:
    decision = Decision()
    if row["price"] is None or not mapping.write_prices:
        return decision
    currency = currency_code(mapping.currency)
    for variant_id, variant in sorted(row["variants"].items()):
        shown = variant["price"]
        if shown is not None and quantize(to_decimal(shown, "variant price"), currency) == to_decimal(row["price"]):
            continue
        if variant.get("written") == row["price"] and variant.get("written_over") == shown:
            continue  # asked already; the shop has not shown it yet
        variant["written"], variant["written_over"] = row["price"], shown
        row["version"] += 1
        decision.commands.append(SinkCommand(
            system="shop", object="variant", external_id_field="id", external_id=variant_id,
            fields={"product_id": variant["product_id"], "price": row["price"]}, version=row["version"],
            record_key=f"sku:{row['sku']}"))
    return decision
