"""Grafana dashboards as code: ``make dashboards`` writes ``grafana/dashboards/*.json``.

The JSON is committed too (Grafana provisions it as files); tests/unit/test_dashboards.py
regenerates it and fails when the files differ, and checks every query against the metrics
stream_app/metrics.py exports. Queries use ``$__rate_interval``, which Grafana sets from the
scrape interval; the tests put ``1m`` in its place.

Run: ``python grafana/build.py [--check]`` (``--check`` writes nothing, exits 1 when stale).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors import registry

__all__ = ["Panel", "Dashboard", "dashboards", "render", "write", "DASHBOARD_DIR"]

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"
NAMES = {spec.name: spec.title for spec in registry.connectors().values()}


@dataclass(frozen=True)
class Panel:
    title: str
    #: (PromQL, legend) pairs
    queries: tuple[tuple[str, str], ...]
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"
    width: int = 12


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = field(default=("pardot-tims-connect",))

    def to_json(self) -> dict[str, Any]:
        panels: list[dict[str, Any]] = []
        y = 0
        for row in self.rows:
            panels.append({"id": len(panels) + 1, "type": "row", "title": row.title, "collapsed": False,
                           "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
            y += 1
            x = 0
            for panel in row.panels:
                if x + panel.width > 24:
                    x, y = 0, y + 8
                panels.append(_panel_json(panel, len(panels) + 1, x, y))
                x += panel.width
            y += 8
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "editable": True,
            "graphTooltip": 1,
            "refresh": "30s",
            "schemaVersion": 39,
            "time": {"from": "now-6h", "to": "now"},
            "timezone": "browser",
            "templating": {"list": []},
            "annotations": {"list": []},
            "links": [{"title": "Pardot-TIMS Connect", "type": "dashboards", "tags": ["pardot-tims-connect"],
                       "asDropdown": True}],
            "panels": panels,
        }


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend,
                "range": True}
               for i, (expr, legend) in enumerate(panel.queries)]
    body: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": 8},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }
    if panel.kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                           "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    return body


def per(by: str, fn: str, metric: str, where: str = "", window: str = RATE) -> str:
    """``sum by (<by>) (<fn>(<metric>{<where>}[<window>]))``; an empty ``by`` sums it all."""
    selector = f"{metric}{{{where}}}" if where else metric
    inner = f"{fn}({selector}[{window}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(q: float, metric: str, by: str = "", where: str = "") -> str:
    return f"histogram_quantile({q}, {per(', '.join(filter(None, ('le', by))), 'rate', metric + '_bucket', where)})"


def _percentiles(metric: str) -> tuple[tuple[str, str], ...]:
    return tuple((quantile(q, metric), f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99))


def overview() -> Dashboard:
    return Dashboard(
        "connect-overview", "Connect: overview",
        "Throughput, latency, errors and lag across the sources, the flows and the sinks.",
        (
            Row("Throughput", (
                Panel("Source events published", (
                    (per("source", "rate", "connect_source_events_total"), "{{source}}"),),
                    "ops", "Events each source process published, broker acked."),
                Panel("Flow events in", (
                    (per("flow, source", "rate", "connect_flow_events_in_total"), "{{flow}} ← {{source}}"),),
                    "ops", "Source events the flows accepted."),
                Panel("Sink commands out of the flows", (
                    (per("system, object", "rate", "connect_flow_commands_out_total"), "{{system}}.{{object}}"),),
                    "ops"),
                Panel("Sink writes confirmed", (
                    (per("system, object", "rate", "connect_sink_commands_total", 'outcome="written"'),
                     "{{system}}.{{object}}"),),
                    "ops", "Records the target systems confirmed."),
            )),
            Row("Flows", (
                Panel("Stage messages quarantined", (
                    (per("flow, stage", "rate", "connect_flow_stage_messages_total", 'outcome="quarantined"'),
                     "{{flow}} {{stage}}"),), "ops",
                    "Messages each flow stage set aside on quarantine.<flow> with the reason, per flow (orders, "
                    "receivables, products, customer_sync, ...)."),
                Panel("Records waiting for a reference", (
                    ("sum by (flow, reference) (connect_flow_waiting_references)", "{{flow}} ← {{reference}}"),),
                    "short", "Orders waiting for their Account or products, customers' receivables waiting "
                    "for their Account: released when the link arrives."),
                Panel("Oldest waiting", (
                    ("max by (flow, reference) (connect_flow_waiting_oldest_seconds)", "{{flow}} ← {{reference}}"),),
                    "s", "Age of the record that has waited longest for each kind of reference."),
                Panel("Anomalies flagged", (
                    (per("flow, rule, held", "increase", "connect_flow_anomalies_total"),
                     "{{flow}} {{rule}} (held {{held}})"),), "short",
                    "Changes the anomaly rules flagged on the money streams (audit.anomalies); held ones wait "
                    "for `stream-app anomalies release`."),
                Panel("Conflicts won back", (
                    (per("flow, owner", "rate", "connect_flow_conflicts_total"), "{{flow}} (owner {{owner}})"),),
                    "ops", "Edits of a field made outside its owner, written back over and audited."),
            )),
            Row("Latency", (
                Panel("End to end: source commit → sink write", _percentiles("connect_sink_latency_seconds"), "s",
                      "From the commit time in the source system to the target's confirmation."),
                Panel("Flow: source commit → sink command", _percentiles("connect_flow_latency_seconds"), "s",
                      "From the commit time in the source system to the command on its sink topic."),
            )),
            Row("Errors", (
                Panel("Dead letters", (
                    (per("system, object", "rate", "connect_sink_commands_total", 'outcome="dead_lettered"'),
                     "{{system}}.{{object}}"),), "ops", "Commands a sink gave up on (dlq.<system>)."),
                Panel("Quarantined", (
                    (per("component", "rate", "connect_quarantined_total"), "{{component}}"),), "ops",
                    "Unreadable input set aside on quarantine.* topics."),
                Panel("Retries", (
                    (per("system", "rate", "connect_api_retries_total"), "API {{system}}"),
                    (per("system", "rate", "connect_sink_commands_total", 'outcome="retried"'),
                     "sink records {{system}}"),), "ops"),
                Panel("Token refreshes and failures", (
                    (per("system", "increase", "connect_token_refreshes_total"), "refreshes {{system}}"),
                    (per("system", "increase", "connect_token_failures_total"), "failures {{system}}"),),
                    "short"),
            )),
            Row("Kafka and positions", (
                Panel("Consumer lag by topic", (
                    ("sum by (topic) (connect_consumer_lag)", "{{topic}}"),), "short",
                    "End offset minus the group's committed offset (measured by the leader worker)."),
                Panel("Stalled partitions", (
                    ("sum(connect_consumer_stalled_partitions)", "held but not read"),
                    ("sum(increase(connect_consumer_stall_recoveries_total[$__rate_interval]))", "recovered"),),
                    "short", "Partitions a worker holds whose committed offset stood still while messages "
                    "waited (CONNECT_STALL_AFTER); the watchdog resumes them."),
                Panel("Faust: rebalances and commit latency", (
                    ("sum(faust_total_rebalances)", "rebalances in progress"),
                    (quantile(0.95, "faust_consumer_commit_latency"), "commit p95 (ms)"),), "short"),
                Panel("Source position age", (
                    ("max by (source) (connect_source_position_age_seconds)", "{{source}}"),), "s",
                    "How far each source's saved position is behind now."),
                Panel("API quota left today", (
                    ("min by (system) (1 - connect_api_daily_used / connect_api_daily_limit)", "{{system}}"),),
                    "percentunit"),
            )),
        ),
    )


def _source_row(system: str, position_note: str) -> Row:
    where = f'source="{system}"'
    retention = ((f"max(connect_source_retention_seconds{{{where}}})", "retention"),) if system == "salesforce" else ()
    return Row(f"{NAMES[system]} source", (
        Panel("Events published", ((per("entity", "rate", "connect_source_events_total", where), "{{entity}}"),),
              "ops"),
        Panel("Position age", (
            (f"max by (stream) (connect_source_position_age_seconds{{{where}}})", "{{stream}}"), *retention),
            "s", position_note),
        Panel("Since the last successful read", (
            (f"time() - max by (stream) (connect_source_last_poll_timestamp_seconds{{{where}}})", "{{stream}}"),),
            "s"),
        Panel("Quarantined input", (
            (per("", "rate", "connect_quarantined_total", f'component="{system}"'), "quarantined"),), "ops"),
    ))


def _sink_row(system: str) -> Row:
    where = f'system="{system}"'
    return Row(f"{NAMES[system]} sinks", (
        Panel("Commands by outcome", (
            (per("object, outcome", "rate", "connect_sink_commands_total", where), "{{object}} {{outcome}}"),),
            "ops"),
        Panel("API calls", ((per("object", "rate", "connect_sink_calls_total", where), "{{object}}"),), "reqps",
              "Writer calls (one batch request each)."),
        Panel("End-to-end latency p95", (
            (quantile(0.95, "connect_sink_latency_seconds", "object", where), "{{object}}"),), "s"),
        Panel("Dead letters", (
            (per("object", "increase", "connect_sink_commands_total", f'{where}, outcome="dead_lettered"'),
             "{{object}}"),), "short"),
    ))


def _webhook_row(system: str) -> Row:
    where = f'source="{system}"'
    refused = f'{where}, outcome=~"refused|too_large"'
    return Row(f"{NAMES[system]} webhooks", (
        Panel("Deliveries by outcome", (
            (per("outcome", "rate", "connect_webhook_deliveries_total", where), "{{outcome}}"),), "ops",
            "Every answer of the receiver: accepted (after the broker acked), ignored (a topic not read), "
            "duplicate (a delivery accepted before), refused, malformed (quarantined), unavailable (503)."),
        Panel("Refused and duplicate deliveries", (
            (per("", "increase", "connect_webhook_deliveries_total", refused), "refused (signature, headers, size)"),
            (per("", "increase", "connect_webhook_deliveries_total", f'{where}, outcome="duplicate"'),
             "duplicates"),), "short",
            "Refused: a wrong signature or a missing header (a rotated secret, or forged requests). "
            "Duplicates: the platform delivered again; answered 200, published nothing."),
        Panel("Changes webhooks missed", (
            (per("", "increase", "connect_webhook_missed_events_total", where), "found by reconciliation"),),
            "short", "Changes reconciliation published that no webhook had brought (its first pass "
            "reads every record and is not counted). Each entity's last pass: the source row's "
            "\"Since the last successful read\"."),
    ))


def _cost_panels(system: str) -> tuple[Panel, ...]:
    where = f'system="{system}"'
    return (
        Panel("Cost bucket", (
            (f"min(connect_api_cost_available{{{where}}})", "available"),
            (f"max(connect_api_cost_maximum{{{where}}})", "maximum"),), "short",
            "Points in the API's cost bucket as its last answer reported; a query runs when the bucket "
            "holds its requested cost."),
        Panel("Throttling", (
            (per("", "rate", "connect_api_throttle_wait_seconds_total", where), "share of time waiting"),
            (per("", "rate", "connect_api_throttled_total", where), "throttled answers /s"),), "short",
            "Seconds per second the clients waited for the bucket to refill, and answers refused as throttled."),
        Panel("Query cost charged", ((per("", "rate", "connect_api_cost_points_total", where), "points/s"),),
              "short", "Against the bucket's restore rate (Shopify's default: 50 points a second)."),
    )


def _api_row(system: str, *, quota: bool, tokens: bool, cost: bool = False) -> Row:
    where = f'system="{system}"'
    panels = []
    if quota:
        panels.append(Panel("Daily API usage", (
            (f"max(connect_api_daily_used{{{where}}})", "used"),
            (f"max(connect_api_daily_limit{{{where}}})", "limit"),), "short",
            "As the system last reported it (Salesforce: Sforce-Limit-Info; Pardot: our own count)."))
    panels.append(Panel("Retries and give-ups", (
        (per("", "rate", "connect_api_retries_total", where), "retries"),
        (per("", "rate", "connect_api_gave_up_total", where), "gave up"),), "ops"))
    if tokens:
        panels.append(Panel("OAuth tokens", (
            (per("", "increase", "connect_token_refreshes_total", where), "refreshes"),
            (per("", "increase", "connect_token_failures_total", where), "failures"),), "short"))
    if cost:
        panels.extend(_cost_panels(system))
    return Row(f"{NAMES[system]} API", tuple(panels))


def salesforce() -> Dashboard:
    return Dashboard(
        "connect-salesforce", "Connect: Salesforce",
        "Salesforce CDC source (Pub/Sub API), Contact/Account sinks, API quota and OAuth.",
        (_source_row("salesforce", "Replay position age against the 72 h event retention."),
         _sink_row("salesforce"), _api_row("salesforce", quota=True, tokens=True)))


def tims() -> Dashboard:
    return Dashboard(
        "connect-tims", "Connect: TIMS",
        "TIMS change-feed source, customer sink and API retries.",
        (_source_row("tims", "Age of the change-feed cursor (grows while TIMS is quiet)."),
         _sink_row("tims"), _api_row("tims", quota=False, tokens=False)))


def pardot() -> Dashboard:
    return Dashboard(
        "connect-pardot", "Connect: Pardot",
        "Pardot v5 polling source and its daily API quota.",
        (_source_row("pardot", "Age of the updatedAt cursor (grows while Pardot is quiet)."),
         _api_row("pardot", quota=True, tokens=False)))


def shop() -> Dashboard:
    return Dashboard(
        "connect-shop", "Connect: Shop",
        "The online shop (Shopify GraphQL, docs/adr/0033): webhooks and reconciliation, the writer "
        "(fulfilments, prices, stock) and the API's cost throttle.",
        (_source_row("shop", "Age of the newest updated_at reconciliation has read (grows while the shop is quiet)."),
         _webhook_row("shop"), _sink_row("shop"), _api_row("shop", quota=False, tokens=False, cost=True)))


def dead_letters() -> Dashboard:
    dead = 'outcome="dead_lettered"'
    return Dashboard(
        "connect-dlq", "Connect: dead letters and quarantine",
        "What did not make it: sink commands on dlq.<system>, unreadable input on quarantine.*.",
        (
            Row("Dead letters", (
                Panel("Dead-lettered commands (last hour)", (
                    (per("system, object", "increase", "connect_sink_commands_total", dead, "1h"),
                     "{{system}}.{{object}}"),), "short", kind="stat"),
                Panel("Dead letters over time", (
                    (per("system, object", "increase", "connect_sink_commands_total", dead), "{{system}}.{{object}}"),),
                    "short"),
                Panel("Retried records", (
                    (per("system, object", "increase", "connect_sink_commands_total", 'outcome="retried"'),
                     "{{system}}.{{object}}"),), "short", "Retries come before a dead letter."),
                Panel("Calls that gave up", (
                    (per("system", "increase", "connect_api_gave_up_total"), "{{system}}"),), "short"),
            )),
            Row("Quarantine", (
                Panel("Quarantined (last hour)", (
                    (per("component", "increase", "connect_quarantined_total", window="1h"), "{{component}}"),),
                    "short", kind="stat"),
                Panel("Quarantined over time", (
                    (per("component", "increase", "connect_quarantined_total"), "{{component}}"),), "short"),
                Panel("Duplicates and echoes suppressed", (
                    (per("source", "increase", "connect_flow_duplicates_total"), "duplicates {{source}}"),
                    (per("source", "increase", "connect_flow_echo_fields_total"), "echo fields {{source}}"),),
                    "short", "Not errors: what dedupe and echo suppression kept from being written again."),
                Panel("Conflicts by field owner", (
                    (per("owner, rule", "increase", "connect_flow_conflicts_total"), "{{owner}} ({{rule}})"),),
                    "short", "Also on audit.conflicts, with the values."),
            )),
        ),
    )


def dashboards() -> list[Dashboard]:
    return [overview(), salesforce(), tims(), pardot(), shop(), dead_letters()]


def render(dashboard: Dashboard) -> str:
    return json.dumps(dashboard.to_json(), indent=2, sort_keys=True) + "\n"


def write(directory: Path = DASHBOARD_DIR, check: bool = False) -> list[Path]:
    """Write every dashboard; with ``check``, write nothing and return the stale files."""
    stale = []
    for dashboard in dashboards():
        path = directory / f"{dashboard.uid}.json"
        text = render(dashboard)
        if not path.exists() or path.read_text() != text:
            stale.append(path)
            if not check:
                path.write_text(text)
    return stale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a dashboard file is out of date")
    args = parser.parse_args()
    stale = write(check=args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path.name}")
    sys.exit(1 if args.check and stale else 0)


if __name__ == "__main__":
    main()
