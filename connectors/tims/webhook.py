"""TIMS webhooks (the contract's ``x-webhooks.change``) as an alternative to polling.

The receiver checks ``X-TIMS-Signature`` (``sha256=`` + hex HMAC-SHA256 of
``<X-TIMS-Timestamp>.<raw body>``, compared in constant time) and refuses timestamps outside
the tolerance and a signature it has already accepted (a replay); each refusal is a 401 and is
counted by reason. An accepted change is published as the same SourceEvent the poller makes
(``tims:<change_id>``) and answered 200 only after the broker acked it, so a failed publish is
redelivered by TIMS. TIMS gives up on a change after a few attempts (it then lives only in the
change feed), so the webhook source also reads the feed every ``reconcile_interval`` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections import Counter, OrderedDict
from typing import Any, Awaitable, Callable

from aiohttp import web

from connectors.envelope import SourceEvent
from connectors.kafka_io import PositionStore, Publisher
from connectors.tims.client import TimsClient
from connectors.tims.config import TimsConfig
from connectors.tims.source import POSITION_KEY, TimsSource, change_event

__all__ = ["sign", "WebhookRejected", "WebhookVerifier", "WebhookReceiver", "TimsWebhookSource"]

#: change ids delivered by webhook that the feed read skips, at most
MAX_DELIVERED = 50_000
log = logging.getLogger(__name__)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-TIMS-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookRejected(Exception):
    """Why a delivery was refused: ``missing_headers``, ``bad_signature``, ``stale``, ``replay``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WebhookVerifier:
    """Signature, freshness and replay checks, separate from HTTP so they are easy to test."""

    def __init__(self, secret: str, tolerance: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("a webhook secret is required")
        self._secret = secret
        self.tolerance = tolerance
        self._clock = clock
        self._accepted: dict[str, float] = {}

    def verify(self, timestamp: str | None, signature: str | None, body: bytes) -> None:
        if not timestamp or not signature:
            raise WebhookRejected("missing_headers")
        if not timestamp.isdigit():
            raise WebhookRejected("bad_signature")
        if not hmac.compare_digest(sign(self._secret, timestamp, body), signature.strip()):
            raise WebhookRejected("bad_signature")
        now = self._clock()
        if abs(now - int(timestamp)) > self.tolerance:
            raise WebhookRejected("stale")
        self._forget_before(now - self.tolerance)
        if signature in self._accepted:
            raise WebhookRejected("replay")
        self._accepted[signature] = int(timestamp)

    def _forget_before(self, limit: float) -> None:
        for key in [k for k, ts in self._accepted.items() if ts < limit]:
            del self._accepted[key]


class WebhookReceiver:
    """The HTTP side: one POST route; ``on_change(change)`` must return once the change is safe."""

    def __init__(self, verifier: WebhookVerifier, on_change: Callable[[dict[str, Any]], Awaitable[None]],
                 on_malformed: Callable[[str, str], Awaitable[None]], path: str = "/tims/webhook") -> None:
        self.verifier = verifier
        self.on_change = on_change
        self.on_malformed = on_malformed
        self.path = path
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.url: str | None = None
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
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
        body = await request.read()
        try:
            self.verifier.verify(request.headers.get("X-TIMS-Timestamp"),
                                 request.headers.get("X-TIMS-Signature"), body)
        except WebhookRejected as exc:
            self.rejected[exc.reason] += 1
            log.warning("TIMS webhook refused (%s) from %s, delivery %s", exc.reason, request.remote,
                        request.headers.get("X-TIMS-Delivery-Id", "-"))
            return web.json_response({"error": exc.reason}, status=401)
        try:
            change = json.loads(body)
            if not isinstance(change, dict):
                raise ValueError("the body is not a JSON object")
            change_event(change)
        except ValueError as exc:
            self.rejected["malformed"] += 1
            await self.on_malformed(str(exc), body.decode(errors="replace"))
            return web.json_response({"status": "quarantined"}, status=202)
        await self.on_change(change)
        self.accepted += 1
        return web.json_response({"status": "accepted"})


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

