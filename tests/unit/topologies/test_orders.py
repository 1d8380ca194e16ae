"""The order record: a won Opportunity becomes one TIMS order once its links exist; money is
checked in Decimal; TIMS status moves forward only; a TIMS order becomes one Opportunity."""

from __future__ import annotations

import itertools
from typing import Any

from connectors.envelope import SourceEvent
from topologies.orders.order import (
    DEFAULT_MAPPING_DIR, apply_salesforce, apply_tims, load_mapping, new_row, recheck, row_key_of_tims_order,
)
from topologies.orders.status import advances, rank

MAPPING = load_mapping(DEFAULT_MAPPING_DIR)
OPP, ACCOUNT = "006000000000001AAA", "001000000000001AAA"
P1, P2 = "01t000000000001AAA", "01t000000000002AAA"
_n = itertools.count(1)
NOW = 1_700_000_000_000


def sf(entity: str, record_id: str, change: str = "UPDATE", **fields: Any) -> SourceEvent:
    return SourceEvent(event_id=f"sf{next(_n)}", source="salesforce", entity=entity, record_id=record_id,
                       change_type=change, fields=fields, commit_timestamp=NOW + next(_n))


def so(status: str, version: int, external_id: str | None = OPP, **fields: Any) -> SourceEvent:
    record = {"sales_order_id": "SO000007", "external_id": external_id, "customer_id": "C000001", "status": status,
              "version": version, "currency": "USD", "ship_date": None, "tracking_number": None,
              "lines": [{"item_id": "IT1", "quantity": 2, "unit_price": 10.125, "amount": 20.25}],
              "total_amount": 20.25, "order_date": "2026-12-01", **fields}
    return SourceEvent(event_id=f"so{next(_n)}", source="tims", entity="sales_order", record_id="SO000007",
                       change_type="UPDATE", fields=record, full_state=True, commit_timestamp=NOW + next(_n))


def won_opportunity(row: dict[str, Any], links: dict[str, str]) -> list[Any]:
    decisions = [
        apply_salesforce(row, sf("Opportunity", OPP, "CREATE", Name="Big gas", AccountId=ACCOUNT,
                                 StageName="Prospecting", CloseDate="2026-12-01", Amount=None), MAPPING, links, NOW),
        apply_salesforce(row, sf("OpportunityLineItem", "00k1", "CREATE", OpportunityId=OPP, Product2Id=P1,
                                 Quantity=3.0, UnitPrice=12.5), MAPPING, links, NOW),
        apply_salesforce(row, sf("OpportunityLineItem", "00k2", "CREATE", OpportunityId=OPP, Product2Id=P2,
                                 Quantity=1.0, UnitPrice=0.105), MAPPING, links, NOW),
        apply_salesforce(row, sf("Opportunity", OPP, Amount=37.61), MAPPING, links, NOW),
    ]
    assert all(not d.commands for d in decisions)
    return [*decisions, apply_salesforce(row, sf("Opportunity", OPP, StageName="Closed Won"), MAPPING, links, NOW)]


def test_a_won_opportunity_waits_for_its_links_then_becomes_one_tims_order() -> None:
    row, links = new_row(OPP), {f"product2:{P1}": "IT1"}
    won = won_opportunity(row, links)[-1]
    assert won.commands == [] and won.wait_for == [f"account:{ACCOUNT}", f"product2:{P2}"]
    links.update({f"account:{ACCOUNT}": "C000001", f"product2:{P2}": "IT2"})
    released = recheck(row, MAPPING, links, NOW + 5_000)
    (command,) = released.commands
    assert (command.system, command.object, command.external_id_field, command.external_id) == (
        "tims", "sales_order", "external_id", OPP)
    assert command.fields == {"customer_id": "C000001", "currency": "USD", "order_date": "2026-12-01", "lines": [
        {"line_no": 1, "item_id": "IT1", "quantity": 3, "unit_price": 12.5, "description": None},
        {"line_no": 2, "item_id": "IT2", "quantity": 1, "unit_price": 0.105, "description": None}]}
    assert row["waiting"] is None
    # Closed Won again (a replay, an edit): never a second order
    assert apply_salesforce(row, sf("Opportunity", OPP, StageName="Closed Won", Amount=40.0), MAPPING, links,
                            NOW).commands == []


def test_lines_that_do_not_sum_to_the_amount_hold_the_order_until_they_do() -> None:
    row = new_row(OPP)
    links = {f"account:{ACCOUNT}": "C000001", f"product2:{P1}": "IT1", f"product2:{P2}": "IT2"}
    apply_salesforce(row, sf("Opportunity", OPP, "CREATE", Name="x", AccountId=ACCOUNT, StageName="Closed Won",
                             CloseDate="2026-12-01", Amount=50.0), MAPPING, links, NOW)
    held = apply_salesforce(row, sf("OpportunityLineItem", "00k1", "CREATE", OpportunityId=OPP, Product2Id=P1,
                                    Quantity=3.0, UnitPrice=12.5), MAPPING, links, NOW)
    assert held.commands == [] and held.rejected is None and held.wait_for == [f"total:{OPP}"]  # lines may come
    final = recheck(row, MAPPING, links, NOW + 60_000, final=True)
    assert final.rejected == "lines sum to 37.50 USD, the Opportunity Amount is 50.00" and final.commands == []
    again = apply_salesforce(row, sf("Opportunity", OPP, Name="y"), MAPPING, links, NOW)
    assert again.rejected is None and again.commands == []
    assert recheck(row, MAPPING, links, NOW + 120_000, final=True).rejected is None  # quarantined once
    fixed = apply_salesforce(row, sf("OpportunityLineItem", "00k2", "CREATE", OpportunityId=OPP, Product2Id=P2,
                                     Quantity=1.0, UnitPrice=12.5), MAPPING, links, NOW)
    assert [c.object for c in fixed.commands] == ["sales_order"] and row["held"] is None


def test_tims_status_lands_on_the_opportunity_forward_only() -> None:
    row, links = new_row(OPP), {}
    row["order_sent"] = True
    opened = apply_tims(row, so("open", 1), MAPPING, links, NOW)
    assert opened.commands[0].fields == {"TIMS_Sales_Order_ID__c": "SO000007", "TIMS_Order_Status__c": "open"}
    assert opened.commands[0].external_id_field == "Id" and opened.commands[0].external_id == OPP
    shipped = so("shipped", 3, ship_date="2026-12-03", tracking_number="1Z999")
    picked = so("picked", 2)
    assert apply_tims(row, shipped, MAPPING, links, NOW).commands[0].fields == {
        "TIMS_Order_Status__c": "shipped", "Ship_Date__c": "2026-12-03", "Tracking__c": "1Z999"}
    assert apply_tims(row, picked, MAPPING, links, NOW).stale  # late
    assert apply_tims(row, shipped, MAPPING, links, NOW).duplicate  # redelivered
    assert apply_tims(row, so("open", 1), MAPPING, links, NOW).stale  # replayed
    assert apply_tims(row, so("invoiced", 4, ship_date="2026-12-03", tracking_number="1Z999"), MAPPING, links,
                      NOW).commands[0].fields == {"TIMS_Order_Status__c": "invoiced"}
    assert row["written"]["TIMS_Order_Status__c"] == "invoiced"
    # our own write coming back from Salesforce is an echo
    echo = apply_salesforce(row, sf("Opportunity", OPP, TIMS_Order_Status__c="invoiced"), MAPPING, links, NOW)
    assert echo.echo_fields == 1 and echo.commands == []


def test_status_rank() -> None:
    assert rank("open") < rank("picked") < rank("shipped") < rank("invoiced") < rank("cancelled")
    assert advances(None, None, "open", 1) and not advances("shipped", 3, "picked", 4)
    assert advances("shipped", 3, "shipped", 4) and not advances("shipped", 3, "invoiced", 3)
    assert not advances(None, None, "teleported", 9)


def test_an_order_entered_in_tims_becomes_one_closed_won_opportunity_once_its_customer_is_linked() -> None:
    key = row_key_of_tims_order({"external_id": None}, "SO000007")
    assert key == "so:SO000007" and row_key_of_tims_order({"external_id": OPP}, "SO000007") == OPP
    row, links = new_row(key), {}
    waiting = apply_tims(row, so("open", 1, external_id=None), MAPPING, links, NOW)
    assert waiting.wait_for == ["customer:C000001"] and waiting.commands == []
    links["customer:C000001"] = ACCOUNT
    (command,) = recheck(row, MAPPING, links, NOW).commands
    assert (command.object, command.external_id_field, command.external_id) == (
        "Opportunity", "TIMS_Sales_Order_ID__c", "SO000007")
    assert command.fields == {"Name": "TIMS order SO000007", "AccountId": ACCOUNT, "StageName": "Closed Won",
                              "CloseDate": "2026-12-01", "Amount": 20.25, "CurrencyIsoCode": "USD",
                              "TIMS_Sales_Order_ID__c": "SO000007", "TIMS_Order_Status__c": "open"}
    shipped = apply_tims(row, so("shipped", 2, external_id=None), MAPPING, links, NOW)
    assert [c.fields for c in shipped.commands] == [{"TIMS_Order_Status__c": "shipped"}]


def test_a_tims_order_whose_lines_do_not_sum_to_its_total_is_held() -> None:
    row = new_row("so:SO000007")
    held = apply_tims(row, so("open", 1, external_id=None, total_amount=99.0), MAPPING, {"customer:C000001": ACCOUNT},
                      NOW)
    assert held.commands == [] and "lines sum to 20.25 USD, the order total is 99.00" in (held.rejected or "")
    bad_currency = apply_tims(new_row("so:SO000008"), so("open", 1, external_id=None, currency="XXY"), MAPPING, {}, NOW)
    assert bad_currency.rejected and "ISO 4217" in bad_currency.rejected
