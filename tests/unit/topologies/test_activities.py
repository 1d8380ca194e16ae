"""Activities → Tasks: one per activity or one roll-up per day, never two, with the ERP context."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from connectors.envelope import SourceEvent
from topologies.activities.agents import row_key
from topologies.activities.context import Unusable, describe, fold_tims, new_context_row, summary
from topologies.activities.tasks import DEFAULT_MAPPING_DIR, ActivityMapping, apply_pardot, load_mapping, new_person_row

MAPPING = load_mapping(DEFAULT_MAPPING_DIR)
CONTACT, LEAD = "003000000000001AAA", "00Q000000000001AAA"
_ids = itertools.count(1)


def prospect(change: str = "UPDATE", stamp: int = 10_000, **fields: Any) -> SourceEvent:
    return SourceEvent(event_id=f"p{next(_ids)}", source="pardot", entity="prospect", record_id="1001",
                       change_type=change, fields={"id": 1001, **fields}, full_state=True, commit_timestamp=stamp)


def activity(activity_id: int, type_: int, type_name: str, details: str = "",
             at: str = "2026-12-06T10:15:00+00:00") -> SourceEvent:
    return SourceEvent(event_id=f"pardot:visitor_activity:{activity_id}:{at}", source="pardot",
                       entity="visitor_activity", record_id=str(activity_id), change_type="CREATE",
                       fields={"id": activity_id, "prospectId": 1001, "type": type_, "typeName": type_name,
                               "details": details, "createdAt": at, "updatedAt": at}, full_state=True,
                       commit_timestamp=20_000)


def tims(entity: str, record_id: str, version: int, change: str = "UPDATE", **fields: Any) -> SourceEvent:
    return SourceEvent(event_id=f"tims:{next(_ids)}", source="tims", entity=entity, record_id=record_id,
                       change_type=change, fields={"version": version, **fields}, full_state=True,
                       commit_timestamp=30_000)


def no_context(_: list[str]) -> None:
    return None


def test_events_go_to_their_prospect_or_customer_row() -> None:
    assert row_key(activity(1, 4, "Form Handler")) == "prospect:1001"
    assert row_key(prospect()) == "prospect:1001"
    assert row_key(tims("customer", "C000001", 1)) == "customer:C000001"
    assert row_key(tims("invoice", "INV000001", 1, customer_id="C000001")) == "customer:C000001"
    assert row_key(tims("invoice", "INV000001", 1)) is None


def test_activities_wait_for_the_salesforce_record_then_become_tasks_once() -> None:
    row = new_person_row("prospect:1001")
    parked = apply_pardot(row, activity(4001, 4, "Form Handler", "website-lead"), MAPPING, no_context)
    assert parked.commands == [] and parked.parked == 1
    assert apply_pardot(row, activity(4001, 4, "Form Handler", "website-lead"), MAPPING, no_context).duplicate
    linked = apply_pardot(row, prospect(salesforceLeadId=LEAD), MAPPING, no_context)
    [task] = linked.commands
    assert (task.object, task.external_id_field, task.external_id) == ("Task", "Pardot_Activity_Key__c", "pardot:4001")
    assert task.fields["WhoId"] == LEAD and task.fields["Subject"] == "Pardot: form website-lead"
    assert task.fields["ActivityDate"] == "2026-12-06" and task.fields["Status"] == "Completed"
    assert task.fields["TIMS_Open_Orders__c"] is None and row["pending"] == []
    again = apply_pardot(row, activity(4001, 4, "Form Handler", "website-lead"), MAPPING, no_context)
    assert again.duplicate and again.commands == []
    converted = apply_pardot(row, prospect(stamp=11_000, salesforceLeadId=LEAD, salesforceContactId=CONTACT),
                             MAPPING, no_context)
    assert converted.commands == [] and row["who"] == CONTACT
    late = apply_pardot(row, prospect(stamp=9_000, salesforceLeadId=LEAD), MAPPING, no_context)
    assert late.stale and row["who"] == CONTACT


def test_page_views_roll_up_into_one_task_per_day_counted_once_each() -> None:
    row = new_person_row("prospect:1001")
    apply_pardot(row, prospect(salesforceContactId=CONTACT), MAPPING, no_context)
    first = apply_pardot(row, activity(1, 2, "View", "/pricing", "2026-12-06T09:00:00Z"), MAPPING, no_context)
    second = apply_pardot(row, activity(2, 2, "View", "/cylinders", "2026-12-06T09:05:00Z"), MAPPING, no_context)
    assert apply_pardot(row, activity(2, 2, "View", "/cylinders", "2026-12-06T09:05:00Z"), MAPPING,
                        no_context).duplicate
    next_day = apply_pardot(row, activity(3, 2, "View", "/pricing", "2026-12-07T08:00:00Z"), MAPPING, no_context)
    keys = {c.external_id for c in (*first.commands, *second.commands, *next_day.commands)}
    assert keys == {"pardot:1001:page_view:2026-12-06", "pardot:1001:page_view:2026-12-07"}
    [update] = second.commands
    assert update.version == 2 and update.fields["Subject"] == "Pardot: 2 page views on 2026-12-06"
    assert "09:05 View: /cylinders" in update.fields["Description"]
    skipped = apply_pardot(row, activity(4, 6, "Sent", "newsletter"), MAPPING, no_context)
    assert skipped.commands == [] and skipped.skipped == 1
    old = apply_pardot(row, activity(5, 2, "View", "/", "2026-10-01T08:00:00Z"), MAPPING, no_context)
    assert old.commands == [] and "older than the 35 days" in old.quarantined[0][0]


def test_an_activity_without_a_date_is_quarantined_and_unlisted_types_follow_the_mapping() -> None:
    row = new_person_row("prospect:1001")
    apply_pardot(row, prospect(salesforceContactId=CONTACT), MAPPING, no_context)
    bad = apply_pardot(row, activity(7, 4, "Form Handler", "x", at="yesterday"), MAPPING, no_context)
    assert bad.commands == [] and "is not a date-time" in bad.quarantined[0][0]
    assert apply_pardot(row, activity(8, 99, "Chat"), MAPPING, no_context).skipped == 1
    each = MAPPING.model_copy(update={"unlisted": "each"})
    [task] = apply_pardot(row, activity(9, 99, "Chat", "hello"), each, no_context).commands
    assert task.fields["Subject"] == "Chat: hello"


def test_erp_context_follows_tims_versions_and_rides_on_the_task() -> None:
    ctx = new_context_row("customer:C000001")
    assert fold_tims(ctx, tims("customer", "C000001", 2, external_id=CONTACT, payment_terms="NET30",
                               credit_limit=5000.0, total_revenue=1200.0, status="active"), "USD")
    assert not fold_tims(ctx, tims("customer", "C000001", 1, external_id=None), "USD"), "an older version"
    fold_tims(ctx, tims("sales_order", "SO000001", 1, customer_id="C000001", status="open", total_amount=100.1), "USD")
    fold_tims(ctx, tims("sales_order", "SO000002", 1, customer_id="C000001", status="open", total_amount=20), "USD")
    fold_tims(ctx, tims("sales_order", "SO000002", 3, customer_id="C000001", status="closed", total_amount=20), "USD")
    assert not fold_tims(ctx, tims("sales_order", "SO000002", 2, customer_id="C000001", status="open",
                                   total_amount=20), "USD"), "a late event does not reopen a closed order"
    fold_tims(ctx, tims("invoice", "INV000001", 1, customer_id="C000001", status="open", invoice_date="2026-11-02",
                        total_amount=300.0, balance_due=300.0), "USD")
    fold_tims(ctx, tims("invoice", "INV000002", 1, customer_id="C000001", status="open", invoice_date="2026-12-01",
                        total_amount=80.5, balance_due=80.5), "USD")
    fold_tims(ctx, tims("invoice", "INV000001", 2, customer_id="C000001", status="paid", invoice_date="2026-11-02",
                        total_amount=300.0, balance_due=0.0), "USD")
    context = summary(ctx, "USD")
    assert context["open_orders"] == 1 and context["open_order_amount"] == "100.10"
    assert context["balance"] == "80.50" and context["last_invoice"] == "INV000002"
    assert context["payment_terms"] == "NET30"
    text = describe(context)
    assert "Open orders: 1 (100.10 USD)" in text and "Last invoice: INV000002 of 2026-12-01, 80.50 USD" in text
    assert "Terms NET30; credit limit 5000.0 USD" in text
    with pytest.raises(Unusable):
        fold_tims(ctx, tims("invoice", "INV000003", 1, customer_id="C000001", status="open", balance_due="lots"), "USD")

    row = new_person_row("prospect:1001")
    apply_pardot(row, prospect(salesforceContactId=CONTACT), MAPPING, no_context)
    [task] = apply_pardot(row, activity(11, 1, "Click", "https://example.com/offer"), MAPPING,
                          lambda ids: context if CONTACT in ids else None).commands
    assert task.fields["TIMS_Open_Orders__c"] == 1 and task.fields["TIMS_Open_Balance__c"] == 80.5
    assert task.fields["TIMS_Last_Invoice__c"] == "INV000002"
    assert "TIMS customer C000001" in task.fields["Description"]


def test_the_mapping_refuses_what_it_cannot_honour(tmp_path: Path) -> None:
    base = MAPPING.model_dump()
    for change, error in (({"types": [*base["types"], base["types"][0]]}, "listed twice"),
                          ({"context_fields": {"X__c": "mood"}}, "unknown value"),
                          ({"types": [{**base["types"][0], "subject": "{when}"}]}, "unknown placeholder"),
                          ({"currency": "XYZ"}, "ISO 4217")):
        with pytest.raises(ValueError, match=error):
            ActivityMapping.model_validate({**base, **change})
