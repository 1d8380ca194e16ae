"""What every webhook receiver shares: one POST route on a server of its own, bodies bounded
before they are read, hand-overs that answer 503 when the broker did not take them, and
malformed bodies quarantined once however often the sender retries them.

Lifecycle: ``start(host, port)`` serves and returns the URL to give the sender; ``stop()``.
A subclass answers a body within the size bound in ``_receive`` and a larger one in
``_too_large`` (the TIMS receiver, connectors/tims/webhook.py; the shop's, connectors/shop/webhook.py).
"""

from __future__ import annotations

import abc
import hashlib
import logging
from collections import Counter, OrderedDict
from typing import Awaitable, Callable

from aiohttp import web

__all__ = ["WebhookServer", "QUARANTINED_CHARS", "DELIVERY_OUTCOMES", "delivery_outcome"]

#: characters of a refused body kept in its quarantine record, which must fit one Kafka message
QUARANTINED_CHARS = 64 * 1024
#: bodies already quarantined, remembered so that retries do not quarantine them again
QUARANTINE_MEMORY = 1_000
#: what became of a delivery, in the few classes the metrics report (the reasons are in the log)
DELIVERY_OUTCOMES = ("accepted", "ignored", "duplicate", "refused", "malformed", "too_large", "unavailable")
log = logging.getLogger(__name__)


def delivery_outcome(status: int, reason: str) -> str:
    """The class of an answer: refused (401: signature, headers, timestamp, another shop),
    duplicate (a delivery accepted before, 200 or 409), malformed (400, 422: quarantined),
    too_large (413), unavailable (503: the sender redelivers), ignored or accepted."""
    if status == 413:
        return "too_large"
    if status in (401, 403):
        return "refused"
    if status == 409 or reason == "duplicate":
        return "duplicate"
    if status == 503:
        return "unavailable"
    if status >= 400:
        return "malformed"
    return "ignored" if reason == "ignored" else "accepted"


class WebhookServer(abc.ABC):
    def __init__(self, path: str, max_body: int) -> None:
        self.path = path
        self.max_body = max_body
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._quarantined: OrderedDict[str, None] = OrderedDict()
        #: answers by :data:`DELIVERY_OUTCOMES` class (read by the metrics layer)
        self.deliveries: Counter[str] = Counter()

    def count(self, status: int, reason: str) -> None:
        self.deliveries[delivery_outcome(status, reason)] += 1

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post(self.path, self._handle)
        return app

    async def start(self, host: str, port: int) -> str:
        """Serve on ``host:port`` (0: any free port); returns the URL to give the sender."""
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
        """Refused on its Content-Length before any of it is read, or when reading passes the limit."""
        if (request.content_length or 0) > self.max_body:
            return self._too_large(request)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(request)
        return await self._receive(request, body)

    @abc.abstractmethod
    def _too_large(self, request: web.Request) -> web.Response:
        """The answer to a body over ``max_body`` (unsigned, as it was not read: log and count only)."""

    @abc.abstractmethod
    async def _receive(self, request: web.Request, body: bytes) -> web.Response:
        """The answer to a body within the bound."""

    @staticmethod
    async def _handed_over(work: Awaitable[None], what: str) -> bool:
        """Whether the hand-over worked; when it failed (the broker, not the input), the sender's
        redelivery after a 503 is the retry."""
        try:
            await work
        except Exception:
            log.exception("webhook: a delivery could not be %s; answering 503 so it is redelivered", what)
            return False
        return True

    async def _quarantine_once(self, body: bytes, keep: Callable[[str], Awaitable[None]]) -> None:
        """``keep(raw)`` the body (its first ``QUARANTINED_CHARS`` characters), unless done before."""
        digest = hashlib.sha256(body).hexdigest()
        if digest in self._quarantined:
            return
        raw = body.decode(errors="replace")
        if len(raw) > QUARANTINED_CHARS:
            raw = raw[:QUARANTINED_CHARS] + f"… ({len(body)} bytes in all)"
        await keep(raw)
        self._quarantined[digest] = None
        while len(self._quarantined) > QUARANTINE_MEMORY:
            self._quarantined.popitem(last=False)
