"""The shop simulator's HTTP face: Shopify's GraphQL Admin API at
``POST /admin/api/<version>/graphql.json`` (``X-Shopify-Access-Token``), webhooks, and an admin
API for tests and the demo.

Request path: faults (``sandbox/faults.py``: latency, 429/503, downtime) → access token →
the query's cost against the bucket → execution. Admin routes, not part of Shopify's API::

    GET|PUT /__admin/faults, POST /__admin/down?seconds=N, GET /__admin/state, POST /__admin/reset
    GET|PUT /__admin/webhooks        {url, secret, topics, max_attempts, duplicate_rate, drop_rate, ...}
    GET|PUT /__admin/throttle        {maximum, restore_rate, available}
    POST    /__admin/customers|products|orders|checkouts      create (the store's keyword arguments)
    PATCH   /__admin/records/<Type>/<numeric id>             an edit in the shop's admin
"""

from __future__ import annotations

import math
from typing import Any, Awaitable, Callable

from aiohttp import web

from sandbox.faults import Fault, Faults, admin_routes
from sandbox.http import serve
from sandbox.shop.admin_api import run_request
from sandbox.shop.cost import Bucket
from sandbox.shop.store import KINDS, ShopStore, gid
from sandbox.shop.webhooks import WebhookSender, WebhookSettings

__all__ = ["ACCESS_TOKEN", "API_VERSION", "ShopServer", "start_server"]

ACCESS_TOKEN = "shpat_sandbox"
API_VERSION = "2025-10"
_SHOP = web.AppKey("shop", "ShopServer")
_INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
_FAULTS = {"429": (429, "Exceeded the rate limit; retry later"), "limit": (429, "Exceeded the rate limit"),
           "503": (503, "Service unavailable"), "lock": (503, "Service unavailable"),
           "down": (503, "Shop is unavailable")}


class ShopServer:
    """The store, its bucket, its webhook sender and its faults, behind one aiohttp app."""

    def __init__(self, store: ShopStore | None = None, faults: Faults | None = None, *,
                 access_tokens: tuple[str, ...] = (ACCESS_TOKEN,), bucket: Bucket | None = None) -> None:
        self.store = store or ShopStore()
        self.faults = faults or Faults()
        self.bucket = bucket or Bucket()
        self.access_tokens = access_tokens
        self.webhooks = WebhookSender(self.store.domain, API_VERSION)
        self.requests = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_gate])
        app[_SHOP] = self
        app.add_routes([web.post("/admin/api/{version}/graphql.json", _graphql)])
        app.add_routes(admin_routes(self.faults, state=self.state, reset_state=self.store.reset))
        app.add_routes([
            web.get("/__admin/webhooks", _get_webhooks), web.put("/__admin/webhooks", _put_webhooks),
            web.get("/__admin/throttle", _get_throttle), web.put("/__admin/throttle", _put_throttle),
            web.post("/__admin/{kind:customers|products|orders|checkouts}", _create),
            web.patch("/__admin/records/{kind}/{number:[0-9]+}", _edit),
        ])

        async def start_webhooks(_: web.Application) -> None:
            self.store.listeners.append(self.webhooks.enqueue)
            await self.webhooks.start()

        async def stop_webhooks(_: web.Application) -> None:
            self.store.listeners.remove(self.webhooks.enqueue)
            await self.webhooks.stop()

        app.on_startup.append(start_webhooks)
        app.on_cleanup.append(stop_webhooks)
        return app

    def state(self) -> dict[str, Any]:
        return {**self.store.snapshot(), "webhooks": self.webhooks.status(), "throttle": self.bucket.status(),
                "requests": self.requests}


async def start_server(host: str, port: int, server: ShopServer) -> tuple[web.AppRunner, str]:
    """Serve on ``host:port`` (0: any free port); returns the runner and the base URL."""
    return await serve(server.app(), host, port)


@web.middleware
async def _gate(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    if not request.path.startswith("/admin/api/"):
        return await handler(request)
    shop: ShopServer = request.app[_SHOP]
    fault = await shop.faults.decide(request.path)
    if fault is not None:
        return _fault(fault)
    if request.headers.get("X-Shopify-Access-Token") not in shop.access_tokens:
        return web.json_response({"errors": _INVALID_TOKEN}, status=401)
    return await handler(request)


def _fault(fault: Fault) -> web.Response:
    status, message = _FAULTS.get(fault.kind, _FAULTS["503"])
    wait = max(1, math.ceil(fault.retry_after if fault.retry_after is not None else 1))
    return web.json_response({"errors": message}, status=status, headers={"Retry-After": str(wait)})


async def _graphql(request: web.Request) -> web.Response:
    shop: ShopServer = request.app[_SHOP]
    shop.requests += 1
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"errors": "Invalid JSON in request body"}, status=400)
    return web.json_response(run_request(shop.store, shop.bucket, body))


async def _get_webhooks(request: web.Request) -> web.Response:
    return web.json_response(request.app[_SHOP].webhooks.status())


async def _put_webhooks(request: web.Request) -> web.Response:
    sender = request.app[_SHOP].webhooks
    try:
        sender.configure(WebhookSettings(**await request.json()))
    except (TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(sender.status())


async def _get_throttle(request: web.Request) -> web.Response:
    return web.json_response(request.app[_SHOP].bucket.status())


async def _put_throttle(request: web.Request) -> web.Response:
    bucket = request.app[_SHOP].bucket
    try:
        bucket.configure(**await request.json())
    except (TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(bucket.status())


async def _create(request: web.Request) -> web.Response:
    store = request.app[_SHOP].store
    make = {"customers": store.create_customer, "products": store.create_product, "orders": store.create_order,
            "checkouts": store.create_checkout}[request.match_info["kind"]]
    try:
        return web.json_response(make(**await request.json()), status=201)
    except (TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)


async def _edit(request: web.Request) -> web.Response:
    store = request.app[_SHOP].store
    kind = request.match_info["kind"]
    if kind not in KINDS:
        return web.json_response({"error": f"kind must be one of {', '.join(KINDS)}"}, status=404)
    record_id = gid(kind, int(request.match_info["number"]))
    if record_id not in store.records[kind]:
        return web.json_response({"error": f"no {kind} {record_id}"}, status=404)
    values = await request.json()
    if not isinstance(values, dict) or {"id", "createdAt", "updatedAt"} & set(values):
        return web.json_response({"error": "a JSON object of fields other than id and the times"}, status=400)
    return web.json_response(store.update(kind, record_id, **values))
