"""The console's security without a broker: password hashes, users, login, roles, CSRF, origin
checks and masking (docs/adr/0031). The pages that read Kafka are tested in
tests/integration/test_console_http.py and test_console_browser.py."""

from __future__ import annotations

import json
import re
from typing import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from stream_app.console import security
from stream_app.console.auth import Role, User, UsersError, hash_password, parse_users, verify_password
from stream_app.console.letters import Filter, Letter
from stream_app.console.server import _masked

PASSWORD = "correct horse battery"
FAST = {"n": 2**10}  # cheap hashes for tests; the console's default cost is far higher


def users_json(**roles: str) -> str:
    return json.dumps({name: {"role": role, "password": hash_password(PASSWORD, **FAST)} for name, role in roles.items()})


def test_a_hash_verifies_its_password_only() -> None:
    encoded = hash_password(PASSWORD)
    assert encoded.startswith("scrypt$16384$8$1$") and PASSWORD not in encoded
    assert verify_password(PASSWORD, encoded)
    assert not verify_password(PASSWORD + "x", encoded)
    assert not verify_password(PASSWORD, "scrypt$1$1$1$!!$!!") and not verify_password(PASSWORD, "md5$x")
    assert hash_password(PASSWORD) != encoded  # salted


@pytest.mark.parametrize("text, message", [
    (None, "CONNECT_CONSOLE_USERS is not set"),
    ("{not json", "not valid JSON"),
    ("[]", "expected"),
    ('{"ann": {"role": "admin", "password": "scrypt$1$1$1$a$b"}}', "role must be viewer or operator"),
    ('{"ann": {"role": "viewer", "password": "hunter2-plain"}}', "must be a hash"),
])
def test_unusable_users_setting_says_why_without_the_value(text: str | None, message: str) -> None:
    with pytest.raises(UsersError) as caught:
        parse_users(text)
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_authenticate_by_role() -> None:
    users = parse_users(users_json(olga="operator", vic="viewer"))
    assert users.authenticate("olga", PASSWORD) == User("olga", Role.operator)
    assert users.authenticate("vic", PASSWORD) == User("vic", Role.viewer)
    assert users.authenticate("vic", "wrong") is None
    assert users.authenticate("nobody", PASSWORD) is None


def test_viewers_see_masked_emails_and_phones_operators_do_not() -> None:
    viewer, operator = User("v", Role.viewer), User("o", Role.operator)
    record = {"Email": "grace.hopper@example.com", "Phone": "+1 415 555 0134", "City": "Sheffield"}
    assert _masked(viewer, record) == {"Email": "g***@example.com", "Phone": "***34", "City": "Sheffield"}
    assert _masked(viewer, "rejected: Phone must not be +14155550134") == "rejected: Phone must not be ***34"
    assert _masked(viewer, ["email:ada@analytical.example"]) == ["email:a***@analytical.example"]
    assert _masked(operator, record) == record


def test_letter_filters() -> None:
    letter = Letter.of("dlq", "salesforce", 0, 7, {"error_code": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                                                "error": "Phone bad", "command": {"object": "Contact"}})
    assert letter.id == "salesforce:0:7" and letter.object == "Contact"
    assert Filter(source="salesforce", object="Contact", error="validation").matches(letter)
    assert not Filter(kind="quarantine").matches(letter)
    assert not Filter(error="lock").matches(letter)
    quarantined = Letter.of("quarantine", "customer_sync", 1, 2, {"reason": "bad", "raw": {"entity": "Contact"}})
    assert quarantined.id == "quarantine.customer_sync:1:2" and quarantined.object == "Contact"
    assert quarantined.error_code == "QUARANTINED" and Filter(error="bad").matches(quarantined)


def test_mapping_rules_become_rows() -> None:
    from stream_app.console.mappings import _rows

    rows = _rows({"inbound": {"salesforce.Contact": {"email": {"from": "Email", "clean": "email"}}},
                  "outbound": {"tims.customer": {"key": [{"field": "customer_id"}], "create_when": "qualified",
                                                 "fields": {"name": {"concat": ["first_name", "last_name"]}}}}},
                 owners={"email": "salesforce"})
    assert rows == [
        {"direction": "inbound", "source": "salesforce.Contact.Email", "transform": "clean: email",
         "target": "canonical.email", "owner": "salesforce", "condition": ""},
        {"direction": "outbound", "source": "concat: ['first_name', 'last_name']", "transform": "",
         "target": "tims.customer.name", "owner": "", "condition": "qualified"}]
    # a list of fields with an owner each (the products file)
    listed = _rows({"fields": [{"name": "sku", "tims": "sku", "salesforce": "ProductCode", "owner": "tims"},
                               {"name": "price", "tims": "unit_price", "salesforce": "Price__c", "owner": "salesforce",
                                "kind": "money"}]}, owners={})
    assert listed == [
        {"direction": "both", "source": "tims.sku", "transform": "as sku", "target": "salesforce.ProductCode",
         "owner": "tims", "condition": ""},
        {"direction": "both", "source": "salesforce.Price__c", "transform": "as price, kind: money",
         "target": "tims.unit_price", "owner": "salesforce", "condition": ""}]


# -- the guard on a small app: the console's security with two stand-in pages ------------------------

async def page(request: web.Request) -> web.Response:
    return web.Response(text=f"hello {request[security.USER].name}")


async def action(request: web.Request) -> web.Response:
    user = security.require_operator(request)
    return web.Response(text=f"done by {user.name}")


async def login_page(request: web.Request) -> web.Response:
    return web.Response(text=f'<input name="csrf_token" value="{await security.csrf_token(request)}">')


async def login_post(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        user = await security.login(request, str(form["username"]), str(form["password"]))
    except security.TooManyFailures:
        raise web.HTTPTooManyRequests(text="paused") from None
    if user is None:
        raise web.HTTPUnauthorized(text="wrong")
    return web.Response(text=f'<input name="csrf_token" value="{await security.csrf_token(request)}">')


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    app = web.Application()
    security.install(app, parse_users(users_json(olga="operator", vic="viewer")), secret="k" * 40, max_age=3600,
                     secure=False)
    app.add_routes([web.get("/page", page), web.post("/action", action), web.get("/login", login_page),
                    web.post("/login", login_post)])
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def token_in(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def log_in(client: TestClient, name: str) -> str:
    token = token_in(await (await client.get("/login")).text())
    answer = await client.post("/login", data={"csrf_token": token, "username": name, "password": PASSWORD})
    assert answer.status == 200, await answer.text()
    return token_in(await answer.text())


async def test_pages_need_a_login(client: TestClient) -> None:
    answer = await client.get("/page", allow_redirects=False)
    assert answer.status == 303 and answer.headers["Location"].startswith("/login")
    assert (await client.post("/action", data={})).status == 403  # no session, no token
    await log_in(client, "vic")
    assert await (await client.get("/page")).text() == "hello vic"


async def test_login_needs_the_token_and_the_password(client: TestClient) -> None:
    token = token_in(await (await client.get("/login")).text())
    assert (await client.post("/login", data={"username": "olga", "password": PASSWORD})).status == 403
    assert (await client.post("/login", data={"csrf_token": token, "username": "olga", "password": "nope"})).status == 401


async def test_login_rotates_the_token(client: TestClient) -> None:
    before = token_in(await (await client.get("/login")).text())
    after = await log_in(client, "olga")
    assert after != before
    assert (await client.post("/action", data={"csrf_token": before})).status == 403


async def test_posts_need_the_sessions_token(client: TestClient) -> None:
    token = await log_in(client, "olga")
    assert (await client.post("/action", data={})).status == 403
    assert (await client.post("/action", data={"csrf_token": "forged"})).status == 403
    assert await (await client.post("/action", data={"csrf_token": token})).text() == "done by olga"
    assert (await client.post("/action", headers={"X-CSRF-Token": token})).status == 200


async def test_cross_site_posts_are_refused_even_with_the_token(client: TestClient) -> None:
    token = await log_in(client, "olga")
    own = f"http://{client.host}:{client.port}"
    assert (await client.post("/action", data={"csrf_token": token}, headers={"Origin": own})).status == 200
    for headers in ({"Origin": "https://evil.example"}, {"Referer": "https://evil.example/form"},
                    {"Origin": own, "Sec-Fetch-Site": "cross-site"}):
        answer = await client.post("/action", data={"csrf_token": token}, headers=headers)
        assert answer.status == 403 and "another site" in await answer.text(), headers


async def test_viewers_cannot_act(client: TestClient) -> None:
    token = await log_in(client, "vic")
    assert (await client.post("/action", data={"csrf_token": token})).status == 403


async def test_the_cookie_is_encrypted_httponly_and_strict(client: TestClient) -> None:
    token = await log_in(client, "olga")
    cookie = next(c for c in client.session.cookie_jar if c.key == security.COOKIE_NAME)
    assert "olga" not in cookie.value and token not in cookie.value
    answer = await client.get("/login")
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]


def test_failed_logins_pause_that_name_from_that_address() -> None:
    now = [1000.0]
    throttle = security.LoginThrottle(limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        throttle.check("olga", "10.0.0.9")
        throttle.failed("olga", "10.0.0.9")
    with pytest.raises(security.TooManyFailures) as paused:
        throttle.check("olga", "10.0.0.9")
    assert 0 < paused.value.seconds <= 61
    throttle.check("olga", "10.0.0.7")  # another address is not locked out
    throttle.check("vic", "10.0.0.9")
    now[0] += 61
    throttle.check("olga", "10.0.0.9")


async def test_the_login_form_pauses_after_repeated_failures(client: TestClient) -> None:
    token = token_in(await (await client.get("/login")).text())
    answers = [await client.post("/login", data={"csrf_token": token, "username": "olga", "password": "nope"})
               for _ in range(6)]
    assert [a.status for a in answers] == [401] * 5 + [429]
    right = await client.post("/login", data={"csrf_token": token, "username": "olga", "password": PASSWORD})
    assert right.status == 429  # paused even with the right password, until the window passes


def test_worker_figures_per_flow() -> None:
    from stream_app.console.worker_figures import parse

    text = """# TYPE connect_flow_events_in counter
connect_flow_events_in_total{flow="customer_sync",source="salesforce",entity="Contact"} 7.0
connect_flow_events_in_created{flow="customer_sync",source="salesforce",entity="Contact"} 1.7e9
# TYPE connect_flow_commands_out counter
connect_flow_commands_out_total{flow="customer_sync",system="tims",object="customer"} 3.0
# TYPE connect_flow_stage_messages counter
connect_flow_stage_messages_total{flow="customer_sync",stage="ingest",outcome="quarantined"} 1.0
# TYPE connect_flow_conflicts counter
connect_flow_conflicts_total{flow="orders",owner="tims",rule="owner"} 2.0
"""
    assert parse(text) == {
        "customer_sync": {"events in · salesforce.Contact": 7.0, "commands out · tims.customer": 3.0,
                          "stage ingest · quarantined": 1.0},
        "orders": {"conflicts": 2.0}}


@pytest.mark.parametrize("record, message", [
    ("nope", "the record is not JSON"),
    ("[1]", "must be a JSON object"),
    ('{"source": "salesforce", "entity": "Contract"}', "the record: no inbound mapping for 'salesforce.Contract'"),
])
def test_a_preview_says_what_is_wrong_with_the_record(record: str, message: str) -> None:
    from stream_app.console.mappings import preview
    from stream_app.settings import load_settings

    with pytest.raises(ValueError, match=re.escape(message)):
        preview(load_settings(), "customer_sync", "customer_master", record)
    with pytest.raises(ValueError, match="no mapping"):
        preview(load_settings(), "customer_sync", "nothing", "{}")
