"""The shop's webhook receiver, the same for every platform (the adapter verifies and maps).

Answers, in order of the checks (docs/adr/0033):

- 413 for a body over ``MAX_BODY_BYTES``, refused on its Content-Length before any of it is read
  (unsigned: counted and logged only);
- 401 when the adapter refuses the signature (nothing published, nothing kept);
- 200 ``duplicate`` for a webhook id accepted before (platforms retry and duplicate deliveries);
- 400 (not JSON, too deep) or 422 (not the resource its topic names) for a signed body, which
  goes to ``quarantine.shop`` once however often it is redelivered;
- 200 ``ignored`` for a topic the connector does not read;
- 200 ``accepted`` only after the broker acked the events; 503 when it did not, so the platform
  redelivers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from typing import Any, Awaitable, Callable

from aiohttp import web

from connectors.shop.platform import Delivery, NotTheResource, Platform, Refused
from connectors.shop.records import ShopRecord
from connectors.untrusted import UntrustedBody, load_json
from connectors.webhook_server import WebhookServer

__all__ = ["ShopWebhookReceiver", "MAX_BODY_BYTES", "MAX_DEPTH"]

#: a large order is some tens of kilobytes; the bound keeps the event under Kafka's 1 MiB
MAX_BODY_BYTES = 256 * 1024
MAX_DEPTH = 32
#: webhook ids remembered as accepted, at most
MAX_REMEMBERED = 50_000
log = logging.getLogger(__name__)


class ShopWebhookReceiver(WebhookServer):
    """One POST route; ``publish(records, delivery)`` returns once the broker acked them."""

    def __init__(self, platform: Platform,
                 publish: Callable[[list[ShopRecord], Delivery], Awaitable[None]],
                 quarantine: Callable[[str, str, Delivery], Awaitable[None]],
                 path: str = "/shop/webhook", max_body: int = MAX_BODY_BYTES) -> None:
        super().__init__(path, max_body)
        self.platform = platform
        self.publish = publish
        self.quarantine = quarantine
        self.answers: Counter[str] = Counter()
        self._accepted: OrderedDict[str, None] = OrderedDict()
        self._in_flight: dict[str, asyncio.Future[bool]] = {}

    def _too_large(self, request: web.Request) -> web.Response:
        return self._answer("too_large", 413, f"the body is larger than {self.max_body} bytes")

    async def _receive(self, request: web.Request, body: bytes) -> web.Response:
        try:
            delivery = self.platform.verify(request.headers, body)
        except Refused as exc:
            log.warning("shop webhook refused (%s) from %s", exc.reason, request.remote)
            detail = "not for this shop" if exc.reason == "other_shop" else "the signature does not match the body"
            return self._answer(exc.reason, 401, detail)
        if delivery.webhook_id in self._accepted:
            return self._answer("duplicate", 200)
        if delivery.webhook_id in self._in_flight:  # the same delivery, sent again before we answered
            accepted = await asyncio.shield(self._in_flight[delivery.webhook_id])
            return self._answer("duplicate", 200) if accepted else self._answer("unavailable", 503, "retry")
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._in_flight[delivery.webhook_id] = done
        try:
            answer = await self._take(delivery, body)
        finally:
            self._in_flight.pop(delivery.webhook_id, None)
            done.set_result(delivery.webhook_id in self._accepted)
        return answer

    async def _take(self, delivery: Delivery, body: bytes) -> web.Response:
        try:
            records = self.platform.webhook_records(delivery, load_json(body, MAX_DEPTH))
        except (UntrustedBody, NotTheResource) as exc:
            reason, status = (exc.reason, 400) if isinstance(exc, UntrustedBody) else ("not_the_resource", 422)
            keep = self._quarantine_once(body, lambda raw: self.quarantine(f"{reason}: {exc}", raw, delivery))
            if not await self._handed_over(keep, "quarantined"):
                return self._answer("unavailable", 503, "retry")
            return self._answer(reason, status, str(exc))
        if records and not await self._handed_over(self.publish(records, delivery), "published"):
            return self._answer("unavailable", 503, "the change could not be stored; retry")
        self._accepted[delivery.webhook_id] = None
        while len(self._accepted) > MAX_REMEMBERED:
            self._accepted.popitem(last=False)
        return self._answer("accepted" if records else "ignored", 200)

    def _answer(self, outcome: str, status: int, detail: str | None = None) -> web.Response:
        self.answers[outcome] += 1
        self.count(status, outcome)
        body: dict[str, Any] = {"status": outcome} if status < 300 else {"error": outcome, "detail": detail}
        return web.json_response(body, status=status)
