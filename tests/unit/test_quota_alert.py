"""The quota alert fires when the shared Pardot budget holds calls (promtool's rule unit tests).

Every process sharing the Pardot budget (connectors/pardot/quota.py) reports the business
unit's count, so the alert reads the shared figure; the budget holds calls once 10 % or less is
left, and the alert fires from the same point."""

from __future__ import annotations

from pathlib import Path

from tests.support.promql import check_alert_rules


def test_the_quota_alert_fires_when_the_shared_pardot_budget_holds_calls(tmp_path: Path) -> None:
    series = [  # two sources and a worker: each reports the business unit's shared count
        *({"series": f'connect_api_daily_used{{system="pardot", instance="{who}"}}', "values": "30 45 54 54"}
          for who in ("source-a", "source-b", "worker")),
        *({"series": f'connect_api_daily_limit{{system="pardot", instance="{who}"}}', "values": "60 60 60 60"}
          for who in ("source-a", "source-b", "worker")),
    ]
    check_alert_rules(tmp_path, series, [
        {"eval_time": "1m", "alertname": "ConnectApiQuotaLow", "exp_alerts": []},
        {"eval_time": "2m", "alertname": "ConnectApiQuotaLow", "exp_alerts": [{
            "exp_labels": {"system": "pardot", "severity": "warning"},
            "exp_annotations": {
                "summary": "pardot: 10% of the daily API quota left",
                "description": "The budget governor will hold calls at its reserve; other integrations on the "
                               "same org share this quota."}}]},
    ])
