"""Signed webhook delivery of TIMS changes (the contract's ``x-webhooks.change``).

One background task drains a queue in change-feed order, so a receiver sees changes in the
order they were committed; a failing receiver is retried with exponential backoff and, after the
last attempt, the change is dropped (it stays in the change feed, where receivers backfill).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sandbox.tims.store import Change

__all__ = ["WebhookConfig", "WebhookSender", "sign"]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-TIMS-Signature value: ``sha256=`` + hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclass
class WebhookConfig:
    url: str | None = None
    secret: str | None = None
    enabled: bool = True
    max_attempts: int = 5
    backoff_seconds: float = 0.5  # first retry delay; doubles each attempt
    timeout_seconds: float = 10.0

    @property
    def active(self) -> bool:
        return bool(self.enabled and self.url and self.secret)

    def public(self) -> dict[str, Any]:
        """The config without the secret (for the admin endpoint and logs)."""
        return {"url": self.url, "secret_set": bool(self.secret), "enabled": self.enabled,
                "max_attempts": self.max_attempts, "backoff_seconds": self.backoff_seconds,
                "timeout_seconds": self.timeout_seconds, "active": self.active}


@dataclass
class _Stats:
    delivered: int = 0
    failed: int = 0
    attempts: int = 0
    last_error: str | None = None
    last_delivered_change_id: str | None = None
    recent: list[dict[str, Any]] = field(default_factory=list)


class WebhookSender:
    """Queues every change while active and POSTs it, signed, from one task."""

    def __init__(self, config: WebhookConfig | None = None, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        self.config = config or WebhookConfig()
        self._clock = clock
        self._queue: asyncio.Queue[Change] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.stats = _Stats()

    # the store calls this synchronously after each commit
    def enqueue(self, change: Change) -> None:
        if self.config.active:
            self._queue.put_nowait(change)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name="tims-webhook-sender")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._session:
            await self._session.close()

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued change was delivered or given up (tests, demos)."""
        await asyncio.wait_for(self._queue.join(), timeout)

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {**self.config.public(), "pending": self._queue.qsize(), "delivered": s.delivered,
                "failed": s.failed, "attempts": s.attempts, "last_error": s.last_error,
                "last_delivered_change_id": s.last_delivered_change_id, "recent": list(s.recent)}

    async def _run(self) -> None:
        while True:
            change = await self._queue.get()
            try:
                await self._deliver(change)
            finally:
                self._queue.task_done()

    async def _deliver(self, change: Change) -> None:
        cfg = self.config
        body = json.dumps(change.as_dict(), separators=(",", ":"), sort_keys=True).encode()
        for attempt in range(1, max(1, cfg.max_attempts) + 1):
            if not cfg.active:
                return
            timestamp = str(int(self._clock()))
            headers = {
                "Content-Type": "application/json",
                "X-TIMS-Timestamp": timestamp,
                "X-TIMS-Signature": sign(cfg.secret or "", timestamp, body),
                "X-TIMS-Change-Id": change.change_id,
                "X-TIMS-Event": f"{change.entity}.{change.op}",
                "X-TIMS-Delivery-Id": uuid.uuid4().hex,
            }
            self.stats.attempts += 1
            error: str | None
            try:
                assert self._session is not None
                async with self._session.post(cfg.url or "", data=body, headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=cfg.timeout_seconds)) as resp:
                    await resp.read()
                    error = None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            self._note(change, attempt, error)
            if error is None:
                self.stats.delivered += 1
                self.stats.last_delivered_change_id = change.change_id
                return
            self.stats.last_error = error
            if attempt < cfg.max_attempts:
                await asyncio.sleep(cfg.backoff_seconds * 2 ** (attempt - 1))
        self.stats.failed += 1

    def _note(self, change: Change, attempt: int, error: str | None) -> None:
        self.stats.recent.append({"change_id": change.change_id, "attempt": attempt, "ok": error is None,
                                  "error": error})
        del self.stats.recent[:-50]
