"""`stream-app console` over plain HTTP, against the real broker: every page needs a login,
cross-site posts are refused, a viewer cannot act, dead letters are listed (masked for a
viewer), and a purge is confirmed and written to audit.operator."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from stream_app.console.auth import hash_password
from tests.integration.test_dlq_cli import entry
from tests.support.console import PASSWORD, ConsoleProcess
from tests.support.kafka import create_topics, produce_json, read_json, topic_sizes

pytestmark = pytest.mark.integration

PAGES = ["/", "/letters", "/letters/salesforce:0:0", "/letters/purge?kind=dlq", "/customers?q=ada@x.example",
         "/flows", "/conflicts"]


def token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


def log_in(client: httpx.Client, name: str) -> str:
    form = token(client.get("/login").text)
    answer = client.post("/login", data={"csrf_token": form, "username": name, "password": PASSWORD, "next": "/letters"},
                         headers={"Origin": str(client.base_url).rstrip("/")})
    assert answer.status_code == 303, answer.text
    return token(client.get("/letters").text)


async def test_console_refuses_strangers_and_cross_site_posts(app_env: dict[str, str], tmp_path: Path) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    await create_topics(bootstrap, [f"{prefix}dlq.salesforce"], partitions=1)
    await produce_json(bootstrap, f"{prefix}dlq.salesforce", [("a", entry("003A", 3))])
    with ConsoleProcess(app_env, tmp_path / "console.log") as console:
        with httpx.Client(base_url=console.url, follow_redirects=False, timeout=30) as stranger:
            for path in PAGES:
                answer = stranger.get(path)
                assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), path
            for path in ("/letters/replay", "/letters/purge", "/logout"):
                assert stranger.post(path, data={"all": "1", "kind": "dlq", "confirm": "purge"}).status_code == 403
            # a login form posted from another site, even carrying a valid token, is refused
            form = token(stranger.get("/login").text)
            crossed = stranger.post("/login", data={"csrf_token": form, "username": "olga", "password": PASSWORD},
                                    headers={"Origin": "https://evil.example"})
            assert crossed.status_code == 403
            # guessing: after five wrong passwords for one name from one address, a pause
            tries = [stranger.post("/login", data={"csrf_token": form, "username": "nobody", "password": f"guess{i}"})
                     for i in range(6)]
            assert [t.status_code for t in tries] == [401] * 5 + [429]
            assert "Too many failed logins" in tries[-1].text
            # after a login the console sends you only to its own pages
            for elsewhere in ("//evil.example/x", "/\\evil.example", "https://evil.example"):
                form = token(stranger.get("/login").text)
                landed = stranger.post("/login", data={"csrf_token": form, "username": "olga", "password": PASSWORD,
                                                        "next": elsewhere})
                assert landed.status_code == 303 and landed.headers["location"] == "/", elsewhere

        with httpx.Client(base_url=console.url, follow_redirects=False, timeout=30) as viewer:
            csrf = log_in(viewer, "vic")
            listed = viewer.get("/letters").text
            assert "salesforce:0:0" in listed and "FIELD_CUSTOM_VALIDATION_EXCEPTION" in listed
            assert "4155550134" not in listed
            shown = viewer.get("/letters/salesforce:0:0").text
            assert "g***@example.com" in shown and "grace.hopper" not in shown
            assert viewer.post("/letters/replay", data={"csrf_token": csrf, "all": "1"}).status_code == 403
            assert "Replay" not in listed

        with httpx.Client(base_url=console.url, follow_redirects=False, timeout=30) as operator:
            csrf = log_in(operator, "olga")
            assert "grace.hopper@example.com" in operator.get("/letters/salesforce:0:0").text
            refused = operator.post("/letters/purge", data={"csrf_token": csrf, "kind": "dlq", "confirm": "no"})
            assert refused.status_code == 400 and "Type purge" in refused.text
            assert (await topic_sizes(bootstrap, [f"{prefix}dlq.salesforce"]))[f"{prefix}dlq.salesforce"] == 1
            done = operator.post("/letters/purge", data={"csrf_token": csrf, "kind": "dlq", "confirm": "purge"})
            assert done.status_code == 303
            assert "Purged 1 dead letters" in operator.get("/letters").text
            assert "0 messages" in operator.get("/letters?kind=dlq").text
    [audit] = await read_json(bootstrap, f"{prefix}audit.operator", until=lambda vs: len(vs) >= 1, quiet_after=1)
    assert audit["who"] == "olga" and audit["role"] == "operator" and audit["action"] == "dlq.purge" and audit["when"]


async def test_console_refuses_to_start_without_users(app_env: dict[str, str], tmp_path: Path) -> None:
    import os
    import subprocess

    from tests.support.worker import STREAM_APP

    env = {**os.environ, **app_env, "CONNECT_CONSOLE_USERS": '{"ann": {"role": "viewer", "password": "plain-secret"}}'}
    result = subprocess.run([STREAM_APP, "console"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "must be a hash from `stream-app console hash-password`" in result.stderr
    assert "plain-secret" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert hash_password("x" * 8).startswith("scrypt$")


async def test_an_operator_sends_a_quarantined_message_back_where_it_came_from(app_env: dict[str, str],
                                                                               tmp_path: Path) -> None:
    bootstrap, prefix = app_env["KAFKA_BOOTSTRAP_SERVERS"], app_env["CONNECT_TOPIC_PREFIX"]
    quarantine, source = f"{prefix}quarantine.customer_sync", f"{prefix}src.tims.customer"
    await create_topics(bootstrap, [quarantine, source], partitions=1)
    raw = {"event_id": "tims:C9:7", "source": "tims", "entity": "customer", "record_id": "C9", "change_type": "UPDATE",
           "fields": {"name": "Edsger"}, "commit_timestamp": 1}
    whole = {"flow": "customer_sync", "reason": "merge: Uncleanable name", "raw": raw,
             "origin": {"stage": "ingest", "topic": source, "partition": 0, "offset": 41, "key": "C9"}}
    preview = {"flow": "customer_sync", "reason": "ingest: too large",
               "raw": {"size": 2_000_000, "sha256": "ab" * 32, "truncated": True, "preview": "{"},
               "origin": {"stage": "ingest", "topic": source, "partition": 0, "offset": 42, "key": "C10"}}
    await produce_json(bootstrap, quarantine, [("customer_sync", whole), ("customer_sync", preview)])
    with ConsoleProcess(app_env, tmp_path / "console.log") as console:
        with httpx.Client(base_url=console.url, follow_redirects=False, timeout=30) as operator:
            csrf = log_in(operator, "olga")
            listed = operator.get("/letters?kind=quarantine").text
            assert 'value="quarantine.customer_sync:0:0"' in listed, "the whole message can be chosen"
            assert 'value="quarantine.customer_sync:0:1"' not in listed, "a preview cannot"
            assert f"Send it back to {source}" in operator.get("/letters/quarantine.customer_sync:0:0").text
            done = operator.post("/letters/replay", data={"csrf_token": csrf, "id": [
                "quarantine.customer_sync:0:0", "quarantine.customer_sync:0:1"]})
            assert done.status_code == 303
            said = operator.get("/letters").text
            assert "Replayed 1 quarantined message to the topics they came from." in said, said[:3000]
            assert "Not replayed: quarantine.customer_sync:0:1: the entry keeps only a preview" in said
    [back] = await read_json(bootstrap, source, until=lambda vs: len(vs) >= 1, quiet_after=1)
    assert back == raw
    audits = await read_json(bootstrap, f"{prefix}audit.operator", until=lambda vs: len(vs) >= 1, quiet_after=1)
    assert [(a["who"], a["action"], a["detail"]["ids"]) for a in audits] == [
        ("olga", "quarantine.replay", ["quarantine.customer_sync:0:0"])]
