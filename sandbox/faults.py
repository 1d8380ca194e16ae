"""Fault injection shared by every sandbox server, switchable at run time.

Each server owns one :class:`Faults`. Before handling a request the server asks
:meth:`Faults.decide` what to do; the answer is ``None`` (serve normally) or a :class:`Fault`
naming the kind, which the server renders in its own API's error shape. Latency is applied
inside :meth:`Faults.decide`.

Kinds: ``429`` (rate limited), ``503`` (server unavailable), ``lock`` (Salesforce
UNABLE_TO_LOCK_ROW), ``limit`` (REQUEST_LIMIT_EXCEEDED / daily quota), ``down`` (a downtime
window: every request fails, HTTP servers answer 503), ``token_expired`` (the next
authenticated request gets the API's expired-token error; see ``expire_tokens``).

Admin endpoint (mounted by :func:`admin_routes` under ``/__admin``):
``GET /__admin/faults`` → the config and counters; ``PUT /__admin/faults`` with a JSON body of
:class:`FaultConfig` fields → replaces the config; ``POST /__admin/faults/reset`` → no faults;
``POST /__admin/down?seconds=N`` → a downtime window starting now;
``POST /__admin/expire-tokens`` → every token issued so far is expired.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from aiohttp import web

__all__ = ["Fault", "FaultConfig", "Faults", "FAULT_KINDS", "admin_routes"]

FAULT_KINDS = ("429", "503", "lock", "limit")


@dataclass(frozen=True)
class Fault:
    kind: str
    retry_after: float | None = None


@dataclass
class FaultConfig:
    """What to inject. ``error_rate`` is the share of requests (0..1) that fail with one of
    ``error_kinds`` chosen at random; ``fail_first`` makes the first N requests it applies to
    fail whatever the draw says (so a short run still sees a fault); ``paths`` limits injection
    to paths containing any of these substrings (empty: all paths); ``token_ttl`` overrides
    token lifetime in seconds."""

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    error_rate: float = 0.0
    fail_first: int = 0
    error_kinds: list[str] = field(default_factory=lambda: list(FAULT_KINDS))
    retry_after: float | None = None
    paths: list[str] = field(default_factory=list)
    token_ttl: float | None = None
    seed: int | None = None

    def validate(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        if self.fail_first < 0:
            raise ValueError("fail_first must not be negative")
        unknown = set(self.error_kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown error_kinds {sorted(unknown)}; known: {list(FAULT_KINDS)}")
        if self.latency_ms < 0 or self.latency_jitter_ms < 0:
            raise ValueError("latency must not be negative")


class Faults:
    """Run-time switchable faults for one server, with counters of what was injected."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.config = FaultConfig()
        self._random = random.Random()
        self.down_until = 0.0
        #: tokens issued before this instant are expired (see ``expire_tokens``)
        self.tokens_expired_before = 0.0
        self.injected: Counter[str] = Counter()
        self._forced_left = 0

    def configure(self, config: FaultConfig) -> None:
        config.validate()
        self.config = config
        self._random = random.Random(config.seed)
        self._forced_left = config.fail_first

    def reset(self) -> None:
        self.configure(FaultConfig())
        self.down_until = 0.0
        self.tokens_expired_before = 0.0

    def go_down(self, seconds: float) -> None:
        self.down_until = self._clock() + seconds

    def expire_tokens(self) -> None:
        self.tokens_expired_before = self._clock()

    def token_expired(self, issued_at: float, default_ttl: float) -> bool:
        """True when a token issued at ``issued_at`` is no longer valid."""
        if issued_at <= self.tokens_expired_before:
            return True
        ttl = self.config.token_ttl if self.config.token_ttl is not None else default_ttl
        return self._clock() - issued_at >= ttl

    @property
    def is_down(self) -> bool:
        return self._clock() < self.down_until

    def _applies(self, path: str) -> bool:
        return not self.config.paths or any(part in path for part in self.config.paths)

    async def decide(self, path: str = "") -> Fault | None:
        """Apply latency, then say whether this request should fail and how."""
        cfg = self.config
        if cfg.latency_ms or cfg.latency_jitter_ms:
            await asyncio.sleep((cfg.latency_ms + self._random.uniform(0, cfg.latency_jitter_ms)) / 1000)
        if self.is_down:
            self.injected["down"] += 1
            return Fault("down", retry_after=max(0.0, self.down_until - self._clock()))
        if self._forced_left and cfg.error_kinds and self._applies(path):
            self._forced_left -= 1
            kind = self._random.choice(cfg.error_kinds)
            self.injected[kind] += 1
            return Fault(kind, retry_after=cfg.retry_after)
        if cfg.error_rate and cfg.error_kinds and self._applies(path) and self._random.random() < cfg.error_rate:
            kind = self._random.choice(cfg.error_kinds)
            self.injected[kind] += 1
            return Fault(kind, retry_after=cfg.retry_after)
        return None

    def snapshot(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "down_for_seconds": max(0.0, self.down_until - self._clock()),
            "tokens_expired_before": self.tokens_expired_before,
            "injected": dict(self.injected),
        }


def admin_routes(faults: Faults, state: Callable[[], Any] | None = None,
                 reset_state: Callable[[], None] | None = None) -> list[web.RouteDef]:
    """Routes under /__admin that switch ``faults`` and expose the server's ``state()``."""

    async def get_faults(_: web.Request) -> web.Response:
        return web.json_response(faults.snapshot())

    async def put_faults(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            config = FaultConfig(**body)
            faults.configure(config)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(faults.snapshot())

    async def reset_faults(_: web.Request) -> web.Response:
        faults.reset()
        return web.json_response(faults.snapshot())

    async def down(request: web.Request) -> web.Response:
        try:
            seconds = float(request.query.get("seconds", "10"))
        except ValueError:
            return web.json_response({"error": "seconds must be a number"}, status=400)
        faults.go_down(seconds)
        return web.json_response(faults.snapshot())

    async def expire(_: web.Request) -> web.Response:
        faults.expire_tokens()
        return web.json_response(faults.snapshot())

    async def get_state(_: web.Request) -> web.Response:
        return web.json_response(state() if state else {}, dumps=_dumps)

    async def post_reset(_: web.Request) -> web.Response:
        faults.reset()
        if reset_state:
            reset_state()
        return web.json_response({"reset": True})

    return [
        web.get("/__admin/faults", get_faults),
        web.put("/__admin/faults", put_faults),
        web.post("/__admin/faults/reset", reset_faults),
        web.post("/__admin/down", down),
        web.post("/__admin/expire-tokens", expire),
        web.get("/__admin/state", get_state),
        web.post("/__admin/reset", post_reset),
    ]


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, default=str, sort_keys=True)
