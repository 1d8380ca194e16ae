"""The TIMS webhook receiver under hostile input: every malformed request is answered 4xx with
its reason, signed ones are quarantined (once), and no body or header makes it answer 5xx."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from aiohttp import test_utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.tims.webhook import MAX_BODY_BYTES, MAX_DEPTH, WebhookReceiver, WebhookRejected, WebhookVerifier, sign
from tests.unit.connectors.test_tims_webhook import CHANGE, NOW, SECRET


class Sink:
    def __init__(self, fail: bool = False) -> None:
        self.changes: list[dict[str, Any]] = []
        self.quarantined: list[tuple[str, str]] = []
        self.fail = fail

    async def change(self, change: dict[str, Any]) -> None:
        if self.fail:
            raise ConnectionError("broker went away")
        self.changes.append(change)

    async def quarantine(self, reason: str, raw: str) -> None:
        if self.fail:
            raise ConnectionError("broker went away")
        self.quarantined.append((reason, raw))


def receiver_for(sink: Sink) -> WebhookReceiver:
    return WebhookReceiver(WebhookVerifier(SECRET, clock=lambda: NOW), sink.change, sink.quarantine)


async def deliver(client: test_utils.TestClient, body: bytes, timestamp: int = NOW) -> tuple[int, dict[str, Any]]:
    response = await client.post("/tims/webhook", data=body, headers={
        "X-TIMS-Timestamp": str(timestamp), "X-TIMS-Signature": sign(SECRET, str(timestamp), body),
        "Content-Type": "application/json", "X-TIMS-Delivery-Id": uuid.uuid4().hex})
    return response.status, await response.json(content_type=None)


def with_fields(**fields: Any) -> bytes:
    return json.dumps({**CHANGE, **fields}).encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


MALFORMED = [
    pytest.param(nested(200_000 // 2), 400, "not_json", id="nesting beyond orjson's limit"),
    pytest.param(with_fields(record={"a": json.loads(nested(MAX_DEPTH))}), 400, "too_deep", id="nesting beyond ours"),
    pytest.param(with_fields(version=1).replace(b'"version": 1', b'"version": 1e400'), 400, "not_json", id="1e400"),
    pytest.param(b"9" * 5000, 400, "not_json", id="a 5000-digit number"),
    pytest.param(with_fields(version=10**30), 422, "not_a_change", id="a version beyond 64 bits"),
    pytest.param(with_fields(version=float("nan")), 400, "not_json", id="NaN"),
    pytest.param(with_fields(record={"name": "\ud800"}), 400, "not_json", id="a lone surrogate"),
    pytest.param(b'{"change_id": "\xff"}', 400, "not_json", id="invalid UTF-8"),
    pytest.param(b"", 400, "not_json", id="empty"),
    pytest.param(with_fields(entity=None), 422, "not_a_change", id="entity null"),
    pytest.param(with_fields(entity="None"), 422, "not_a_change", id="an unknown entity"),
    pytest.param(with_fields(version=True), 422, "not_a_change", id="a boolean version"),
    pytest.param(with_fields(updated_at="0001-01-01T00:00:00+01:00"), 422, "not_a_change", id="before year 1 in UTC"),
    pytest.param(with_fields(updated_at="1969-12-31T23:59:59Z"), 422, "not_a_change", id="before 1970"),
    pytest.param(b"null", 422, "not_a_change", id="null"),
    pytest.param(b"[]", 422, "not_a_change", id="a list"),
]


@pytest.mark.parametrize(("body", "status", "reason"), MALFORMED)
async def test_a_signed_malformed_body_is_refused_with_its_reason_and_quarantined(
        body: bytes, status: int, reason: str) -> None:
    sink = Sink()
    async with test_utils.TestClient(test_utils.TestServer(receiver_for(sink).app())) as client:
        answer = await deliver(client, body)
    assert answer[0] == status and answer[1]["error"] == reason and answer[1]["detail"]
    assert SECRET not in json.dumps(answer[1]) and "sha256=" not in json.dumps(answer[1])
    assert not sink.changes and len(sink.quarantined) == 1 and sink.quarantined[0][0].startswith(reason)


async def test_a_body_over_the_limit_is_refused_unread_and_not_quarantined() -> None:
    sink = Sink()
    receiver = receiver_for(sink)
    async with test_utils.TestClient(test_utils.TestServer(receiver.app())) as client:
        status, answer = await deliver(client, b" " * (MAX_BODY_BYTES + 1))
    assert (status, answer["error"]) == (413, "too_large")
    assert not sink.quarantined and receiver.rejected == {"too_large": 1}


async def test_a_redelivered_malformed_body_is_quarantined_once() -> None:
    sink = Sink()
    receiver = receiver_for(sink)
    body = with_fields(entity=None)
    async with test_utils.TestClient(test_utils.TestServer(receiver.app())) as client:
        statuses = [(await deliver(client, body, NOW - attempt))[0] for attempt in range(3)]
    assert statuses == [422, 422, 422] and len(sink.quarantined) == 1
    assert "entity" in sink.quarantined[0][0] and receiver.rejected == {"not_a_change": 3}


async def test_when_the_broker_fails_the_answer_is_503_so_tims_redelivers() -> None:
    sink = Sink(fail=True)
    async with test_utils.TestClient(test_utils.TestServer(receiver_for(sink).app())) as client:
        assert (await deliver(client, with_fields()))[0] == 503
        assert (await deliver(client, with_fields(entity=None)))[0] == 503


@given(timestamp=st.one_of(st.none(), st.text(), st.from_regex(r"[0-9]{1,5000}", fullmatch=True)),
       signature=st.one_of(st.none(), st.text(), st.from_regex(r"sha256=[0-9a-fA-F]{60,70}", fullmatch=True)))
def test_the_verifier_refuses_any_header_it_cannot_check_and_raises_nothing_else(
        timestamp: str | None, signature: str | None) -> None:
    with pytest.raises(WebhookRejected):
        WebhookVerifier(SECRET, clock=lambda: NOW).verify(timestamp, signature, b"{}", "d1")


#: text with lone surrogates (json.dumps escapes them; hypothesis's default text leaves them out)
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=20) | st.sampled_from(["\ud800", ""])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**40), max_value=10**40) | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=10,
)
#: a valid Change with some fields replaced, left out or added
changes = st.builds(
    lambda replaced, dropped, added: {**{k: v for k, v in {**CHANGE, **replaced}.items() if k not in dropped}, **added},
    st.dictionaries(st.sampled_from(sorted(CHANGE)), json_values, max_size=3),
    st.sets(st.sampled_from(sorted(CHANGE)), max_size=2),
    st.dictionaries(texts, json_values, max_size=2),
)
bodies = st.one_of(
    st.builds(json.dumps, changes | json_values).map(str.encode),
    st.integers(min_value=1, max_value=5000).map(nested),
    st.binary(max_size=200),
)


def test_for_any_body_the_receiver_answers_2xx_or_4xx() -> None:
    loop = asyncio.new_event_loop()
    sink = Sink()
    client = test_utils.TestClient(test_utils.TestServer(receiver_for(sink).app()), loop=loop)
    loop.run_until_complete(client.start_server())

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=bodies)
    def answers(body: bytes) -> None:
        status, answer = loop.run_until_complete(deliver(client, body))
        assert 200 <= status < 300 or 400 <= status < 500, (status, answer)
        assert ("status" in answer) if status < 300 else answer["error"]

    try:
        answers()
    finally:
        loop.run_until_complete(client.close())
        loop.close()


async def test_a_body_declared_too_large_is_refused_before_any_of_it_is_read() -> None:
    """A client announcing a gigabyte and sending a few bytes gets its 413 at once: the receiver
    neither reads nor waits for the body."""
    sink = Sink()
    receiver = receiver_for(sink)
    async with test_utils.TestServer(receiver.app()) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"POST /tims/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000000\r\n\r\n{\"a\":")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
        writer.close()
    assert status_line.split()[1] == b"413"
    assert receiver.rejected == {"too_large": 1} and not sink.quarantined
