"""The TIMS webhook receiver: HMAC over "<timestamp>.<body>", freshness, replays, counters, and
its hand-off with the feed read (each change published once)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx
import pytest
from aiohttp import test_utils

from connectors.tims.client import TimsClient
from connectors.tims.config import TimsConfig
from connectors.tims.webhook import TimsWebhookSource, WebhookReceiver, WebhookRejected, WebhookVerifier, sign

SECRET = "whsec-test"
NOW = 1_780_000_000
CHANGE = {"change_id": "000000000042", "entity": "customer", "resource": "customers", "id": "C000042",
          "external_id": "001xx0000000042AAA", "op": "upsert", "version": 2,
          "updated_at": "2026-05-28T20:26:40.000Z", "modified_by": "tims-ui",
          "record": {"customer_id": "C000042", "name": "Acme Welding"}}


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1700000000", body) == f"sha256={expected}"


@pytest.mark.parametrize(("timestamp", "signature", "reason"), [
    (None, "sha256=00", "missing_headers"),
    (str(NOW), None, "missing_headers"),
    (str(NOW), "sha256=" + "0" * 64, "bad_signature"),
    ("12ab", sign(SECRET, "12ab", b"{}"), "bad_signature"),
    (str(NOW - 301), sign(SECRET, str(NOW - 301), b"{}"), "stale"),
    (str(NOW + 301), sign(SECRET, str(NOW + 301), b"{}"), "stale"),
])
def test_the_verifier_refuses(timestamp: str | None, signature: str | None, reason: str) -> None:
    verifier = WebhookVerifier(SECRET, tolerance=300, clock=lambda: NOW)
    with pytest.raises(WebhookRejected) as caught:
        verifier.verify(timestamp, signature, b"{}", "d1")
    assert caught.value.reason == reason


def test_a_signature_is_accepted_once_then_refused_as_a_replay() -> None:
    verifier = WebhookVerifier(SECRET, tolerance=300, clock=lambda: NOW)
    signature = sign(SECRET, str(NOW), b"{}")
    verifier.verify(str(NOW), signature, b"{}", "d1")
    with pytest.raises(WebhookRejected) as caught:
        verifier.verify(str(NOW), signature, b"{}", "d2")
    assert caught.value.reason == "replay"
    verifier.verify(str(NOW - 1), sign(SECRET, str(NOW - 1), b"{}"), b"{}", "d3")  # a redelivery is new


def test_a_delivery_id_seen_within_the_tolerance_is_refused_even_with_a_new_signature() -> None:
    clock = [float(NOW)]
    verifier = WebhookVerifier(SECRET, tolerance=300, clock=lambda: clock[0])
    verifier.verify(str(NOW), sign(SECRET, str(NOW), b"{}"), b"{}", "delivery-1")
    later = str(NOW + 5)
    with pytest.raises(WebhookRejected) as caught:
        verifier.verify(later, sign(SECRET, later, b"{}"), b"{}", "delivery-1")
    assert caught.value.reason == "replayed_delivery"
    clock[0] = NOW + 400  # outside the tolerance the timestamp check refuses old deliveries: the id is forgotten
    fresh = str(NOW + 400)
    verifier.verify(fresh, sign(SECRET, fresh, b"{}"), b"{}", "delivery-1")


def test_replay_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.tims import webhook

    monkeypatch.setattr(webhook, "MAX_REMEMBERED", 10)
    verifier = WebhookVerifier(SECRET, tolerance=300, clock=lambda: NOW)
    for n in range(25):
        body = str(n).encode()
        verifier.verify(str(NOW), sign(SECRET, str(NOW), body), body, f"d{n}")
    assert len(verifier._accepted) == 10 and len(verifier._deliveries) == 10


def test_a_signature_made_with_another_secret_is_refused() -> None:
    verifier = WebhookVerifier(SECRET, clock=lambda: NOW)
    with pytest.raises(WebhookRejected):
        verifier.verify(str(NOW), sign("other", str(NOW), b"{}"), b"{}", "d1")


class Sink:
    def __init__(self) -> None:
        self.changes: list[dict[str, Any]] = []
        self.malformed: list[tuple[str, str]] = []

    async def change(self, change: dict[str, Any]) -> None:
        self.changes.append(change)

    async def bad(self, reason: str, raw: str) -> None:
        self.malformed.append((reason, raw))


async def post(client: test_utils.TestClient, body: bytes, timestamp: str, signature: str,
               delivery_id: str | None = None) -> int:
    response = await client.post("/tims/webhook", data=body, headers={
        "X-TIMS-Timestamp": timestamp, "X-TIMS-Signature": signature, "Content-Type": "application/json",
        "X-TIMS-Change-Id": "000000000042", "X-TIMS-Event": "customer.upsert",
        "X-TIMS-Delivery-Id": uuid.uuid4().hex if delivery_id is None else delivery_id})
    return response.status


async def test_the_receiver_hands_over_good_deliveries_and_counts_refusals() -> None:
    sink = Sink()
    receiver = WebhookReceiver(WebhookVerifier(SECRET, clock=lambda: NOW), sink.change, sink.bad)
    body = json.dumps(CHANGE).encode()
    async with test_utils.TestClient(test_utils.TestServer(receiver.app())) as client:
        assert await post(client, body, str(NOW), sign("wrong", str(NOW), body)) == 401
        assert await post(client, body, str(NOW), sign(SECRET, str(NOW), body)) == 200
        assert await post(client, body, str(NOW), sign(SECRET, str(NOW), body)) == 401
        tampered = body.replace(b"Acme", b"Evil")
        assert await post(client, tampered, str(NOW), sign(SECRET, str(NOW), body)) == 401
        junk = b'{"change_id": "1"}'
        assert await post(client, junk, str(NOW), sign(SECRET, str(NOW), junk), "d-junk") == 422
        again = body + b" "
        assert await post(client, again, str(NOW), sign(SECRET, str(NOW), again), "d-junk") == 409
        assert await post(client, body, str(NOW), sign(SECRET, str(NOW), body + b"  ")) == 401
        assert await post(client, body, str(NOW), sign(SECRET, str(NOW), body), "") == 401
    assert sink.changes == [CHANGE]
    assert receiver.accepted == 1
    assert dict(receiver.rejected) == {"bad_signature": 3, "replay": 1, "not_a_change": 1, "replayed_delivery": 1,
                                       "missing_headers": 1}
    assert sink.malformed and "not a TIMS change" in sink.malformed[0][0]


class SlowKafka:
    """Publisher and position store whose sends take a while, as a first send to a new topic does."""

    def __init__(self, fail_first: bool = False) -> None:
        self.sent: list[str] = []
        self.fail_first = fail_first

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_many(self, topic: str, records: Any) -> int:
        await asyncio.sleep(0.05)
        if self.fail_first:
            self.fail_first = False
            raise ConnectionError("broker went away")
        batch = [value["event_id"] for _, value in records]
        self.sent += batch
        return len(batch)

    async def load(self) -> dict[str, Any]:
        return {}

    async def save(self, key: str, position: dict[str, Any]) -> None: ...


def webhook_source(kafka: SlowKafka) -> TimsWebhookSource:
    config = TimsConfig(base_url="https://tims.example", api_key="k", source_mode="webhook")
    client = TimsClient(config, http=httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500))))
    return TimsWebhookSource(kafka, kafka, client, config,  # type: ignore[arg-type]
                             secret=SECRET, clock=lambda: NOW)


async def test_a_change_arriving_by_webhook_and_feed_at_once_is_published_once() -> None:
    kafka = SlowKafka()
    source = webhook_source(kafka)
    await asyncio.gather(source._publish_change(CHANGE), source._emit([CHANGE]), source._publish_change(CHANGE))
    await source._emit([CHANGE])
    assert kafka.sent == ["tims:000000000042"] and source.published == 1


async def test_when_the_webhook_publish_fails_the_feed_read_publishes_the_change() -> None:
    kafka = SlowKafka(fail_first=True)
    source = webhook_source(kafka)
    delivery = asyncio.create_task(source._publish_change(CHANGE))
    await asyncio.sleep(0.01)
    await source._emit([CHANGE])
    with pytest.raises(ConnectionError):
        await delivery
    assert kafka.sent == ["tims:000000000042"]
    assert source.position.change_id == "000000000042"
