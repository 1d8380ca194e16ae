"""The webhook and throttle alerts (promtool's rule unit tests), each firing on what it watches
and quiet on the traffic beside it: refused deliveries (a rotated secret), changes only
reconciliation found (webhooks not arriving), time spent waiting for the API's cost bucket."""

from __future__ import annotations

from pathlib import Path

from tests.support.promql import check_alert_rules


def deliveries(outcome: str, values: str, source: str = "shop") -> dict[str, str]:
    return {"series": f'connect_webhook_deliveries_total{{source="{source}", outcome="{outcome}", instance="s"}}',
            "values": values}


def test_refused_deliveries_fire_past_five_in_15_minutes_and_accepted_ones_do_not(tmp_path: Path) -> None:
    series = [  # a minute apart: the secret rotated at minute 10, 2 refusals a minute from then on
        deliveries("refused", "0x10 2+2x20"),
        deliveries("accepted", "0+30x30"),
        deliveries("duplicate", "0+5x30"),
        deliveries("refused", "0+0.1x30", source="tims"),  # the odd scanner: 3 an half hour
    ]
    check_alert_rules(tmp_path, series, [
        {"eval_time": "9m", "alertname": "ConnectWebhooksRefused", "exp_alerts": []},
        {"eval_time": "12m", "alertname": "ConnectWebhooksRefused", "exp_alerts": []},
        {"eval_time": "14m", "alertname": "ConnectWebhooksRefused", "exp_alerts": [{
            "exp_labels": {"source": "shop", "severity": "critical"},
            "exp_annotations": {
                "summary": "shop: 8 webhook deliveries refused in 15 min (signature or headers)",
                "description": "The receiver answered 401: the signature does not match the body, a header is "
                               "missing, or the delivery names another shop. Most often the app's secret was "
                               "rotated and the connector's (CONNECT_SHOP_WEBHOOK_SECRET, "
                               "CONNECT_TIMS_WEBHOOK_SECRET) was not; otherwise someone is sending forged "
                               "requests. Nothing refused is published; reconciliation still finds the changes, "
                               "late. The source's log names each refusal's reason."}}]},
    ])


def test_changes_only_reconciliation_found_fire_past_ten_an_hour(tmp_path: Path) -> None:
    series = [  # webhooks stop at minute 30: from then on every change comes by reconciliation
        {"series": 'connect_webhook_missed_events_total{source="shop", instance="s"}', "values": "0+0x30 1+1x60"},
        {"series": 'connect_webhook_missed_events_total{source="tims", instance="t"}', "values": "0+0.1x90"},
    ]
    check_alert_rules(tmp_path, series, [
        {"eval_time": "35m", "alertname": "ConnectWebhooksMissed", "exp_alerts": []},
        {"eval_time": "45m", "alertname": "ConnectWebhooksMissed", "exp_alerts": [{
            "exp_labels": {"source": "shop", "severity": "warning"},
            "exp_annotations": {
                "summary": "shop: reconciliation found 15 changes in an hour that no webhook brought",
                "description": "Webhooks are not arriving (the subscription was removed, the receiver is "
                               "unreachable from the platform, or the platform gave up after its retries). "
                               "Changes still flow, but only as often as the reconciliation interval. Check the "
                               "platform's webhook subscriptions and delivery log, and that the receiver's URL "
                               "is reachable."}}]},
    ])


def test_throttle_fires_after_15_minutes_of_mostly_waiting_for_the_bucket(tmp_path: Path) -> None:
    series = [  # 45 s a minute waiting from minute 10 (a large price change); a short burst on the source
        {"series": 'connect_api_throttle_wait_seconds_total{system="shop", instance="w"}', "values": "0x10 45+45x40"},
        {"series": 'connect_api_throttle_wait_seconds_total{system="shop", instance="s"}', "values": "0x50"},
        {"series": 'connect_api_throttle_wait_seconds_total{system="other", instance="w"}',
         "values": "0x5 50+50x10 550x35"},
    ]
    check_alert_rules(tmp_path, series, [
        {"eval_time": "20m", "alertname": "ConnectApiThrottled", "exp_alerts": []},
        {"eval_time": "40m", "alertname": "ConnectApiThrottled", "exp_alerts": [{
            "exp_labels": {"system": "shop", "severity": "warning"},
            "exp_annotations": {
                "summary": "shop: clients spend 75% of their time waiting for the API's cost bucket",
                "description": "The API's query-cost bucket is the bottleneck (on Shopify's default plan it "
                               "refills 50 points a second, about five fulfilments or price writes a second). "
                               "Expected during a first load or a large price change; if it lasts, the shop's "
                               "plan (a faster restore rate) or smaller pages (CONNECT_SHOP_PAGE_SIZE) help. "
                               "Nothing is lost: calls wait and retry."}}]},
    ])
