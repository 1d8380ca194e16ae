"""The product record: TIMS owns the catalogue, Salesforce the description; echoes change nothing."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from connectors.envelope import SourceEvent
from topologies.products.catalog import DEFAULT_MAPPING_DIR, Unusable, apply_event, load_mapping, new_row

MAPPING = load_mapping(DEFAULT_MAPPING_DIR).model_copy(update={"standard_pricebook_id": "01s000000000001AAA"})
_ids = itertools.count(1)


def item(**fields: Any) -> SourceEvent:
    base = {"item_id": "IT000001", "external_id": None, "sku": "AR-40", "name": "Argon 40 cf", "category": "Gas",
            "uom": "CYL", "unit_price": 42.5, "active": True, "description": None}
    return SourceEvent(event_id=f"t{next(_ids)}", source="tims", entity="item", record_id="IT000001",
                       change_type="UPDATE", fields={**base, **fields}, full_state=True,
                       commit_timestamp=1_000 + next(_ids), change_origin=fields.pop("_by", "tims-ui"))


def product2(change: str = "UPDATE", **fields: Any) -> SourceEvent:
    return SourceEvent(event_id=f"s{next(_ids)}", source="salesforce", entity="Product2",
                       record_id="01t000000000001AAA", change_type=change, fields=fields,
                       commit_timestamp=1_000 + next(_ids))


def commands(outcome: Any) -> dict[str, dict[str, Any]]:
    return {c.object: c.fields for c in outcome.commands}


def test_a_tims_item_becomes_a_product2_and_its_echo_links_the_pricebook_entry() -> None:
    row = new_row("IT000001")
    first = apply_event(row, item(), MAPPING, ours=False)
    assert commands(first)["Product2"] == {"ProductCode": "AR-40", "Name": "Argon 40 cf", "Family": "Gas",
                                           "QuantityUnitOfMeasure": "CYL", "TIMS_List_Price__c": 42.5,
                                           "IsActive": True, "Description": None}
    assert first.commands[0].external_id_field == "TIMS_Item_Number__c" and first.commands[0].external_id == "IT000001"
    echo = apply_event(row, product2("CREATE", ProductCode="AR-40", Name="Argon 40 cf", Family="Gas",
                                     QuantityUnitOfMeasure="CYL", TIMS_List_Price__c=42.5, IsActive=True,
                                     Description=None, TIMS_Item_Number__c="IT000001"), MAPPING, ours=True)
    assert echo.linked_product2 == "01t000000000001AAA"
    assert commands(echo) == {
        "item": {"external_id": "01t000000000001AAA"},
        "PricebookEntry": {"Pricebook2Id": "01s000000000001AAA", "Product2Id": "01t000000000001AAA",
                           "UnitPrice": 42.5, "IsActive": True}}
    assert echo.echo_fields == 7
    # the TIMS echo of our external_id write, and a replay of it: nothing more
    assert apply_event(row, item(external_id="01t000000000001AAA"), MAPPING, ours=True).commands == []
    price = apply_event(row, item(external_id="01t000000000001AAA", unit_price=44.999), MAPPING, ours=False)
    assert commands(price) == {"Product2": {"TIMS_List_Price__c": 45}, "PricebookEntry": {"UnitPrice": 45}}
    assert {c.version for c in price.commands} == {row["version"]} and row["version"] > echo.commands[0].version


def test_the_owner_wins_back_and_the_description_belongs_to_salesforce() -> None:
    row = new_row("IT000001")
    apply_event(row, item(description="cylinder"), MAPPING, ours=False)
    apply_event(row, product2("CREATE", Name="Argon 40 cf", Description="cylinder", TIMS_Item_Number__c="IT000001"),
                MAPPING, ours=True)
    edit = apply_event(row, product2(Name="Argon (promo)", Description="The welder's favourite"), MAPPING, ours=False)
    assert commands(edit) == {"Product2": {"Name": "Argon 40 cf"}, "item": {"description": "The welder's favourite"}}
    assert [(c["field"], c["winner"]["system"]) for c in edit.conflicts] == [("name", "tims")]
    back = apply_event(row, item(external_id="01t000000000001AAA", description="old text"), MAPPING, ours=False)
    assert commands(back) == {"item": {"description": "The welder's favourite"}}


def test_duplicates_and_bad_values() -> None:
    row = new_row("IT000001")
    event = item()
    apply_event(row, event, MAPPING, ours=False)
    assert apply_event(row, event, MAPPING, ours=False).duplicate
    before = dict(row)
    with pytest.raises(Unusable):
        apply_event(row, item(unit_price="lots"), MAPPING, ours=False)
    with pytest.raises(Unusable):
        apply_event(row, item(unit_price=-1), MAPPING, ours=False)
    assert row["fields"] == before["fields"]


def test_a_product_created_in_salesforce_alone_is_kept_and_written_nowhere() -> None:
    row = new_row("product2:01t000000000009AAA")
    outcome = apply_event(row, product2("CREATE", Name="Marketing bundle"), MAPPING, ours=False)
    assert outcome.commands == [] and row["product2_id"] == "01t000000000009AAA"
