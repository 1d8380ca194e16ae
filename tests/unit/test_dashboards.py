"""Dashboards and alert rules against the code: no metric they read may be missing, the JSON is the
generator's output, and promtool accepts every expression. No Prometheus server needed here
(tests/integration/test_observability.py runs one); promtool comes with the Debian package
``prometheus``, which .ci/run installs: without it these tests fail, they do not skip."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from stream_app.metrics import exported_names
from tests.support.promql import (
    ALERTS, DASHBOARDS, ROOT, alert_queries, as_bool, dashboard_queries, metric_names, recording_rules_file,
)

#: series Prometheus adds itself to every scrape target
PROMETHEUS_OWN = {"up"}
REQUIRED_ALERTS = {"ConnectDeadLettersGrowing", "ConnectConsumerLagGrowing", "ConnectSourceStalled",
                   "ConnectReplayPositionNearingRetention", "ConnectApiQuotaLow", "ConnectTokenRefreshFailing"}


def _build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_build", ROOT / "grafana" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install the Debian package `prometheus` (.ci/run does)")
    return path


def test_dashboard_files_are_the_generators_output() -> None:
    build = _build()
    expected = {f"{d.uid}.json": build.render(d) for d in build.dashboards()}
    committed = {p.name: p.read_text() for p in DASHBOARDS.glob("*.json")}
    assert sorted(committed) == sorted(expected), "run `make dashboards`"
    stale = [name for name, text in expected.items() if committed[name] != text]
    assert stale == [], f"out of date, run `make dashboards`: {stale}"


def test_every_metric_a_dashboard_or_alert_reads_is_exported() -> None:
    exported = exported_names() | PROMETHEUS_OWN
    queries = dashboard_queries() + alert_queries()
    assert len(queries) > 40
    missing = {}
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: reads no metric: {expr}"
        if names - exported:
            missing[where] = sorted(names - exported)
    assert missing == {}


def test_the_check_catches_a_metric_the_code_does_not_export() -> None:
    assert metric_names('sum by (system) (rate(connect_sink_writes_total{system="tims"}[5m]))') == {
        "connect_sink_writes_total"}
    assert "connect_sink_writes_total" not in exported_names()


def test_metric_names_ignores_labels_functions_and_keywords() -> None:
    expr = ('max by (source, stream) (connect_source_position_age_seconds{stream!="x"}) / on (source) '
            'group_left max by (source) (connect_source_retention_seconds) > 0.75 and time() - up > 1e3')
    assert metric_names(expr) == {"connect_source_position_age_seconds", "connect_source_retention_seconds", "up"}


def test_the_issues_alerts_are_there_and_each_has_a_summary() -> None:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    assert REQUIRED_ALERTS <= {rule["alert"] for rule in rules}
    assert all(rule["annotations"].get("summary") and rule["labels"].get("severity") for rule in rules)


def test_alert_rules_pass_promtool() -> None:
    result = subprocess.run([_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_queries())} rules found" in result.stdout


def test_every_dashboard_query_and_bool_form_of_each_alert_passes_promtool(tmp_path: Path) -> None:
    queries = dashboard_queries() + [(name, as_bool(expr)) for name, expr in alert_queries()]
    rules = recording_rules_file(queries, tmp_path / "queries.yml")
    result = subprocess.run([_promtool(), "check", "rules", str(rules)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_loads_the_alert_rules() -> None:
    config = ROOT / "grafana" / "prometheus.yml"
    assert "alerts.yml" in yaml.safe_load(config.read_text())["rule_files"]
    result = subprocess.run([_promtool(), "check", "config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_use_the_provisioned_datasource_and_unique_uids() -> None:
    provisioned = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    uids = []
    for path in DASHBOARDS.glob("*.json"):
        dashboard = json.loads(path.read_text())
        uids.append(dashboard["uid"])
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == uid, f"{path.name}: {panel['title']}"
    assert len(uids) == len(set(uids)) == 6
