"""A row edit in the console reaches a running flow other than the customer sync, on the real
broker (docs/adr/0037, addendum): the operator changes a row of the products mapping over plain
HTTP (no script), a wrong cell and a wrong rule are refused next to the row, the fixed edit is
reviewed and saved; the console tells the worker to reload, the worker reports it, and the next
TIMS item is written to the Product2 field the edited row names."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from stream_app.control import CONTROL_FLOWS
from tests.integration.test_console_http import log_in
from tests.integration.test_console_mapping_edit import hidden
from tests.integration.test_flow_control import done
from tests.support.console import ConsoleProcess
from tests.support.kafka import produce_json, read_json
from tests.support.worker import WorkerProcess, free_port

pytestmark = pytest.mark.integration

EDIT = "/mappings/products/products/edit"


def item(item_id: str, name: str) -> tuple[str, dict[str, Any]]:
    fields = {"item_id": item_id, "external_id": None, "sku": f"SKU-{item_id}", "name": name, "category": "Gas",
              "uom": "CYL", "unit_price": 42.5, "active": True, "description": None}
    return item_id, {"event_id": f"rows-{item_id}", "source": "tims", "entity": "item", "record_id": item_id,
                     "change_type": "CREATE", "fields": fields, "full_state": True, "change_origin": "tims-ui",
                     "commit_timestamp": int(time.time() * 1000)}


def row_form(page: str) -> dict[str, str]:
    """Every field of the edit form as the page drew it (what a browser would post)."""
    fields = {name: html.unescape(value) for name, value in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page)}
    fields["text"] = html.unescape(re.search(r'<textarea id="text"[^>]*>(.*?)</textarea>', page, re.S).group(1))
    fields["record"] = ""
    return fields


def name_row(page: str) -> str:
    """The index of the products row named ``name``."""
    found = re.search(r'name="r(\d+)\.target"[^>]*value="name"', page)
    assert found, page[:3000]
    return found.group(1)


async def test_a_row_edit_is_saved_and_the_running_products_flow_uses_it_for_the_next_item(
        app_env: dict[str, str], tmp_path: Path) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    site = tmp_path / "mappings"
    site.mkdir()
    env = {**app_env, "CONNECT_FLOWS": "products", "CONNECT_MAPPINGS_DIR": str(site)}
    control_topic, sink = f"{prefix}{CONTROL_FLOWS}", f"{prefix}sink.salesforce.Product2"
    worker_env = {**env, "CONNECT_WEB_PORT": str(free_port())}
    with WorkerProcess(worker_env, tmp_path / "worker.log").start() as worker, \
            ConsoleProcess(env, tmp_path / "console.log") as console:
        worker.wait_for_log(f"control: reading {control_topic}", 60)
        await produce_json(bootstrap, f"{prefix}src.tims.item", [item("IT1", "Argon 40 cf")])
        before = await read_json(bootstrap, sink, until=lambda vs: any(v["external_id"] == "IT1" for v in vs), timeout=90)
        assert [v["fields"].get("Name") for v in before if v["external_id"] == "IT1"][0] == "Argon 40 cf"

        with httpx.Client(base_url=console.url, follow_redirects=False, timeout=30) as viewer:
            csrf = log_in(viewer, "vic")
            assert viewer.post(EDIT, data={"csrf_token": csrf, "text": "x", "action": "rows"}).status_code == 403

        with httpx.Client(base_url=console.url, follow_redirects=False, timeout=30) as operator:
            csrf = log_in(operator, "olga")
            page = operator.get(EDIT).text
            row = name_row(page)
            form = row_form(page)
            assert form["csrf_token"] == csrf and form[f"r{row}.source"] == "tims: name, salesforce: Name"
            line = form["text"].splitlines().index(
                "  - {name: name,        tims: name,        salesforce: Name,                  owner: tims}") + 1

            # a cell that is not YAML: refused next to the row, with file, line and field; nothing written
            bad_cell = operator.post(EDIT, data={**form, f"r{row}.source": "tims name", "action": "rows"})
            said = html.unescape(bad_cell.text)
            assert bad_cell.status_code == 400 and f'id="row-{row}-problems"' in bad_cell.text
            assert f"products.yaml, line {line}</strong>, field <code>fields.{int(row)}</code>" in said
            assert "must be written as key: value" in said and 'value="tims name"' in said
            # a rule the flow's check refuses (an owner that is not a system): refused next to the row
            bad_rule = operator.post(EDIT, data={**form, f"r{row}.owner": "nobody", "action": "rows"})
            said = html.unescape(bad_rule.text)
            assert bad_rule.status_code == 400 and f'id="row-{row}-problems"' in bad_rule.text, said[:3000]
            assert f"products.yaml, line {line}" in said and 'id="save"' not in said
            # rows drawn from another text than the one posted: the row action is refused, nothing applied
            stale = operator.post(EDIT, data={**form, "text": form["text"] + "# edited meanwhile\n",
                                              f"r{row}.source": "tims: name, salesforce: Other__c", "action": "rows"})
            assert stale.status_code == 400 and "the text was edited since the rows were drawn" in html.unescape(stale.text)
            assert "Other__c" not in html.unescape(stale.text).split('id="text"')[1]
            # a cross-site post is refused even with the token
            assert operator.post(EDIT, data={**form, "action": "rows"},
                                 headers={"Origin": "https://evil.example"}).status_code == 403

            applied = operator.post(EDIT, data={**form, f"r{row}.source": "tims: name, salesforce: Display_Name__c",
                                                "action": "rows"})
            assert applied.status_code == 200, html.unescape(applied.text)[:3000]
            form = row_form(applied.text)
            assert "salesforce: Display_Name__c" in form["text"]
            reviewed = operator.post(EDIT, data={**form, "action": "review"})
            diff = html.unescape(reviewed.text)
            changed = [line for line in diff.split('id="diff">')[1].split("</pre>")[0].splitlines()
                       if line[:1] in "+-" and not line.startswith(("+++", "---"))]
            assert changed == ["-  - {name: name,        tims: name,        salesforce: Name,                  owner: tims}",
                               "+  - {name: name, tims: name, salesforce: Display_Name__c, owner: tims}"]
            asked = int(time.time() * 1000)
            saved = operator.post(EDIT, data={**form, "action": "save", "reviewed": hidden(reviewed.text, "reviewed")})
            assert saved.status_code == 303, html.unescape(saved.text)[:3000]
            assert "Display_Name__c" in (site / "products" / "products.yaml").read_text()

        report = await done(bootstrap, control_topic, "reload", asked)
        assert report["ok"] and "products" in report["message"], report
        await produce_json(bootstrap, f"{prefix}src.tims.item", [item("IT2", "Helium 80 cf")])
        after = await read_json(bootstrap, sink, until=lambda vs: any(v["external_id"] == "IT2" for v in vs), timeout=90)
        fields = [v["fields"] for v in after if v["external_id"] == "IT2"][0]
        assert fields.get("Display_Name__c") == "Helium 80 cf" and "Name" not in fields, fields
    audit = await read_json(bootstrap, f"{prefix}audit.operator", until=lambda vs: len(vs) >= 1)
    assert audit[0]["action"] == "mapping.save" and "Display_Name__c" in audit[0]["detail"]["diff"]
