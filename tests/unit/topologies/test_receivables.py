"""The receivables roll-up: figures to the cent in Decimal, never counted twice whatever the
order and repetition of events, a corrected invoice replacing its amount, overdue by the
calendar, writes only where a value changed, an edit of our fields won back."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from connectors.envelope import SourceEvent
from topologies.receivables.rollup import (
    DEFAULT_MAPPING_DIR, Decision, ReceivablesMapping, Unusable, evaluate, figures, fold, link, load_mapping,
    new_row, observe,
)

MAPPING = load_mapping(DEFAULT_MAPPING_DIR)
TODAY = date(2026, 12, 6)
NOW = 1_700_000_000_000
_n = itertools.count(1)


def tims(entity: str, record_id: str, version: int, change: str = "UPDATE", **fields: Any) -> SourceEvent:
    return SourceEvent(event_id=f"t{next(_n)}", source="tims", entity=entity, record_id=record_id, change_type=change,
                       fields={"version": version, "customer_id": "C000001", **fields}, full_state=True,
                       commit_timestamp=NOW)


def invoice(record_id: str, version: int, total: float, day: str = "2026-11-01", due: str | None = "2026-12-01",
            **fields: Any) -> SourceEvent:
    return tims("invoice", record_id, version, invoice_id=record_id, total_amount=total, invoice_date=day,
                due_date=due, status=fields.pop("status", "open"), currency="USD", **fields)


def payment(record_id: str, version: int, amount: float, invoice_id: str | None = None,
            day: str = "2026-11-20") -> SourceEvent:
    return tims("payment", record_id, version, payment_id=record_id, amount=amount, payment_date=day,
                invoice_id=invoice_id, currency="USD")


def rolled(events: list[SourceEvent], today: date = TODAY) -> dict[str, Any]:
    row = new_row("C000001")
    for event in events:
        fold(row, event, MAPPING)
    return figures(row, MAPPING, today)[0]


def test_the_figures_to_the_cent() -> None:
    values = rolled([invoice("INV1", 1, 100.10, due="2026-11-15"), invoice("INV2", 1, 50.05, day="2026-11-20",
                                                                            due="2026-12-20"),
                     payment("PAY1", 1, 40.00, "INV1"), payment("PAY2", 1, 0.10, None, day="2026-11-25")])
    assert values == {
        "open_balance": 110.05, "overdue_amount": 60.0, "days_past_due": 21,
        "last_invoice_date": "2026-11-20", "last_invoice_amount": 50.05,
        "last_payment_date": "2026-11-25", "last_payment_amount": 0.1, "lifetime_revenue": 150.15,
        "credit_hold": False, "last_order_date": None, "last_purchased_products": None}


def test_a_corrected_invoice_replaces_its_amount_and_a_late_old_version_changes_nothing() -> None:
    row = new_row("C000001")
    assert fold(row, invoice("INV1", 1, 100), MAPPING)
    assert fold(row, invoice("INV1", 3, 80), MAPPING)
    assert not fold(row, invoice("INV1", 2, 999), MAPPING)
    assert not fold(row, invoice("INV1", 3, 80), MAPPING)
    assert figures(row, MAPPING, TODAY)[0]["lifetime_revenue"] == 80


def test_void_and_deleted_invoices_leave_the_figures_and_stay_gone() -> None:
    row = new_row("C000001")
    fold(row, invoice("INV1", 1, 100), MAPPING)
    fold(row, invoice("INV2", 1, 30), MAPPING)
    fold(row, invoice("INV1", 2, 100, status="void"), MAPPING)
    fold(row, invoice("INV2", 2, 30, change="DELETE"), MAPPING)
    assert not fold(row, invoice("INV2", 1, 30), MAPPING)  # a late event from before the delete
    values = figures(row, MAPPING, TODAY)[0]
    assert (values["lifetime_revenue"], values["open_balance"], values["last_invoice_date"]) == (0, 0, None)


def test_unapplied_credit_pays_the_oldest_due_first() -> None:
    values = rolled([invoice("INV1", 1, 100, due="2026-10-01"), invoice("INV2", 1, 100, due="2026-11-01"),
                     payment("PAY1", 1, 120)])
    assert (values["open_balance"], values["overdue_amount"], values["days_past_due"]) == (80, 80, 35)


def test_an_overpaid_invoice_credits_the_next() -> None:
    values = rolled([invoice("INV1", 1, 100, due="2026-10-01"), invoice("INV2", 1, 100, due="2026-11-01"),
                     payment("PAY1", 1, 150, "INV1")])
    assert (values["open_balance"], values["overdue_amount"], values["days_past_due"]) == (50, 50, 35)


def test_due_date_from_payment_terms_when_the_invoice_names_none() -> None:
    row = new_row("C000001")
    fold(row, tims("customer", "C000001", 1, payment_terms="NET15", credit_limit=None, status="active"), MAPPING)
    fold(row, invoice("INV1", 1, 10, day="2026-11-01", due=None), MAPPING)
    values, review_on = figures(row, MAPPING, date(2026, 11, 16))
    assert (values["overdue_amount"], review_on) == (0, "2026-11-17")
    values, review_on = figures(row, MAPPING, date(2026, 11, 17))
    assert (values["overdue_amount"], values["days_past_due"], review_on) == (10, 1, "2026-11-18")


def test_credit_hold_from_tims_or_over_the_limit() -> None:
    row = new_row("C000001")
    fold(row, tims("customer", "C000001", 1, credit_limit=100, status="active"), MAPPING)
    fold(row, invoice("INV1", 1, 100), MAPPING)
    assert figures(row, MAPPING, TODAY)[0]["credit_hold"] is False
    fold(row, invoice("INV2", 1, 0.01), MAPPING)
    assert figures(row, MAPPING, TODAY)[0]["credit_hold"] is True
    fold(row, tims("customer", "C000001", 2, credit_limit=None, status="on_hold"), MAPPING)
    assert not fold(row, tims("customer", "C000001", 1, credit_limit=1000, status="active"), MAPPING)
    assert figures(row, MAPPING, TODAY)[0]["credit_hold"] is True


def test_what_the_roll_up_cannot_take() -> None:
    row = new_row("C000001")
    with pytest.raises(Unusable, match="in EUR"):
        fold(row, tims("invoice", "INV1", 1, total_amount=5, currency="EUR"), MAPPING)
    with pytest.raises(Unusable, match="version"):
        fold(row, tims("invoice", "INV1", 0, total_amount=5), MAPPING)
    with pytest.raises(Unusable, match="not a number"):
        fold(row, tims("payment", "PAY1", 1, amount="lots"), MAPPING)
    with pytest.raises(Unusable, match="not a date"):
        fold(row, tims("invoice", "INV1", 1, total_amount=5, due_date="soon"), MAPPING)
    assert row == new_row("C000001")


def test_writes_wait_for_the_account_then_go_once_and_only_where_changed() -> None:
    row = new_row("C000001")
    fold(row, invoice("INV1", 1, 100), MAPPING)
    decision = evaluate(row, MAPPING, TODAY, NOW)
    assert decision.commands == [] and row["waiting_since"] == NOW
    link(row, "salesforce.Account", "001A")
    decision = evaluate(row, MAPPING, TODAY, NOW + 5)
    assert [(c.object, c.external_id_field, c.external_id) for c in decision.commands] == [("Account", "Id", "001A")]
    assert decision.commands[0].fields["TIMS_Open_Balance__c"] == 100 and row["waiting_since"] is None
    assert evaluate(row, MAPPING, TODAY, NOW).commands == []  # quiet once agreed
    link(row, "pardot.prospect", "42")
    fold(row, payment("PAY1", 1, 25, "INV1"), MAPPING)
    decision = evaluate(row, MAPPING, TODAY, NOW)
    account, prospect = decision.commands
    assert set(account.fields) == {"TIMS_Open_Balance__c", "TIMS_Overdue_Amount__c", "TIMS_Last_Payment_Date__c",
                                   "TIMS_Last_Payment_Amount__c"}
    assert (prospect.system, prospect.external_id_field, prospect.external_id) == ("pardot", "id", "42")
    assert prospect.fields["Open_Balance__c"] == 75 and prospect.fields["Credit_Hold__c"] is False
    assert account.version > 1


def test_nothing_is_written_for_a_customer_with_no_receivables() -> None:
    row = new_row("C000001")
    link(row, "salesforce.Account", "001A")
    fold(row, tims("customer", "C000001", 1, status="active", credit_limit=10), MAPPING)
    assert evaluate(row, MAPPING, TODAY, NOW).commands == []


def test_an_edit_of_our_field_in_salesforce_is_won_back_and_our_echo_is_not() -> None:
    row = new_row("C000001")
    link(row, "salesforce.Account", "001A")
    fold(row, invoice("INV1", 1, 100), MAPPING)
    evaluate(row, MAPPING, TODAY, NOW)
    decision = Decision()
    observe(row, "salesforce.Account", "001A", {"TIMS_Open_Balance__c": 100.0}, None, MAPPING, NOW, decision)
    assert (decision.echo_fields, decision.conflicts) == (1, [])
    observe(row, "salesforce.Account", "001A", {"TIMS_Open_Balance__c": 5}, None, MAPPING, NOW, decision)
    assert [c["field"] for c in decision.conflicts] == ["TIMS_Open_Balance__c"]
    again = evaluate(row, MAPPING, TODAY, NOW, decision=decision)
    assert [c.fields for c in again.commands] == [{"TIMS_Open_Balance__c": 100}]


def test_the_mapping_names_known_targets_and_values() -> None:
    with pytest.raises(ValueError, match="not one of"):
        ReceivablesMapping(targets={"salesforce.Lead": {"X__c": "open_balance"}})
    with pytest.raises(ValueError, match="not one of"):
        ReceivablesMapping(targets={"salesforce.Account": {"X__c": "balance"}})
    with pytest.raises(ValueError, match="ISO 4217"):
        ReceivablesMapping(currency="XYZ")


_EVENTS = [invoice("INV1", 1, 100.10), invoice("INV1", 2, 90.10), invoice("INV2", 1, 40, due="2026-12-30"),
           payment("PAY1", 1, 30, "INV1"), payment("PAY1", 2, 35.55, "INV1"), payment("PAY2", 1, 12.34),
           payment("PAY2", 2, 2.34), invoice("INV3", 1, 7, status="void"), payment("PAY3", 1, 5, "INV9"),
           tims("payment", "PAY4", 1, payment_id="PAY4", amount=1, payment_date="2026-11-02"),
           tims("payment", "PAY4", 2, "DELETE", payment_id="PAY4", amount=1, payment_date="2026-11-02")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(range(len(_EVENTS))), min_size=0, max_size=30), st.randoms(use_true_random=False))
def test_any_order_and_any_repetition_gives_the_same_figures(extra: list[int], rng: Any) -> None:
    """Redelivered, replayed and reordered events: every event at least once, in any order."""
    order = list(range(len(_EVENTS))) + extra
    rng.shuffle(order)
    assert rolled([_EVENTS[i] for i in order]) == rolled(_EVENTS)
    expected = rolled(_EVENTS)
    assert expected["open_balance"] == pytest.approx(90.10 + 40 - 35.55 - 2.34 - 5)


def test_mappings_check_and_preview(tmp_path: Any) -> None:
    from topologies.receivables import FLOW

    tool = FLOW.mapping_tool
    assert tool is not None and tool.names(DEFAULT_MAPPING_DIR) == ["receivables"]
    assert "targets: 3 entries" in tool.check(DEFAULT_MAPPING_DIR)
    events = tmp_path / "events.json"
    events.write_text('[{"entity": "invoice", "fields": {"invoice_id": "INV1", "customer_id": "C1", '
                      '"total_amount": 10.1, "invoice_date": "2026-12-01"}}]')
    shown = tool.preview(DEFAULT_MAPPING_DIR, "receivables", str(events))
    assert '"TIMS_Open_Balance__c": 10.1' in shown and '"Open_Balance__c": 10.1' in shown
    events.write_text('[{"entity": "order"}]')
    with pytest.raises(ValueError, match="event 1 is not a TIMS"):
        tool.preview(DEFAULT_MAPPING_DIR, "receivables", str(events))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "receivables.yaml").write_text("targets: {salesforce.Account: {X__c: balance}}\n")
    with pytest.raises(ValueError, match=r"receivables.yaml: .*'balance' is not one of"):
        tool.check(broken)


@pytest.mark.parametrize("flow", ["orders", "products", "activities", "lists", "receivables"])
def test_every_flow_with_one_mapping_file_is_checked(flow: str) -> None:
    from topologies.registry import flow_named

    found = flow_named(flow)
    assert found.mapping_tool is not None and found.mappings is not None
    assert found.mapping_tool.check(found.mappings).startswith("ok: ")


def test_the_last_purchase_for_marketing() -> None:
    row = new_row("C000001")

    def order(record_id: str, version: int, day: str, status: str, *lines: tuple[str, int, float]) -> SourceEvent:
        return tims("sales_order", record_id, version, sales_order_id=record_id, order_date=day, status=status,
                    lines=[{"item_id": i, "quantity": q, "unit_price": p} for i, q, p in lines])

    names = {"IT1": "Argon 40 cf", "IT2": "CO2 20 lb"}.get
    fold(row, order("SO1", 1, "2026-11-01", "invoiced", ("IT1", 1, 10.0)), MAPPING)
    fold(row, order("SO2", 1, "2026-11-20", "open", ("IT1", 1, 10.0), ("IT2", 3, 27.25), ("IT1", 1, 1.0)), MAPPING)
    fold(row, order("SO3", 1, "2026-11-25", "draft", ("IT9", 1, 5.0)), MAPPING)
    values = figures(row, MAPPING, TODAY, names)[0]
    assert (values["last_order_date"], values["last_purchased_products"]) == ("2026-11-20", "CO2 20 lb, Argon 40 cf")
    fold(row, order("SO2", 2, "2026-11-20", "cancelled"), MAPPING)
    values = figures(row, MAPPING, TODAY, names)[0]
    assert (values["last_order_date"], values["last_purchased_products"]) == ("2026-11-01", "Argon 40 cf")
    link(row, "pardot.prospect", "42")
    (command,) = evaluate(row, MAPPING, TODAY, NOW, names=names).commands
    assert command.fields["Last_Purchased_Products__c"] == "Argon 40 cf"
    assert command.fields["Open_Balance__c"] == 0  # an order alone makes the customer active


def test_anomalies_flagged_and_held_until_released() -> None:
    from quality.anomalies import AnomalyDetector
    from topologies.receivables.rollup import judge, release

    mapping = MAPPING.model_copy(update={"hold": ("duplicate_payment", "credit_limit_jump")})
    detector, row, decision = AnomalyDetector(), new_row("C000001"), Decision()

    def take(event: SourceEvent) -> None:
        entity = event.entity
        bucket = {"invoice": "invoices", "payment": "payments"}.get(entity)
        before = (dict(row["record"]) or None) if entity == "customer" else row[bucket].get(event.record_id)
        assert fold(row, event, mapping)
        judge(row, event, before, detector, mapping, NOW, decision)

    take(tims("customer", "C000001", 1, credit_limit=1000, payment_terms="NET30", status="active"))
    take(invoice("INV1", 1, 500))
    take(payment("PAY1", 1, 200, "INV1", day="2026-11-20"))
    take(payment("PAY2", 1, 200, "INV1", day="2026-11-21"))  # the same amount a day later: a duplicate
    assert [(a["rule"], a["subject"], a["held"]) for a in decision.anomalies] == [
        ("duplicate_payment", "payments:PAY2", True)]
    assert figures(row, mapping, TODAY)[0]["open_balance"] == 300, "the held payment does not count"
    assert release(row, "payments:PAY2") and not release(row, "payments:PAY2")
    assert figures(row, mapping, TODAY)[0]["open_balance"] == 100

    take(tims("customer", "C000001", 2, credit_limit=50_000, payment_terms="NET30", status="active"))
    assert decision.anomalies[-1]["rule"] == "credit_limit_jump" and decision.anomalies[-1]["held"]
    assert row["record"]["credit_limit"] == "1000.00" and row["record"]["v"] == 2
    assert not fold(row, tims("customer", "C000001", 2, credit_limit=50_000), mapping), "not taken twice"
    assert release(row, "record") and row["record"]["credit_limit"] == "50000.00"

    unwatched = MAPPING.model_copy(update={"watch_anomalies": False})
    quiet = Decision()
    judge(row, invoice("INV9", 1, 0.0), None, detector, unwatched, NOW, quiet)
    assert quiet.anomalies == []
