"""The source-rate alert (issue #16, "a source whose event rate collapses"): it fires when a
busy source's events fall below a tenth of their 3-hour rate for 15 minutes, and stays silent
for a steady source and for one that was always quiet (promtool's rule unit tests)."""

from __future__ import annotations

from pathlib import Path

from tests.support.promql import check_alert_rules


def test_the_rate_alert_fires_when_a_busy_source_goes_quiet(tmp_path: Path) -> None:
    # one sample a minute over 4 hours: TIMS sends 60 events a minute, then none from minute 180;
    # Salesforce goes on at 60 a minute; Pardot sends one event every ten minutes throughout
    series = [
        {"series": 'connect_flow_events_in_total{flow="customer_sync", source="tims", entity="customer", instance="w1"}',
         "values": "0+60x180 10800x60"},
        {"series": 'connect_flow_events_in_total{flow="customer_sync", source="salesforce", entity="Contact", '
                   'instance="w1"}', "values": "0+60x240"},
        {"series": 'connect_flow_events_in_total{flow="customer_sync", source="pardot", entity="prospect", '
                   'instance="w1"}', "values": "0+0.1x240"},
    ]
    check_alert_rules(tmp_path, series, [
        {"eval_time": "175m", "alertname": "ConnectSourceRateCollapsed", "exp_alerts": []},
        {"eval_time": "195m", "alertname": "ConnectSourceRateCollapsed", "exp_alerts": []},
        {"eval_time": "215m", "alertname": "ConnectSourceRateCollapsed", "exp_alerts": [{
            "exp_labels": {"source": "tims", "severity": "warning"},
            "exp_annotations": {
                "summary": "tims: events in fell below a tenth of their rate of the last 3 hours",
                "description": "A source that usually sends several events a minute has sent almost none for "
                               "25 minutes, though it still reads (ConnectSourceStalled would say if it did "
                               "not): a filter or a permission changed in the system, a channel or a webhook "
                               "subscription was dropped, or the business really went quiet. Compare the "
                               "source's log and the system's own audit."}}]},
    ])
