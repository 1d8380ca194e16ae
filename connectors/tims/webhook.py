"""TIMS webhooks (the contract's ``x-webhooks.change``) as an alternative to polling.

The receiver checks ``X-TIMS-Signature`` (``sha256=`` + hex HMAC-SHA256 of
``<X-TIMS-Timestamp>.<raw body>``, compared in constant time) and refuses timestamps outside
the tolerance and a signature it has already accepted (a replay) with a 401; a validly signed
delivery whose ``X-TIMS-Delivery-Id`` it accepted before, within the tolerance, with a 409
(TIMS gives every attempt a new id, so only a replay repeats one). Each refusal is counted by
reason. What it remembers for replays is bounded (``MAX_REMEMBERED`` of each, oldest dropped
first) and forgotten once outside the tolerance, when the timestamp check refuses it anyway. An accepted change is published as the same SourceEvent the poller makes
(``tims:<change_id>``) and answered 200 only after the broker acked it, so a failed publish is
redelivered by TIMS. TIMS gives up on a change after a few attempts (it then lives only in the
change feed), so the webhook source also reads the feed every ``reconcile_interval`` seconds.

Whatever arrives, the answer is 2xx or 4xx (503 only when the broker did not take what we gave it)
with ``{"error": <reason>, "detail": ...}`` that never repeats a header: 413 for a body over
``MAX_BODY_BYTES`` (refused on its Content-Length before any of it is read, or when reading
passes the limit; unsigned, so logged and counted only), 401 as above, then,
for a signed body, 400 when it is not JSON or nests deeper than ``MAX_DEPTH`` and 422 when it is
not a Change; these are quarantined, once per body although TIMS retries every non-2xx answer.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections import Counter, OrderedDict
from typing import Any, Awaitable, Callable

from aiohttp import web

from connectors.envelope import SourceEvent
from connectors.kafka_io import PositionStore, Publisher
from connectors.tims.client import TimsClient
from connectors.tims.config import TimsConfig
from connectors.tims.source import POSITION_KEY, TimsSource, change_event
from connectors.untrusted import UntrustedBody, load_json
from connectors.webhook_server import WebhookServer

__all__ = [
    "sign", "parse_change", "MalformedDelivery", "WebhookRejected", "WebhookVerifier", "WebhookReceiver",
    "TimsWebhookSource", "MAX_BODY_BYTES", "MAX_DEPTH",
]

#: change ids delivered by webhook that the feed read skips, at most
MAX_DELIVERED = 50_000
#: A Change is a few kilobytes. This bound keeps the event we publish under Kafka's default
#: 1 MiB message size even if ``json.dumps`` escapes every character (at most 3 bytes per byte).
MAX_BODY_BYTES = 256 * 1024
#: A Change nests 3 or 4 levels (change, record, address). Refusing deeper bodies keeps every
#: later ``json.dumps`` and recursive walk far from Python's recursion limit.
MAX_DEPTH = 32
#: signatures and delivery ids remembered for replay checks, at most, each (about 10 MB in all)
MAX_REMEMBERED = 50_000
_UNAUTHENTICATED = {
    "missing_headers": "X-TIMS-Timestamp, X-TIMS-Signature and X-TIMS-Delivery-Id are required",
    "bad_signature": "the signature does not match the body",
    "stale": "the timestamp is outside the tolerance",
    "replay": "this signature was accepted before",
}
_REPLAYED_DELIVERY = "this delivery id was accepted before"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")
log = logging.getLogger(__name__)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-TIMS-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookRejected(Exception):
    """Why a delivery was refused: ``missing_headers``, ``bad_signature``, ``stale``, ``replay``
    (unauthenticated: 401), ``replayed_delivery`` (a signed delivery seen before: 409)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedDelivery(ValueError):
    """A signed body that is not a Change: ``reason`` (``not_json``, ``too_deep``,
    ``not_a_change``), the HTTP ``status`` to answer and a ``detail`` that quotes no value."""

    def __init__(self, reason: str, status: int, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.status, self.detail = reason, status, detail


def parse_change(body: bytes) -> dict[str, Any]:
    """The Change a delivery carries, or :class:`MalformedDelivery` (JSON read as
    ``connectors.untrusted`` says, at most ``MAX_DEPTH`` levels deep)."""
    try:
        change = load_json(body, MAX_DEPTH)
    except UntrustedBody as exc:
        raise MalformedDelivery(exc.reason, 400, str(exc)) from None
    try:
        change_event(change)
    except ValueError as exc:
        raise MalformedDelivery("not_a_change", 422, str(exc)) from None
    return change


class WebhookVerifier:
    """Signature, freshness and replay checks, separate from HTTP so they are easy to test."""

    def __init__(self, secret: str, tolerance: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("a webhook secret is required")
        self._secret = secret
        self.tolerance = tolerance
        self._clock = clock
        self._accepted: OrderedDict[str, int] = OrderedDict()
        self._deliveries: OrderedDict[bytes, int] = OrderedDict()

    def verify(self, timestamp: str | None, signature: str | None, body: bytes, delivery_id: str | None) -> None:
        if not timestamp or not signature or not delivery_id:
            raise WebhookRejected("missing_headers")
        signature = signature.strip()
        # ASCII only, as the contract's patterns say: compare_digest refuses other text with a
        # TypeError, and int() refuses some characters that str.isdigit() accepts
        if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
            raise WebhookRejected("bad_signature")
        if not hmac.compare_digest(sign(self._secret, timestamp, body), signature):
            raise WebhookRejected("bad_signature")
        now = self._clock()
        if abs(now - int(timestamp)) > self.tolerance:
            raise WebhookRejected("stale")
        limit = now - self.tolerance
        _forget_before(self._accepted, limit)
        _forget_before(self._deliveries, limit)
        if signature in self._accepted:
            raise WebhookRejected("replay")
        # the id is not signed and any length: remember a digest of it
        delivery = hashlib.sha256(delivery_id.encode(errors="replace")).digest()
        if delivery in self._deliveries:
            raise WebhookRejected("replayed_delivery")
        _remember(self._accepted, signature, int(timestamp))
        _remember(self._deliveries, delivery, int(timestamp))


def _forget_before(seen: OrderedDict[Any, int], limit: float) -> None:
    for key in [k for k, ts in seen.items() if ts < limit]:
        del seen[key]


def _remember(seen: OrderedDict[Any, int], key: Any, timestamp: int) -> None:
    seen[key] = timestamp
    while len(seen) > MAX_REMEMBERED:
        seen.popitem(last=False)


class WebhookReceiver(WebhookServer):
    """The HTTP side: one POST route; ``on_change(change)`` must return once the change is safe."""

    def __init__(self, verifier: WebhookVerifier, on_change: Callable[[dict[str, Any]], Awaitable[None]],
                 on_malformed: Callable[[str, str], Awaitable[None]], path: str = "/tims/webhook",
                 max_body: int = MAX_BODY_BYTES) -> None:
        super().__init__(path, max_body)
        self.verifier = verifier
        self.on_change = on_change
        self.on_malformed = on_malformed
        self.accepted = 0
        self.rejected: Counter[str] = Counter()

    def _too_large(self, request: web.Request) -> web.Response:
        return self._refuse(request, "too_large", 413, f"the body is larger than {self.max_body} bytes")

    async def _receive(self, request: web.Request, body: bytes) -> web.Response:
        try:
            self.verifier.verify(request.headers.get("X-TIMS-Timestamp"), request.headers.get("X-TIMS-Signature"),
                                 body, request.headers.get("X-TIMS-Delivery-Id"))
        except WebhookRejected as exc:
            if exc.reason == "replayed_delivery":
                return self._refuse(request, exc.reason, 409, _REPLAYED_DELIVERY)
            return self._refuse(request, exc.reason, 401, _UNAUTHENTICATED[exc.reason])
        try:
            change = parse_change(body)
        except MalformedDelivery as exc:
            reason = f"{exc.reason}: {exc.detail}"
            if not await self._handed_over(self._quarantine_once(body, lambda raw: self.on_malformed(reason, raw)),
                                           "quarantined"):
                return self._unavailable()
            return self._refuse(request, exc.reason, exc.status, exc.detail)
        if not await self._handed_over(self.on_change(change), "published"):
            return self._unavailable()
        self.accepted += 1
        self.count(200, "accepted")
        return web.json_response({"status": "accepted"})

    def _unavailable(self) -> web.Response:
        self.count(503, "unavailable")
        return web.json_response({"error": "unavailable", "detail": "the change could not be stored; retry"},
                                 status=503)

    def _refuse(self, request: web.Request, reason: str, status: int, detail: str) -> web.Response:
        self.rejected[reason] += 1
        self.count(status, reason)
        log.warning("TIMS webhook refused (%s) from %s, delivery %s", reason, request.remote,
                    request.headers.get("X-TIMS-Delivery-Id", "-")[:64])
        return web.json_response({"error": reason, "detail": detail}, status=status)


class TimsWebhookSource(TimsSource):
    """Webhook receiver plus a slow read of the change feed for what webhooks missed. The feed
    read skips the changes webhooks already delivered (the last ``MAX_DELIVERED`` of them, in
    memory: after a restart they may be published once more)."""

    def __init__(self, publisher: Publisher, positions: PositionStore, client: TimsClient,
                 config: TimsConfig, *, secret: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__(publisher, positions, client, config)
        self.receiver = WebhookReceiver(WebhookVerifier(secret, config.webhook_tolerance, clock),
                                        self._publish_change, self._quarantine, config.webhook_path)
        self._delivered: OrderedDict[str, None] = OrderedDict()

    async def run(self) -> None:
        url = await self.receiver.start(self.config.webhook_host, self.config.webhook_port)
        log.info("TIMS webhook receiver listening on %s", url)
        try:
            if self.config.reconcile_interval > 0:
                await self.follow(self.config.reconcile_interval)
            else:
                await self._stopping.wait()
        finally:
            await self.receiver.stop()

    def already_published(self, change_id: str) -> bool:
        return change_id in self._delivered or super().already_published(change_id)

    async def _publish_change(self, change: dict[str, Any]) -> None:
        await self.publish_once([change_event(change)], self._mark_delivered)

    def _mark_delivered(self, events: list[SourceEvent]) -> None:
        for event in events:
            self._delivered[event.position["change_id"]] = None
        while len(self._delivered) > MAX_DELIVERED:
            self._delivered.popitem(last=False)

    async def _quarantine(self, reason: str, raw: str) -> None:
        self.quarantined += 1
        await self.publisher.quarantine("tims", reason, raw, {"stream": POSITION_KEY, "via": "webhook"})

