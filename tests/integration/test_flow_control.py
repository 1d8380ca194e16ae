"""``control.flows`` against a real worker and broker (docs/adr/0037): a paused flow handles
nothing until it is resumed, then everything that waited; a reload makes the running flow use
the edited mapping file for the next event; each worker reports what it did."""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from stream_app.control import CONTROL_FLOWS, ControlWriter, command
from tests.support.kafka import produce_json, read_json
from tests.support.worker import WorkerProcess, free_port
from topologies.customer_sync.mapping import DEFAULT_MAPPING_DIR

pytestmark = pytest.mark.integration
_ids = itertools.count(1)


def contact(record_id: str, first: str, last: str) -> tuple[str, dict[str, Any]]:
    """A graded Contact: the customer sync creates its TIMS customer."""
    fields = {"Email": f"{first.lower()}@control.example", "FirstName": first, "LastName": last,
              "pi__score__c": 150, "pi__grade__c": "A"}
    return record_id, {"event_id": f"control-{next(_ids)}", "source": "salesforce", "entity": "Contact",
                       "record_id": record_id, "change_type": "CREATE", "fields": fields,
                       "commit_timestamp": int(time.time() * 1000)}


async def done(bootstrap: str, topic: str, action: str, since_ms: int) -> dict[str, Any]:
    """The worker's report of ``action`` made after ``since_ms``."""
    values = await read_json(bootstrap, topic, timeout=60, until=lambda vs: any(
        v.get("kind") == "done" and v["action"] == action and v["at_ms"] >= since_ms for v in vs))
    return [v for v in values if v.get("kind") == "done" and v["action"] == action and v["at_ms"] >= since_ms][-1]


async def test_pause_holds_the_flow_resume_lets_it_go_and_reload_takes_the_edited_mapping(
        app_env: dict[str, str], tmp_path: Path) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    site = tmp_path / "mappings"
    shutil.copytree(DEFAULT_MAPPING_DIR, site / "customer_sync")
    env = {**app_env, "CONNECT_FLOWS": "customer_sync", "CONNECT_MAPPINGS_DIR": str(site),
           "CONNECT_WEB_PORT": str(free_port())}
    control_topic, sink = f"{prefix}{CONTROL_FLOWS}", f"{prefix}sink.tims.customer"
    writer = ControlWriter(bootstrap, control_topic)
    await writer.start()
    try:
        with WorkerProcess(env, tmp_path / "worker.log").start() as worker:
            worker.wait_for_log(f"control: reading {control_topic}", 60)
            asked = int(time.time() * 1000)
            await writer.send(*command("pause", "customer_sync", "test"))
            assert (await done(bootstrap, control_topic, "pause", asked))["ok"]
            await produce_json(bootstrap, f"{prefix}src.salesforce.Contact", [contact("003P1", "Paula", "Paused")])
            with pytest.raises(TimeoutError):  # nothing is handled while paused
                await read_json(bootstrap, sink, until=lambda vs: len(vs) > 0, timeout=12)

            asked = int(time.time() * 1000)
            await writer.send(*command("resume", "customer_sync", "test"))
            assert (await done(bootstrap, control_topic, "resume", asked))["ok"]
            held = await read_json(bootstrap, sink, until=lambda vs: any(v["external_id"] == "003P1" for v in vs),
                                   timeout=90)
            assert [v["fields"]["name"] for v in held if v["external_id"] == "003P1"][0] == "Paula Paused"

            # the site's file edited (as the console saves it), then the reload asked for
            master = site / "customer_sync" / "customer_master.yaml"
            master.write_text(master.read_text().replace("name: {concat: [first_name, last_name], sep: \" \"}",
                                                         "name: {concat: [last_name, first_name], sep: \", \"}"))
            asked = int(time.time() * 1000)
            await writer.send(*command("reload", "customer_sync", "test"))
            report = await done(bootstrap, control_topic, "reload", asked)
            assert report["ok"] and "customer_master.yaml" in report["message"], report
            await produce_json(bootstrap, f"{prefix}src.salesforce.Contact", [contact("003R1", "Rita", "Reloaded")])
            after = await read_json(bootstrap, sink, until=lambda vs: any(v["external_id"] == "003R1" for v in vs),
                                    timeout=90)
            assert [v["fields"]["name"] for v in after if v["external_id"] == "003R1"][0] == "Reloaded, Rita"
            assert "flow customer_sync paused by test" in worker.log_text()
    finally:
        await writer.stop()
