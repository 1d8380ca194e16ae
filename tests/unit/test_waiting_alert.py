"""The waiting alert fires when a record has waited over an hour for its reference, for 15
minutes (promtool's rule unit tests), and names the flow and the kind of reference."""

from __future__ import annotations

from pathlib import Path

from tests.support.promql import check_alert_rules


def test_the_waiting_alert_fires_after_an_hour_and_names_the_flow(tmp_path: Path) -> None:
    # one sample a minute: the oldest order ages past an hour at minute 10; receivables stay young
    series = [
        {"series": 'connect_flow_waiting_oldest_seconds{flow="orders", reference="account", instance="w1"}',
         "values": "3000+60x40"},
        {"series": 'connect_flow_waiting_oldest_seconds{flow="receivables", reference="account", instance="w1"}',
         "values": "60x40"},
    ]
    check_alert_rules(tmp_path, series, [
        {"eval_time": "20m", "alertname": "ConnectReferenceWaitingLong", "exp_alerts": []},
        {"eval_time": "27m", "alertname": "ConnectReferenceWaitingLong", "exp_alerts": [{
            "exp_labels": {"flow": "orders", "reference": "account", "severity": "warning"},
            "exp_annotations": {
                "summary": "orders: a record has waited 1h 17m 0s for its account",
                "description": "An order (or a customer's receivables) names a record that is not linked yet: "
                               "an Account without TIMS_Customer_ID__c, a Product2 without its TIMS item. Link it "
                               "(the customer sync or the products flow does, once their sources have it) and the "
                               "waiting records are released."}}]},
    ])
