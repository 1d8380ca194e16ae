"""Editing a mapping in the console over plain HTTP, against the real broker (docs/adr/0037):
an edit with an error is refused with file, line and field; a viewer may not edit; a save needs
the diff reviewed, writes the site's folder (never the shipped files), is audited in
``audit.operator`` and asks the workers to reload; a file changed meanwhile is not overwritten;
pause and resume are operator actions, audited and sent to ``control.flows``."""

from __future__ import annotations

import html
import re
from pathlib import Path

import httpx
import pytest

from tests.integration.test_console_http import log_in, token
from tests.support.console import ConsoleProcess
from tests.support.kafka import read_json
from topologies.customer_sync.mapping import DEFAULT_MAPPING_DIR

pytestmark = pytest.mark.integration

EDIT = "/mappings/customer_sync/customer_master/edit"
GOOD_NAME = 'name: {concat: [first_name, last_name], sep: " "}'
NEW_NAME = 'name: {concat: [last_name, first_name], sep: ", "}'
RECORD = '{"source": "salesforce", "entity": "Contact", "fields": {"Id": "003E", "FirstName": "Edna", "LastName": "Edit"}}'


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, page[:3000]
    return html.unescape(found.group(1))


async def test_a_mapping_edit_is_checked_previewed_reviewed_saved_and_audited(
        app_env: dict[str, str], tmp_path: Path) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    site = tmp_path / "mappings"
    site.mkdir()
    shipped = (DEFAULT_MAPPING_DIR / "customer_master.yaml").read_text()
    env = {**app_env, "CONNECT_MAPPINGS_DIR": str(site)}
    with ConsoleProcess(env, tmp_path / "console.log") as console:
        with httpx.Client(base_url=console.url, follow_redirects=False, timeout=30) as viewer:
            csrf = log_in(viewer, "vic")
            assert "/edit" not in viewer.get("/mappings").text
            assert viewer.get(EDIT).status_code == 403
            assert viewer.post(EDIT, data={"csrf_token": csrf, "text": "x", "action": "check"}).status_code == 403

        with httpx.Client(base_url=console.url, follow_redirects=False, timeout=30) as operator:
            csrf = log_in(operator, "olga")
            assert f'href="{EDIT}"' in operator.get("/mappings").text
            page = operator.get(EDIT).text
            based_on = hidden(page, "based_on")
            assert GOOD_NAME in html.unescape(page)
            form = {"csrf_token": csrf, "based_on": based_on, "record": RECORD}

            # an error: refused, with the file, the line and the field
            wrong = shipped.replace("email: {from: Email, clean: email}", "email: {from: Email, clean: emale}", 1)
            line = wrong.splitlines().index("    email: {from: Email, clean: emale}") + 1
            refused = operator.post(EDIT, data={**form, "text": wrong, "action": "review"})
            assert refused.status_code == 400
            said = html.unescape(refused.text)
            assert f"customer_master.yaml, line {line}" in said and "inbound.salesforce.Contact.email.clean" in said
            assert "unknown cleanser" in said and 'id="save"' not in said
            assert f'class="marked" id="line-{line}"' in refused.text
            # a cross-site post is refused even with the token
            crossed = operator.post(EDIT, data={**form, "text": wrong, "action": "check"},
                                    headers={"Origin": "https://evil.example"})
            assert crossed.status_code == 403

            fixed = shipped.replace(GOOD_NAME, NEW_NAME)
            previewed = operator.post(EDIT, data={**form, "text": fixed, "action": "preview"})
            assert previewed.status_code == 200 and '"name": "Edit, Edna"' in html.unescape(previewed.text)
            # saving what was not reviewed is refused
            unreviewed = operator.post(EDIT, data={**form, "text": fixed, "action": "save", "reviewed": "0"})
            assert unreviewed.status_code == 400 and "Review the diff" in unreviewed.text
            reviewed = operator.post(EDIT, data={**form, "text": fixed, "action": "review"})
            diff = html.unescape(reviewed.text)
            assert f"-      {GOOD_NAME}" in diff and f"+      {NEW_NAME}" in diff
            saved = operator.post(EDIT, data={**form, "text": fixed, "action": "save",
                                              "reviewed": hidden(reviewed.text, "reviewed")})
            assert saved.status_code == 303, saved.text[:2000]
            assert "The workers were told to reload customer_sync" in operator.get("/mappings").text
            written = site / "customer_sync" / "customer_master.yaml"
            assert written.read_text() == fixed
            assert (site / "customer_sync" / "lead_onboarding.yaml").is_file()  # the folder starts whole
            assert (DEFAULT_MAPPING_DIR / "customer_master.yaml").read_text() == shipped
            # the page now reads the site's file; an edit based on the old one is not saved over it
            assert NEW_NAME in html.unescape(operator.get(EDIT).text)
            stale = operator.post(EDIT, data={**form, "text": shipped, "action": "save",
                                              "reviewed": hidden(reviewed.text, "reviewed")})
            assert stale.status_code in (400, 409) and written.read_text() == fixed

            # pause and resume: operator actions, audited, sent to the workers
            flows = operator.get("/flows").text
            assert 'action="/flows/customer_sync/pause"' in flows
            assert operator.post("/flows/customer_sync/pause", data={"csrf_token": csrf}).status_code == 303
            assert "paused" in operator.get("/flows").text
            assert operator.post("/flows/customer_sync/resume", data={"csrf_token": csrf}).status_code == 303

    audit = await read_json(bootstrap, f"{prefix}audit.operator", until=lambda vs: len(vs) >= 3, quiet_after=1)
    assert [a["action"] for a in audit] == ["mapping.save", "flow.pause", "flow.resume"]
    assert audit[0]["who"] == "olga" and audit[0]["detail"]["flow"] == "customer_sync"
    assert NEW_NAME in audit[0]["detail"]["diff"]
    commands = await read_json(bootstrap, f"{prefix}control.flows", until=lambda vs: len(vs) >= 3)
    assert [(c["action"], c["flow"], c["who"]) for c in commands] == [
        ("reload", "customer_sync", "olga"), ("pause", "customer_sync", "olga"), ("resume", "customer_sync", "olga")]
