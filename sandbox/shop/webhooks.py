"""Webhook deliveries as Shopify makes them: one signed POST per (subscription, event).

Headers: ``X-Shopify-Topic``, ``X-Shopify-Hmac-Sha256`` (base64 HMAC-SHA256 of the raw body
under the app's client secret), ``X-Shopify-Webhook-Id`` (the same on every retry of one
delivery), ``X-Shopify-Event-Id``, ``X-Shopify-Shop-Domain``, ``X-Shopify-Triggered-At``,
``X-Shopify-API-Version``. A non-2xx answer or no answer is retried with backoff up to
``max_attempts``; Shopify promises at-least-once delivery, so ``duplicate_rate`` sends a
delivered webhook again (same webhook id) and ``drop_rate`` loses one (what reconciliation is for).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import aiohttp

__all__ = ["WebhookSettings", "WebhookSender", "shopify_hmac"]


def shopify_hmac(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@dataclass
class WebhookSettings:
    url: str | None = None
    secret: str | None = None
    #: topics delivered (``orders/create``...); empty: every topic
    topics: list[str] = field(default_factory=list)
    max_attempts: int = 5
    backoff_seconds: float = 0.5
    timeout_seconds: float = 5.0
    duplicate_rate: float = 0.0
    drop_rate: float = 0.0
    seed: int | None = None

    def public(self) -> dict[str, Any]:
        shown = asdict(self)
        shown["secret"] = bool(self.secret)
        return shown


@dataclass
class _Delivery:
    topic: str
    body: bytes
    webhook_id: str
    event_id: str
    triggered_at: str


class WebhookSender:
    def __init__(self, domain: str, api_version: str, settings: WebhookSettings | None = None) -> None:
        self.domain, self.api_version = domain, api_version
        self.settings = settings or WebhookSettings()
        self.counts: Counter[str] = Counter()
        self.log: list[dict[str, Any]] = []
        self._queue: asyncio.Queue[_Delivery] = asyncio.Queue()
        self._random = random.Random(self.settings.seed)
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def configure(self, settings: WebhookSettings) -> None:
        if not 0 <= settings.duplicate_rate <= 1 or not 0 <= settings.drop_rate <= 1:
            raise ValueError("duplicate_rate and drop_rate must be between 0 and 1")
        self.settings = settings
        self._random = random.Random(settings.seed)

    def enqueue(self, topic: str, payload: dict[str, Any]) -> None:
        """The store's listener: queue one delivery when a subscription wants ``topic``."""
        cfg = self.settings
        if not (cfg.url and cfg.secret) or (cfg.topics and topic not in cfg.topics):
            return
        triggered = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body = json.dumps(payload, separators=(",", ":")).encode()
        self._queue.put_nowait(_Delivery(topic, body, str(uuid.uuid4()), str(uuid.uuid4()), triggered))

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name="shop-webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def drain(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self._queue.join(), timeout)

    def status(self) -> dict[str, Any]:
        return {**self.settings.public(), "pending": self._queue.qsize(), "counts": dict(self.counts),
                "recent": self.log[-50:]}

    async def _run(self) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                if self._random.random() < self.settings.drop_rate:
                    self.counts["dropped"] += 1
                    self._note(delivery, 0, "dropped")
                elif await self._deliver(delivery) and self._random.random() < self.settings.duplicate_rate:
                    self.counts["duplicated"] += 1
                    await self._deliver(delivery)
            finally:
                self._queue.task_done()

    async def _deliver(self, delivery: _Delivery) -> bool:
        cfg = self.settings
        for attempt in range(1, max(1, cfg.max_attempts) + 1):
            outcome = await self._post(delivery, cfg)
            self._note(delivery, attempt, outcome)
            if outcome == "ok":
                self.counts["delivered"] += 1
                return True
            self.counts["failed_attempts"] += 1
            if attempt < cfg.max_attempts:
                await asyncio.sleep(cfg.backoff_seconds * 2 ** (attempt - 1))
        self.counts["gave_up"] += 1
        return False

    async def _post(self, delivery: _Delivery, cfg: WebhookSettings) -> str:
        headers = {"Content-Type": "application/json", "X-Shopify-Topic": delivery.topic,
                   "X-Shopify-Hmac-Sha256": shopify_hmac(cfg.secret or "", delivery.body),
                   "X-Shopify-Webhook-Id": delivery.webhook_id, "X-Shopify-Event-Id": delivery.event_id,
                   "X-Shopify-Shop-Domain": self.domain, "X-Shopify-Triggered-At": delivery.triggered_at,
                   "X-Shopify-API-Version": self.api_version}
        assert self._session is not None
        try:
            async with self._session.post(cfg.url or "", data=delivery.body, headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=cfg.timeout_seconds)) as answer:
                await answer.read()
                return "ok" if 200 <= answer.status < 300 else f"HTTP {answer.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return type(exc).__name__

    def _note(self, delivery: _Delivery, attempt: int, outcome: str) -> None:
        self.log.append({"topic": delivery.topic, "webhook_id": delivery.webhook_id, "attempt": attempt,
                         "outcome": outcome})
        del self.log[:-200]
