"""Write quality/suggest/data/catalogue.json: the fields (and types) of every object the repo
knows, for `stream-app mappings suggest` (docs/adr/0030).

Sources: the Salesforce sandbox org's schema (sandbox/salesforce/org.py), the Pardot sandbox's
objects (sandbox/pardot/objects.py), the TIMS contract (docs/tims-openapi.yaml, nested addresses
as dotted paths) and the customer sync's canonical fields. The installed package carries the
result, not its sources (the sandbox and docs/ are development only); a unit test fails when the
committed file differs from what this script builds.

Usage: .venv/bin/python scripts/build_field_catalogue.py [--check]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from sandbox.pardot.objects import build_specs  # noqa: E402
from sandbox.salesforce.org import DEFAULT_SCHEMA  # noqa: E402
from topologies.customer_sync.mapping import CANONICAL_FIELDS  # noqa: E402

CATALOGUE = ROOT / "quality" / "suggest" / "data" / "catalogue.json"
_PARDOT_OBJECTS = {"prospects": "prospect", "lists": "list", "list-memberships": "list_membership",
                   "visitor-activities": "visitor_activity"}
_TIMS_SCHEMAS = {"customer": "CustomerFields", "sales_order": "SalesOrderFields", "invoice": "InvoiceFields",
                 "payment": "PaymentFields", "item": "ItemFields", "segment": "SegmentFields",
                 "stock_level": "StockLevelFields"}
_NUMBERS = {"credit_limit", "total_revenue", "score"}


def _kind(type_name: str) -> str:
    """One vocabulary for the three systems' types."""
    lowered = type_name.lower()
    if lowered in ("int", "integer", "double", "float", "number", "currency", "percent"):
        return "number"
    if lowered in ("bool", "boolean"):
        return "boolean"
    if lowered in ("date", "datetime", "date-time"):
        return "date"
    if lowered in ("array", "multipicklist"):
        return "list"
    return "string"


def _tims_fields(spec: dict[str, Any], schema: str) -> dict[str, str]:
    schemas = spec["components"]["schemas"]
    out: dict[str, str] = {}
    for name, prop in schemas[schema]["properties"].items():
        ref = next((part["$ref"] for part in prop.get("allOf", []) if "$ref" in part), None)
        if ref:
            for child, child_prop in schemas[ref.rsplit("/", 1)[1]]["properties"].items():
                out[f"{name}.{child}"] = _kind(child_prop.get("format") or child_prop.get("type", "string"))
        else:
            out[name] = _kind(prop.get("format") if prop.get("format") == "date-time" else prop.get("type", "string"))
    return out


def build() -> dict[str, dict[str, str]]:
    catalogue: dict[str, dict[str, str]] = {}
    for name, sobject in DEFAULT_SCHEMA.items():
        catalogue[f"salesforce.{name}"] = {f.name: _kind(f.format if f.format == "currency" else f.type)
                                           for f in sobject.fields if not f.compound}
    for served, spec in build_specs().items():
        if served in _PARDOT_OBJECTS:
            catalogue[f"pardot.{_PARDOT_OBJECTS[served]}"] = {f.name: _kind(f.type) for f in spec.fields.values()}
    openapi = yaml.safe_load((ROOT / "docs" / "tims-openapi.yaml").read_text())
    for entity, schema in _TIMS_SCHEMAS.items():
        catalogue[f"tims.{entity}"] = _tims_fields(openapi, schema)
    catalogue["canonical.customer"] = {name: "number" if name in _NUMBERS else "string" for name in sorted(CANONICAL_FIELDS)}
    return dict(sorted(catalogue.items()))


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=False) + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if CATALOGUE.read_text() == text else "catalogue.json is out of date: run scripts/build_field_catalogue.py")
    CATALOGUE.write_text(text)
    print(f"wrote {CATALOGUE} ({len(build())} objects)")
