"""Every dashboard query and alert rule against a real Prometheus scraping a working pipeline.

The pipeline: the sandbox (Salesforce, Pardot, TIMS, the shop) on a background loop, a `stream-app
worker` with the customer sync and the Salesforce, TIMS and shop sinks, and the four sources as
their own processes (the shop's with its webhook receiver), each serving /metrics on its own port.
Prometheus (the Debian package; missing, the test fails) runs on loopback, scrapes all five every
second and evaluates grafana/alerts.yml.

promtool must accept the rules file and every query (as recording rules). Then every
expression of every dashboard (``$__rate_interval`` as ``1m``) must return data, and
so must every alert rule queried in its ``bool`` form (tests/support/promql.py): comparisons
return 0 or 1 per watched series instead of filtering, so the query returns data exactly when
every metric the rule reads is there, whether the alert fires or not. On top of that, the rules
must evaluate without error, and the two alerts this traffic provokes (a dead letter, a
quarantined message) must fire while the others stay quiet.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import yaml

from sandbox.run import Sandbox, start_sandbox
from sandbox.shop import WebhookSettings
from tests.support.kafka import produce_json
from tests.support.promql import ALERTS, alert_queries, as_bool, dashboard_queries, instant, recording_rules_file
from tests.support.sources import SourceProcess
from tests.support.worker import STREAM_APP, WorkerProcess, free_port

pytestmark = pytest.mark.integration

SINKS = "salesforce.Contact,salesforce.Account,tims.customer,shop.fulfillment"
SOURCES = ("salesforce", "tims", "pardot", "shop")
SHOP_SECRET = "shpss_observability"


class SandboxThread:
    """The simulators on their own event loop, so blocking test code never stalls them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sandbox", daemon=True)
        self.thread.start()
        ports = {"salesforce-rest": 0, "salesforce-pubsub": 0, "pardot": 0, "tims": 0}
        self.sandbox: Sandbox = self._run(start_sandbox(ports=ports, keepalive_seconds=1))

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def do(self, action: Callable[[Sandbox], Any]) -> Any:
        """Run ``action`` on the sandbox's loop (its stores are not thread-safe)."""
        async def call() -> Any:
            return action(self.sandbox)
        return self._run(call())

    def stop(self) -> None:
        self._run(self.sandbox.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class PrometheusServer:
    """The Debian package's prometheus on 127.0.0.1, scraping every second, with our rules."""

    def __init__(self, binary: str, workdir: Path, targets: dict[str, list[str]]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": hosts}]}
                               for job, hosts in targets.items()],
        }
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.http = httpx.Client(base_url=self.url, timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.http.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"prometheus did not get ready:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result; raises on a query Prometheus refuses."""
        body = self.http.get("/api/v1/query", params={"query": expr}).json()
        if body["status"] != "success":
            raise AssertionError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]["result"]

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0

    def wait_until_all_up(self, count: int, timeout: float = 60) -> None:
        """Every target scraped once, so later increments are increases Prometheus sees."""
        deadline = time.monotonic() + timeout
        while self.value("count(up == 1)") < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"targets not up: {self.api('targets')['activeTargets']}")
            time.sleep(0.5)

    def api(self, path: str) -> Any:
        return self.http.get(f"/api/v1/{path}").json()["data"]

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _event(event_id: str, source: str, entity: str, record_id: str, ts: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "source": source, "entity": entity, "record_id": record_id,
            "change_type": "UPDATE", "fields": fields, "commit_timestamp": ts}


def _seed(sandbox: Sandbox) -> None:
    """Changes for the sources to find: a Pardot prospect, a converted Lead, a TIMS customer."""
    sandbox.pardot.create_prospect("grace@cobol.example", firstName="Grace", lastName="Hopper", score=240, grade="A+")
    lead = sandbox.org.create("Lead", {"FirstName": "Grace", "LastName": "Hopper", "Email": "grace@cobol.example",
                                       "Company": "Compiler Works", "pi__score__c": 240.0, "pi__grade__c": "A+"})
    sandbox.org.convert_lead(lead)
    sandbox.tims.upsert_customer(name="Ada Lovelace", email="ada@analytical.example", phone="+14155550100")
    sandbox.shop.store.create_order(email="ada@analytical.example", line_items=[
        {"sku": "AR-125", "title": "Argon 125", "quantity": 1, "price": "61.50"}])


def _forge_shop_webhooks(sandbox: Sandbox, port: int) -> None:
    """Deliveries signed with a secret the receiver does not have: refused, and counted."""
    sandbox.shop.webhooks.configure(WebhookSettings(url=f"http://127.0.0.1:{port}/shop/webhook", secret="rotated",
                                                    topics=["orders/create"], max_attempts=1))
    sandbox.shop.store.create_order(email="grace@cobol.example", line_items=[
        {"sku": "HE-80", "title": "Helium 80", "quantity": 2, "price": "45.00"}])


async def _drive(bootstrap: str, prefix: str, shop_order: str) -> None:
    """What the sources cannot make happen on their own: a duplicate, a conflict, unreadable
    input, a command the target refuses, a shop order to fulfil, and diagnostics pings."""
    now = int(time.time() * 1000)
    contact = _event("obs-c1", "salesforce", "Contact", "003000000000OBSAAA", now, Email="obs@example.com",
                     FirstName="Obs", LastName="Erver", Phone="(415) 555-0100")
    await produce_json(bootstrap, f"{prefix}src.salesforce.Contact", [(contact["record_id"], contact)] * 2)
    await produce_json(bootstrap, f"{prefix}src.tims.customer", [("COBS1", _event(
        "obs-t1", "tims", "customer", "COBS1", now + 1000, email="obs@example.com", name="Obs Erver",
        phone="(415) 555-0199"))])
    await produce_json(bootstrap, f"{prefix}src.salesforce.Lead", [("junk", {"not": "a source event"})])
    refused = {"system": "salesforce", "object": "Contact", "external_id_field": "Id",
               "external_id": "003000000000NOPAAA", "fields": {"No_Such_Field__c": "x"}, "version": 1,
               "record_key": "obs-refused", "source_commit_timestamp": now}
    await produce_json(bootstrap, f"{prefix}sink.salesforce.Contact", [
        ("salesforce:Contact:003000000000NOPAAA", refused), ("junk", "not a command")])
    fulfil = {"system": "shop", "object": "fulfillment", "external_id_field": "order_id", "external_id": shop_order,
              "fields": {"tracking_number": "1ZOBS"}, "version": 1, "record_key": "obs-fulfil",
              "source_commit_timestamp": now}
    await produce_json(bootstrap, f"{prefix}sink.shop.fulfillment", [(f"shop:fulfillment:{shop_order}", fulfil)])
    await produce_json(bootstrap, f"{prefix}diag.ping", [(f"k{i}", {"n": i}) for i in range(5)])
    # an invoice of no amount: the receivables flow's anomaly rules flag it
    await produce_json(bootstrap, f"{prefix}src.tims.invoice", [("INVOBS1", {
        **_event("obs-i1", "tims", "invoice", "INVOBS1", now, invoice_id="INVOBS1", customer_id="COBS1",
                 total_amount=0, invoice_date="2026-12-01", status="open", currency="USD", version=1),
        "change_type": "CREATE", "full_state": True})])


def _firing(prometheus: PrometheusServer) -> set[str]:
    return {a["labels"]["alertname"] for a in prometheus.api("alerts")["alerts"] if a["state"] == "firing"}


def _empty(prometheus: PrometheusServer, queries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(where, expr) for where, expr in queries if not prometheus.query(expr)]


async def test_every_dashboard_and_alert_query_returns_data_from_a_live_prometheus(
        app_env: dict[str, str], tmp_path: Path) -> None:
    binary, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if binary is None or promtool is None:
        pytest.fail("prometheus/promtool not found: install the Debian package `prometheus` (.ci/run and make test do)")
    queries = ([(where, instant(expr)) for where, expr in dashboard_queries()]
               + [(f"alert {name}", as_bool(expr)) for name, expr in alert_queries()])
    for rules in (ALERTS, recording_rules_file(queries, tmp_path / "queries.yml")):
        checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    sandbox = SandboxThread()
    sources: list[SourceProcess] = []
    prometheus: PrometheusServer | None = None
    try:
        sandbox.do(_seed)
        webhook_port = free_port()
        env = {**app_env, **sandbox.sandbox.worker_env(), "CONNECT_SHOP_WEBHOOK_SECRET": SHOP_SECRET,
               "CONNECT_SHOP_WEBHOOK_PORT": str(webhook_port), "CONNECT_SHOP_RECONCILE_INTERVAL": "2"}
        # the default flows and receivables (its anomaly rules feed a dashboard panel)
        flows = {"CONNECT_FLOWS": "customer_sync,products,orders,receivables"}
        with WorkerProcess({**env, **flows, "CONNECT_SINK_OBJECTS": SINKS}, tmp_path / "worker.log") as worker:
            sources = [SourceProcess(system, env, tmp_path / f"source-{system}.log") for system in SOURCES]
            worker.start()
            prometheus = PrometheusServer(binary, tmp_path / "prometheus", {
                "connect-worker": [f"127.0.0.1:{worker.env['CONNECT_WEB_PORT']}"],
                "connect-source": [f"127.0.0.1:{source.port}" for source in sources],
            })
            prometheus.wait_until_all_up(1 + len(sources))
            shop_order = sandbox.do(lambda s: s.shop.store.all("Order")[0]["id"])
            await _drive(bootstrap, prefix, shop_order)
            sandbox.do(lambda s: _forge_shop_webhooks(s, webhook_port))
            sandbox.do(lambda s: s.tims.upsert_customer(name="Alan Turing", email="alan@bombe.example"))

            remaining = queries
            deadline = time.monotonic() + 120
            while remaining and time.monotonic() < deadline:
                for source in sources:
                    source.check()
                await asyncio.sleep(2)
                remaining = _empty(prometheus, remaining)
            assert remaining == [], "no data for:\n" + "\n".join(f"  {w}: {e}" for w, e in remaining)

            targets = prometheus.api("targets")["activeTargets"]
            assert sorted(t["health"] for t in targets) == ["up"] * 5, targets
            rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
            assert len(rules) == len(alert_queries()) and {r["health"] for r in rules} == {"ok"}, rules
            provoked = {"ConnectDeadLettersGrowing", "ConnectQuarantineGrowing"}
            deadline = time.monotonic() + 30
            while not provoked <= (firing := _firing(prometheus)) and time.monotonic() < deadline:
                await asyncio.sleep(1)
            assert provoked <= firing, firing
            assert firing.isdisjoint({"ConnectSourceStalled", "ConnectTokenRefreshFailing", "ConnectApiQuotaLow",
                                      "ConnectReplayPositionNearingRetention", "ConnectTargetDown"}), firing

            value = prometheus.value
            assert value('sum(connect_flow_duplicates_total{source="salesforce"})') >= 1
            assert value('sum(connect_flow_conflicts_total{owner="salesforce", rule="owner"})') >= 1
            assert value('sum(connect_quarantined_total{component="customer_sync"})') >= 1
            assert value('sum(connect_quarantined_total{component="sink"})') >= 1
            assert value('sum(connect_sink_commands_total{system="salesforce", outcome="dead_lettered"})') >= 1
            assert value('sum(connect_sink_commands_total{outcome="written"})') >= 1
            assert value("sum(connect_sink_latency_seconds_count)") >= 1
            assert value('count(count by (source) (connect_source_events_total > 0))') == 4
            assert value('sum(connect_webhook_deliveries_total{source="shop", outcome="refused"})') >= 1
            assert value('sum(connect_sink_commands_total{system="shop", outcome="written"})') == 1
            assert value('max(connect_api_cost_maximum{system="shop"})') > 0
            assert value('sum(connect_api_cost_points_total{system="shop"})') > 0
            assert sandbox.do(lambda s: [t["number"] for f in s.shop.store.get("Order", shop_order)["fulfillments"]
                                         for t in f["trackingInfo"]]) == ["1ZOBS"]
            assert value('max(connect_source_retention_seconds{source="salesforce"})') == 72 * 3600
            assert value('max(connect_api_daily_limit{system="salesforce"})') > 0
            assert value(f'count(connect_consumer_lag{{topic="{prefix}diag.ping"}})') == 4
            # Faust's monitor keeps per-commit metrics only, none per message (docs/adr/0016)
            assert value('sum(faust_consumer_commit_latency_count{job="connect-worker"})') >= 1
            assert prometheus.query('{__name__=~"faust_(total_events|messages_received)_total"}') == []
            worker.stop()
    finally:
        if prometheus is not None:
            prometheus.stop()
        for source in sources:
            source.stop()
        sandbox.stop()
