"""Anomaly rules (quality/anomalies): each rule on a hand-made stream, flags and silences."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from quality.anomalies import AnomalyDetector, CustomerChange, MoneyEvent
from quality.anomalies.detector import terms_days
from quality.anomalies.robust import modified_z

START = datetime(2026, 1, 1)


def money(n: int, kind: str, amount: str, day: float, customer: str = "C1") -> MoneyEvent:
    return MoneyEvent(f"e{n}", kind, customer, Decimal(amount), START + timedelta(days=day))  # type: ignore[arg-type]


def rules(detector: AnomalyDetector, event: MoneyEvent | CustomerChange) -> set[str]:
    return {flag.rule for flag in detector.observe(event)}


def usual(detector: AnomalyDetector, count: int = 12, customer: str = "C1") -> None:
    for n in range(count):
        assert rules(detector, money(1000 + n, "invoice", str(1000 + 37 * (n % 5)), n, customer)) == set()


def test_an_amount_far_outside_the_customers_own_history_is_flagged_with_its_evidence() -> None:
    detector = AnomalyDetector()
    usual(detector)
    flags = detector.observe(money(1, "invoice", "45000.00", 20))
    assert [f.rule for f in flags] == ["amount_outlier"]
    assert flags[0].evidence["basis"] == "customer" and flags[0].score > 1
    assert rules(detector, money(2, "invoice", "1100.00", 21)) == set()


def test_a_flagged_amount_does_not_join_the_history_it_is_judged_by() -> None:
    detector = AnomalyDetector()
    usual(detector)
    for n in range(5):
        assert "amount_outlier" in rules(detector, money(n, "invoice", "45000.00", 20 + n))


def test_a_new_customer_is_judged_against_everyone() -> None:
    detector = AnomalyDetector()
    usual(detector, customer="C1")
    flags = detector.observe(money(1, "invoice", "90000.00", 30, customer="NEW"))
    assert flags and flags[0].evidence["basis"] == "overall"


def test_the_same_payment_twice_within_the_window_is_a_duplicate_and_a_month_later_is_not() -> None:
    detector = AnomalyDetector()
    assert rules(detector, money(1, "payment", "250.00", 1)) == set()
    assert rules(detector, money(2, "payment", "250.00", 1.5)) == {"duplicate_payment"}
    assert rules(detector, money(3, "payment", "250.00", 31)) == set()
    assert rules(detector, money(4, "payment", "250.01", 31.1)) == set()


def test_zero_and_negative_totals() -> None:
    detector = AnomalyDetector()
    assert rules(detector, money(1, "invoice", "0.00", 1)) == {"non_positive_total"}
    assert rules(detector, money(2, "order", "-5.50", 1)) == {"non_positive_total"}


def test_credit_limit_jumps_and_small_raises() -> None:
    detector = AnomalyDetector()
    jump = CustomerChange("c1", "C1", "credit_limit", 5000, 50000, START)
    raise_ = CustomerChange("c2", "C1", "credit_limit", 5000, 6500, START)
    small_base = CustomerChange("c3", "C1", "credit_limit", 100, 900, START)  # ×9 but only 800 more
    assert rules(detector, jump) == {"credit_limit_jump"}
    assert rules(detector, raise_) == set() and rules(detector, small_base) == set()


def test_payment_terms_lengthened_by_a_month_or_more() -> None:
    detector = AnomalyDetector()
    assert rules(detector, CustomerChange("t1", "C1", "payment_terms", "NET30", "NET90", START)) == {"payment_terms_change"}
    assert rules(detector, CustomerChange("t2", "C1", "payment_terms", "COD", "NET30", START)) == {"payment_terms_change"}
    assert rules(detector, CustomerChange("t3", "C1", "payment_terms", "NET30", "NET45", START)) == set()
    assert rules(detector, CustomerChange("t4", "C1", "payment_terms", "NET60", "NET30", START)) == set()
    assert terms_days("net 15") == 15 and terms_days("whatever") is None


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=40), st.floats(min_value=-1e6, max_value=1e6))
def test_the_modified_z_score_does_not_move_when_the_history_is_shifted(history: list[float], value: float) -> None:
    z, centre, spread = modified_z(value, history, floor=1.0)
    shifted, _, _ = modified_z(value + 10.0, [x + 10.0 for x in history], floor=1.0)
    assert abs(z - shifted) < 1e-6 * max(1.0, abs(z))
    assert spread >= 0


def test_a_payment_below_the_usual_is_a_partial_payment_not_an_outlier() -> None:
    detector = AnomalyDetector()
    for n in range(12):
        detector.observe(money(2000 + n, "payment", str(1000 + 37 * (n % 5)), n * 3))
    assert "amount_outlier" not in rules(detector, money(1, "payment", "20.00", 40))
    assert "amount_outlier" in rules(detector, money(2, "payment", "40000.00", 41))


def test_a_customer_far_from_the_crowd_is_not_flagged_forever() -> None:
    detector = AnomalyDetector()
    for customer in ("C1", "C2", "C3"):
        usual(detector, customer=customer)
    big = [rules(detector, money(n, "invoice", "900000.00", 20 + n, customer="BIG")) for n in range(12)]
    assert "amount_outlier" in big[0]  # judged against everyone at first
    assert big[-1] == set()  # then against its own history, which its first amounts joined
