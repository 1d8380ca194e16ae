"""Shop → ``src.shop.<entity>``: webhooks as they come, plus reconciliation by ``updated_at``.

Webhooks are fast but not guaranteed (a platform gives up after its retries, or never sends),
so every ``reconcile_interval`` the source reads each entity changed since its window start and
publishes what it has not published yet (the same change has the same event id by either path,
docs/adr/0033). A pass keeps its window start fixed and saves its cursor after each page's acks
under ``shop:<entity>``; at the end of a pass the next window starts ``overlap_seconds`` before
the newest ``updated_at`` seen, so a write committed late is read again, never skipped.
With no saved position the first pass reads every record.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from typing import Any

from connectors.envelope import SourceEvent
from connectors.errors import QuotaExhaustedError, RetryableError
from connectors.kafka_io import PositionStore, Publisher
from connectors.retry import RetryPolicy
from connectors.shop.config import ShopConfig
from connectors.shop.platform import Delivery, Platform
from connectors.shop.records import RECONCILED, ShopRecord
from connectors.shop.webhook import ShopWebhookReceiver
from connectors.source import Source

__all__ = ["ShopSource", "position_key"]

#: event ids remembered as published (beyond them: a duplicate, which the flows drop)
MAX_PUBLISHED = 100_000
log = logging.getLogger(__name__)


def position_key(entity: str) -> str:
    return f"shop:{entity}"


class ShopSource(Source):
    system = "shop"

    def __init__(self, publisher: Publisher, positions: PositionStore, platform: Platform, config: ShopConfig,
                 backoff: RetryPolicy | None = None) -> None:
        super().__init__(publisher, positions)
        self.platform = platform
        self.config = config
        self.backoff = backoff or RetryPolicy(base_delay=1.0, max_delay=60.0)
        self.receiver = (ShopWebhookReceiver(platform, self._publish_delivery, self._quarantine, config.webhook_path)
                         if config.webhook_secret is not None else None)
        self.windows: dict[str, dict[str, Any]] = {}
        self.reconciled = 0
        #: what passes after an entity's first (which reads every record) published: changes
        #: no webhook had brought, which a receiver that works keeps near 0
        self.webhooks_missed = 0
        self.outages = 0
        self._published: OrderedDict[str, None] = OrderedDict()

    @property
    def entities(self) -> tuple[str, ...]:
        wanted = self.config.entities or RECONCILED
        return tuple(entity for entity in RECONCILED if entity in wanted)

    async def start(self) -> None:
        await super().start()
        saved = await self.positions.load()
        self.windows = {entity: dict(saved.get(position_key(entity)) or {}) for entity in self.entities}

    async def close(self) -> None:
        try:
            await self.platform.aclose()
        finally:
            await super().close()

    async def run(self) -> None:
        if self.receiver is not None:
            url = await self.receiver.start(self.config.webhook_host, self.config.webhook_port)
            log.info("shop webhook receiver listening on %s", url)
        try:
            await self._reconcile_until_stopped()
        finally:
            if self.receiver is not None:
                await self.receiver.stop()

    async def _reconcile_until_stopped(self) -> None:
        failures = 0
        while not self.stopping:
            try:
                await self.reconcile()
            except (RetryableError, QuotaExhaustedError) as exc:
                failures += 1
                self.outages += 1
                delay = max(0.1, self.backoff.delay(failures, getattr(exc, "retry_after", None)))
                log.warning("shop API unavailable (%s); attempt %d, retrying in %.1fs", exc, failures, delay)
                if await self.sleep(delay):
                    return
                continue
            failures = 0
            if await self.sleep(self.config.reconcile_interval):
                return

    async def reconcile(self) -> int:
        """One pass over every entity; returns how many events it published (what webhooks missed)."""
        found = 0
        for entity in self.entities:
            found += await self.reconcile_entity(entity)
        self.reconciled += found
        if found:
            log.info("shop reconciliation published %d change(s) no webhook had brought "
                     "(on a first pass: every record)", found)
        return found

    async def reconcile_entity(self, entity: str) -> int:
        window = self.windows.setdefault(entity, {})
        first_pass = window.get("since") is None
        found = 0
        while True:
            page = await self.platform.changed_since(entity, window.get("since"), window.get("cursor"),
                                                     self.config.page_size)
            found += await self._publish_new(page.records, "reconciliation")
            for record in page.records:
                window["newest"] = max(window.get("newest") or record.updated_at, record.updated_at)
            window["cursor"] = page.cursor
            if page.cursor is None and window.get("newest"):
                window["since"] = _minus(window["newest"], self.config.overlap_seconds)
            await self.positions.save(position_key(entity), dict(window))
            if page.cursor is None or self.stopping:
                self.polled(entity)
                if not first_pass:
                    self.webhooks_missed += found
                return found

    async def _publish_delivery(self, records: list[ShopRecord], delivery: Delivery) -> None:
        await self._publish_new(records, f"webhook {delivery.topic}")

    async def _publish_new(self, records: list[ShopRecord], via: str) -> int:
        events: list[SourceEvent] = [r.event(self.platform.name, via) for r in records
                                     if r.event_id not in self._published]
        if not events:
            return 0
        await self.publish(events)
        for event in events:
            self._published[event.event_id] = None
        while len(self._published) > MAX_PUBLISHED:
            self._published.popitem(last=False)
        return len(events)

    async def _quarantine(self, reason: str, raw: str, delivery: Delivery) -> None:
        await self.publisher.quarantine("shop", reason, raw, {"via": "webhook", "topic": delivery.topic,
                                                              "webhook_id": delivery.webhook_id})


def _minus(updated_at: str, seconds: float) -> str:
    moment = datetime.fromisoformat(updated_at.replace("Z", "+00:00")) - timedelta(seconds=seconds)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
