"""The waiting alert fires when a record has waited over an hour for its reference, for 15
minutes (promtool's rule unit tests), and names the flow and the kind of reference."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.promql import ALERTS


def test_the_waiting_alert_fires_after_an_hour_and_names_the_flow(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install the Debian package `prometheus`")
    # one sample a minute: the oldest order ages past an hour at minute 10; receivables stay young
    series = [
        {"series": 'connect_flow_waiting_oldest_seconds{flow="orders", reference="account", instance="w1"}',
         "values": "3000+60x40"},
        {"series": 'connect_flow_waiting_oldest_seconds{flow="receivables", reference="account", instance="w1"}',
         "values": "60x40"},
    ]
    tests = {"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": "ConnectReferenceWaitingLong", "exp_alerts": []},
            {"eval_time": "27m", "alertname": "ConnectReferenceWaitingLong", "exp_alerts": [{
                "exp_labels": {"flow": "orders", "reference": "account", "severity": "warning"},
                "exp_annotations": {
                    "summary": "orders: a record has waited 1h 17m 0s for its account",
                    "description": "An order (or a customer's receivables) names a record that is not linked yet: "
                                   "an Account without TIMS_Customer_ID__c, a Product2 without its TIMS item. Link it "
                                   "(the customer sync or the products flow does, once their sources have it) and the "
                                   "waiting records are released."}}]},
        ]}]}
    path = tmp_path / "waiting_test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
