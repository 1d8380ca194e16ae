"""A draft mapping file from suggestions, in the format the flow that would read it expects:
the customer sync's (inbound to canonical fields, outbound from them) for people's objects, the
products flow's field list for a TIMS item and a Product2. A person reviews it; nothing reads a
draft until it is moved into a flow's mappings folder."""

from __future__ import annotations

from typing import Callable

import yaml

from quality.suggest.catalogue import CatalogueError, fields_of
from quality.suggest.scoring import Suggestion, suggest

__all__ = ["draft", "CANONICAL"]

CANONICAL = "canonical.customer"
#: the key each person object is written by, as the customer sync's outbound rules need it
_KEYS = {
    "salesforce.Contact": [{"field": "Id", "link": "salesforce_contact"}],
    "salesforce.Lead": [{"field": "Id", "link": "salesforce_lead"}],
    "salesforce.Account": [{"field": "Id", "link": "salesforce_account"}],
    "pardot.prospect": [{"field": "id", "link": "pardot_prospect"}],
    "tims.customer": [{"field": "customer_id", "link": "tims_customer"},
                      {"field": "external_id", "link": "salesforce_contact"}],
}
_CLEAN = {"email": "email", "first_name": "name", "last_name": "name", "phone": "phone", "score": "number",
          "credit_limit": "number", "total_revenue": "number", "grade": "grade", "payment_terms": "upper"}
_PRODUCTS = ("tims.item", "salesforce.Product2")
_PRODUCT_KINDS = {"number": "money", "boolean": "bool"}


def _inbound(source: str, pairs: list[Suggestion]) -> dict:
    rules = {}
    for pair in sorted(pairs, key=lambda p: p.target):
        rule = {"from": pair.source, "clean": _CLEAN.get(pair.target, "text")}
        if pair.source == "name" and pair.target in ("first_name", "last_name"):
            rule["split"] = "first" if pair.target == "first_name" else "rest"
        rules[pair.target] = rule
    return {source: rules}


def _outbound(target: str, pairs: list[Suggestion]) -> dict:
    if target not in _KEYS:
        raise CatalogueError(f"no flow writes {target} from canonical fields; people's objects: {', '.join(_KEYS)}")
    return {target: {"key": _KEYS[target], "fields": {p.target: {"from": p.source} for p in sorted(pairs, key=lambda p: p.target)}}}


def _comment(pairs: list[Suggestion]) -> str:
    return "".join(f"#   {p.source} -> {p.target}  score {p.score:.2f} (name {p.name:.2f}, type {p.type:.1f}"
                   f"{'' if p.values is None else f', values {p.values:.2f}'})\n" for p in pairs)


def draft(source: str, target: str, flow: str, find: Callable[..., list[Suggestion]] = suggest, **options: object) -> str:
    """The draft file's text (``flow`` names it: the file must be ``<flow>.yaml``)."""
    pairs = find(source, target, **options)
    header = (f"# Draft by `stream-app mappings suggest --source {source} --target {target}`: review every rule.\n"
              f"# Proposed pairs, best first:\n{_comment(pairs)}")
    if (source, target) in (_PRODUCTS, _PRODUCTS[::-1]):
        return header + _products(pairs, tims_first=source == "tims.item")
    return header + _customer(source, target, flow, pairs, find, options)


def _products(pairs: list[Suggestion], tims_first: bool) -> str:
    """The products flow's field list: one row per TIMS field (its best pair), named after it."""
    kinds = fields_of("tims.item")
    rows: dict[str, dict[str, str]] = {}
    for pair in pairs:
        tims, salesforce = (pair.source, pair.target) if tims_first else (pair.target, pair.source)
        if tims not in rows:
            rows[tims] = {"name": tims, "tims": tims, "salesforce": salesforce, "owner": "tims",
                          "kind": _PRODUCT_KINDS.get(kinds[tims], "text")}
    return yaml.safe_dump({"currency": "USD", "standard_pricebook_id": "", "fields": list(rows.values())}, sort_keys=False)


def _customer(source: str, target: str, flow: str, pairs: list[Suggestion], find: Callable[..., list[Suggestion]],
              options: dict) -> str: 
    document: dict = {"flow": flow, "description": f"Draft: {source} to {target}, proposed by mappings suggest."}
    if target == CANONICAL:
        document["inbound"] = _inbound(source, pairs)
    elif source == CANONICAL:
        document["outbound"] = _outbound(target, pairs)
    else:
        # through the canonical fields, keeping only the routes the direct pairs agree with
        direct = {p.target: p.source for p in pairs}
        into = {p.target: p for p in find(source, CANONICAL, **options)}
        out = [p for p in find(CANONICAL, target, **options)
               if p.source in into and direct.get(p.target) == into[p.source].source]
        if target not in _KEYS or not out:
            raise CatalogueError(f"no flow maps {source} to {target}: the pairs are printed, no draft is written")
        document["inbound"] = _inbound(source, [into[p.source] for p in out])
        document["outbound"] = _outbound(target, out)
    return yaml.safe_dump(document, sort_keys=False)
