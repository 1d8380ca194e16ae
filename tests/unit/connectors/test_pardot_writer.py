"""PardotWriter: one call per command, per-command outcomes, per-record order, list memberships."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from connectors.envelope import SinkCommand
from connectors.errors import FatalError, RetryableError
from connectors.pardot.client import PardotClient
from connectors.pardot.config import PardotConfig
from connectors.pardot.writer import PardotWriter
from connectors.retry import RetryPolicy


def prospect(key: str, value: str, operation: str = "upsert", **fields: Any) -> SinkCommand:
    return SinkCommand(system="pardot", object="prospect", operation=operation, external_id_field=key,
                       external_id=value, fields=fields, version=1, record_key=f"k-{value}")


def membership(list_id: int, prospect_id: int, operation: str = "upsert", **fields: Any) -> SinkCommand:
    return SinkCommand(system="pardot", object="list_membership", operation=operation,
                       external_id_field="listId:prospectId", external_id=f"{list_id}:{prospect_id}",
                       fields=fields, version=1, record_key=f"k-{prospect_id}")


class FakePardot:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.emails: dict[str, int] = {"known@example.com": 1001}
        self.memberships: dict[tuple[int, int], dict[str, Any]] = {}
        self.quota_spent = False

    async def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path.removeprefix("/api/v5/objects/")
        self.calls.append((request.method, path, body))
        await asyncio.sleep(0)
        if self.quota_spent:
            return httpx.Response(429, json={"code": 122, "message": "Daily API rate limit met"})
        if path == "prospects/do/upsertLatestByEmail":
            email = body["matchEmail"]
            if "@" not in email:
                return httpx.Response(400, json={"code": 4, "message": f"Invalid prospect email address: {email}"})
            created = email not in self.emails
            self.emails.setdefault(email, 1000 + len(self.emails) + 1)
            return httpx.Response(201 if created else 200, json={"id": self.emails[email]})
        if path.startswith("prospects/") and request.method == "PATCH":
            if path.endswith("/9999"):
                return httpx.Response(404, json={"code": 192, "message": "Object specified does not exist"})
            return httpx.Response(204)
        if path == "list-memberships" and request.method == "POST":
            key = (body["listId"], body["prospectId"])
            if key in self.memberships:
                return httpx.Response(400, json={"code": 58, "message": "already a member"})
            self.memberships[key] = {"id": 3001 + len(self.memberships), "listId": key[0], "prospectId": key[1],
                                     "optedOut": body.get("optedOut", False)}
            return httpx.Response(201, json={"id": self.memberships[key]["id"]})
        if path == "list-memberships" and request.method == "GET":
            key = (int(request.url.params["listId"]), int(request.url.params["prospectId"]))
            found = [self.memberships[key]] if key in self.memberships else []
            return httpx.Response(200, json={"values": found, "nextPageToken": None})
        if path.startswith("list-memberships/") and request.method == "PATCH":
            member = next(m for m in self.memberships.values() if m["id"] == int(path.rsplit("/", 1)[1]))
            member.update(body)
            return httpx.Response(204)
        if path.startswith("list-memberships/") and request.method == "DELETE":
            member_id = int(path.rsplit("/", 1)[1])
            self.memberships = {k: m for k, m in self.memberships.items() if m["id"] != member_id}
            return httpx.Response(204)
        return httpx.Response(404, json={"code": 198, "message": "Endpoint not found"})


class Tokens:
    async def token(self) -> Any:
        return type("T", (), {"access_token": "t"})()

    async def refresh(self, stale: Any = None) -> Any:
        return await self.token()


def writer(fake: FakePardot) -> PardotWriter:
    config = PardotConfig(base_url="https://pi.example", business_unit_id="0Uv5e0000000001AAA")
    client = PardotClient(config, Tokens(), policy=RetryPolicy(max_attempts=1),
                          http=httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)))
    return PardotWriter(config, Tokens(), client=client)


async def test_prospects_by_email_and_by_id_each_get_an_outcome_in_order() -> None:
    fake = FakePardot()
    commands = [prospect("email", "known@example.com", firstName="K"), prospect("email", "new@example.com"),
                prospect("id", "1001", score=10), prospect("email", "not-an-email"), prospect("id", "9999"),
                prospect("id", "abc")]
    known, new, by_id, bad_email, missing, not_a_number = await writer(fake).write(commands)
    assert (known.ok, known.target_id, known.created) == (True, "1001", False)
    assert (new.ok, new.created) == (True, True)
    assert (by_id.ok, by_id.target_id) == (True, "1001")
    assert (bad_email.ok, bad_email.retryable, bad_email.error_code) == (False, False, "4")
    assert (missing.ok, missing.error_code) == (False, "192")
    assert not_a_number.error_code == "invalid_command"
    upsert = next(body for method, path, body in fake.calls if body and body.get("matchEmail") == "known@example.com")
    assert upsert["prospect"] == {"firstName": "K"}


async def test_commands_for_one_record_keep_their_order() -> None:
    fake = FakePardot()
    commands = [prospect("id", "1001", score=n) for n in range(5)] + [prospect("id", "1002", score=9)]
    await writer(fake).write(commands)
    scores = [body["score"] for method, path, body in fake.calls if path == "prospects/1001"]
    assert scores == [0, 1, 2, 3, 4]


async def test_list_membership_add_and_remove_are_idempotent() -> None:
    fake = FakePardot()
    pardot = writer(fake)
    [added] = await pardot.write([membership(2001, 1001)])
    [again] = await pardot.write([membership(2001, 1001, optedOut=True)])
    assert (added.ok, added.created, added.target_id) == (True, True, "3001")
    assert (again.ok, again.created, again.target_id) == (True, False, "3001")
    assert fake.memberships[(2001, 1001)]["optedOut"] is True
    [removed] = await pardot.write([membership(2001, 1001, "delete")])
    [gone] = await pardot.write([membership(2001, 1001, "delete")])
    assert removed.ok and removed.target_id == "3001"
    assert gone.ok and gone.target_id is None and fake.memberships == {}


async def test_a_spent_daily_quota_fails_the_whole_call_as_retryable() -> None:
    fake = FakePardot()
    fake.quota_spent = True
    with pytest.raises(RetryableError) as caught:
        await writer(fake).write([prospect("id", "1001", score=1), prospect("id", "1002", score=1)])
    assert caught.value.code == "122"


async def test_unsupported_commands_are_refused_without_a_call() -> None:
    fake = FakePardot()
    [outcome] = await writer(fake).write([prospect("salesforceId", "003xx")])
    assert outcome.error_code == "invalid_command" and fake.calls == []


async def test_a_wrong_business_unit_fails_the_whole_call() -> None:
    fake = FakePardot()

    async def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"code": 201, "message": "Business Unit not found"})

    fake.handler = refuse  # type: ignore[method-assign]
    with pytest.raises(FatalError):
        await writer(fake).write([prospect("id", "1001", score=1)])
