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

import orjson
from aiohttp import web

from connectors.envelope import SourceEvent
from connectors.kafka_io import PositionStore, Publisher
from connectors.tims.client import TimsClient
from connectors.tims.config import TimsConfig
from connectors.tims.source import POSITION_KEY, TimsSource, change_event

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
#: characters of a refused body kept in its quarantine record, which must fit one Kafka message
QUARANTINED_CHARS = 64 * 1024
#: bodies already quarantined, remembered so that TIMS's retries do not quarantine them again
_QUARANTINE_MEMORY = 1_000
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
    """The Change a delivery carries, or :class:`MalformedDelivery`.

    orjson, not the json module: orjson's parser stops at 1,024 levels with an error where
    json recurses into a RecursionError, and it refuses what json lets through and later
    stages trip on: NaN and Infinity, numbers that overflow a double (json reads 1e400 as inf),
    invalid UTF-8 and lone surrogates. ``MAX_DEPTH`` is then checked without recursion."""
    try:
        change = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedDelivery("not_json", 400, f"the body is not JSON: {exc}") from None
    if _nests_deeper(change, MAX_DEPTH):
        raise MalformedDelivery("too_deep", 400, f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        change_event(change)
    except ValueError as exc:
        raise MalformedDelivery("not_a_change", 422, str(exc)) from None
    return change


def _nests_deeper(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


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


class WebhookReceiver:
    """The HTTP side: one POST route; ``on_change(change)`` must return once the change is safe."""

    def __init__(self, verifier: WebhookVerifier, on_change: Callable[[dict[str, Any]], Awaitable[None]],
                 on_malformed: Callable[[str, str], Awaitable[None]], path: str = "/tims/webhook",
                 max_body: int = MAX_BODY_BYTES) -> None:
        self.verifier = verifier
        self.on_change = on_change
        self.on_malformed = on_malformed
        self.path = path
        self.max_body = max_body
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._quarantined: OrderedDict[str, None] = OrderedDict()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post(self.path, self._handle)
        return app

    async def start(self, host: str, port: int) -> str:
        """Serve on ``host:port`` (0: any free port); returns the URL to give TIMS."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}{self.path}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        too_large = f"the body is larger than {self.max_body} bytes"
        if (request.content_length or 0) > self.max_body:
            return self._refuse(request, "too_large", 413, too_large)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(request, "too_large", 413, too_large)
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
            if not await self._safely(self._quarantine_once(exc, body), "quarantined"):
                return _unavailable()
            return self._refuse(request, exc.reason, exc.status, exc.detail)
        if not await self._safely(self.on_change(change), "published"):
            return _unavailable()
        self.accepted += 1
        return web.json_response({"status": "accepted"})

    @staticmethod
    async def _safely(handing_over: Awaitable[None], what: str) -> bool:
        """Whether the hand-over worked; when it failed (the broker, not the input), TIMS's
        redelivery after a 503 is the retry."""
        try:
            await handing_over
        except Exception:
            log.exception("TIMS webhook: a delivery could not be %s; answering 503 so TIMS redelivers it", what)
            return False
        return True

    def _refuse(self, request: web.Request, reason: str, status: int, detail: str) -> web.Response:
        self.rejected[reason] += 1
        log.warning("TIMS webhook refused (%s) from %s, delivery %s", reason, request.remote,
                    request.headers.get("X-TIMS-Delivery-Id", "-")[:64])
        return web.json_response({"error": reason, "detail": detail}, status=status)

    async def _quarantine_once(self, malformed: MalformedDelivery, body: bytes) -> None:
        digest = hashlib.sha256(body).hexdigest()
        if digest in self._quarantined:
            return
        raw = body.decode(errors="replace")
        if len(raw) > QUARANTINED_CHARS:
            raw = raw[:QUARANTINED_CHARS] + f"… ({len(body)} bytes in all)"
        await self.on_malformed(f"{malformed.reason}: {malformed.detail}", raw)
        self._quarantined[digest] = None
        while len(self._quarantined) > _QUARANTINE_MEMORY:
            self._quarantined.popitem(last=False)


def _unavailable() -> web.Response:
    return web.json_response({"error": "unavailable", "detail": "the change could not be stored; retry"}, status=503)


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

