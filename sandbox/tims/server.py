"""The TIMS simulator's HTTP face: the contract in docs/tims-openapi.yaml, served faithfully.

Request path: faults (latency, 429/503/lock/limit, downtime) → API key → handler. Faults come
first because a server that is down answers nobody, authenticated or not. Every error uses the
contract's shape ``{"error": {"code", "message", "details"}}``.

Simulator-only routes live under ``/__admin`` (faults, state, webhook config, ERP-user writes)
and are not part of the contract.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from aiohttp import web

from sandbox.faults import Fault, Faults, admin_routes
from sandbox.http import serve
from sandbox.tims.store import (
    UI_USER,
    RecordInvalid,
    RecordNotFound,
    TimsStore,
    VersionConflict,
    parse_rfc3339,
)
from sandbox.tims.webhook import WebhookConfig, WebhookSender

__all__ = [
    "DEFAULT_API_KEYS",
    "MAX_BATCH",
    "TimsConfig",
    "create_app",
    "start_server",
    "STORE_KEY",
    "FAULTS_KEY",
    "WEBHOOK_KEY",
]

#: api key → client name (written to modified_by). The sandbox's key for our connector.
DEFAULT_API_KEYS: dict[str, str] = {"tims-sandbox-key": "connect"}
MAX_BATCH = 200

STORE_KEY = web.AppKey("tims_store", TimsStore)
FAULTS_KEY = web.AppKey("tims_faults", Faults)
WEBHOOK_KEY = web.AppKey("tims_webhook", WebhookSender)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# fault kind → (HTTP status, error code, message, Retry-After when the fault names none)
_FAULTS: dict[str, tuple[int, str, str, float]] = {
    "429": (429, "rate_limited", "Too many requests; slow down", 1),
    "503": (503, "service_unavailable", "TIMS is temporarily unavailable", 1),
    "lock": (409, "record_locked", "The record is locked by another TIMS transaction", 1),
    "limit": (429, "quota_exceeded", "The daily API quota for this client is spent", 60),
    "down": (503, "service_unavailable", "TIMS is down for maintenance", 1),
}


@dataclass
class TimsConfig:
    """Server settings; every field can be passed to :func:`create_app` as a keyword."""

    api_keys: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_API_KEYS))
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_max_attempts: int = 5
    webhook_backoff_seconds: float = 0.5
    webhook_timeout_seconds: float = 10.0
    max_batch: int = MAX_BATCH


CONFIG_KEY = web.AppKey("tims_config", TimsConfig)
#: the authenticated client's name on each request (web.RequestKey where aiohttp has it)
CLIENT_KEY: Any = web.RequestKey("tims_client", str) if hasattr(web, "RequestKey") else "tims_client"


def create_app(store: TimsStore, faults: Faults, **config: Any) -> web.Application:
    """The TIMS API app over ``store``; see :class:`TimsConfig` for ``config``."""
    cfg = TimsConfig(**config)
    sender = WebhookSender(WebhookConfig(
        url=cfg.webhook_url, secret=cfg.webhook_secret, max_attempts=cfg.webhook_max_attempts,
        backoff_seconds=cfg.webhook_backoff_seconds, timeout_seconds=cfg.webhook_timeout_seconds,
    ))
    app = web.Application(middlewares=[_api_gate])
    app[STORE_KEY] = store
    app[FAULTS_KEY] = faults
    app[WEBHOOK_KEY] = sender
    app[CONFIG_KEY] = cfg

    async def start_webhooks(_: web.Application) -> None:
        store.add_listener(sender.enqueue)
        await sender.start()

    async def stop_webhooks(_: web.Application) -> None:
        store.remove_listener(sender.enqueue)
        await sender.stop()

    app.on_startup.append(start_webhooks)
    app.on_cleanup.append(stop_webhooks)

    routes: list[web.RouteDef] = [
        web.get("/openapi.yaml", _contract),
        web.get("/v1/changes", _changes),
    ]
    for resource, info in store.contract.resources.items():
        routes += _resource_routes(resource, info.id_field, info.id_prefix)
    routes += admin_routes(faults, state=store.snapshot, reset_state=store.reset)
    routes += _own_admin_routes()
    app.add_routes(routes)
    return app


async def start_server(host: str, port: int, store: TimsStore, faults: Faults,
                       **config: Any) -> tuple[web.AppRunner, str]:
    """Serve on ``host:port`` (0 = any free port); returns the runner and the real base URL."""
    return await serve(create_app(store, faults, **config), host, port)


# -- gate: faults, then authentication -----------------------------------------------------

@web.middleware
async def _api_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v1/"):
        return await handler(request)
    fault = await request.app[FAULTS_KEY].decide(request.path)
    if fault is not None:
        return _fault_response(fault)
    cfg: TimsConfig = request.app[CONFIG_KEY]
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    client = cfg.api_keys.get(key.strip()) if scheme.lower() == "bearer" else None
    if not client:
        return error(401, "unauthorized", "Missing or unknown API key",
                     headers={"WWW-Authenticate": 'Bearer realm="TIMS"'})
    request[CLIENT_KEY] = client
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return error(404, "not_found", f"No such endpoint: {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return error(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}",
                     {"allowed": sorted(exc.allowed_methods)}, headers={"Allow": allowed})


def _fault_response(fault: Fault) -> web.Response:
    status, code, message, default_wait = _FAULTS.get(fault.kind, _FAULTS["503"])
    wait = fault.retry_after if fault.retry_after is not None else default_wait
    seconds = max(0, math.ceil(wait))
    return error(status, code, message, {"retry_after": seconds, "injected": fault.kind},
                 headers={"Retry-After": str(seconds)})


def error(status: int, code: str, message: str, details: Mapping[str, Any] | None = None,
          headers: Mapping[str, str] | None = None) -> web.Response:
    """A response in the contract's error shape."""
    body = {"error": {"code": code, "message": message, "details": dict(details or {})}}
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def _ok(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


# -- handlers ------------------------------------------------------------------------------

async def _contract(request: web.Request) -> web.Response:
    return web.Response(text=request.app[STORE_KEY].contract.text, content_type="application/yaml")


async def _changes(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    query = _feed_query(request, {info.entity for info in store.contract.resources.values()})
    if isinstance(query, web.Response):
        return query
    cursor, since, limit, entities = query
    try:
        page = store.changes_page(cursor=cursor, since=since, limit=limit, entities=entities)
    except ValueError:
        return error(400, "invalid_cursor", "The cursor is not one this server issued")
    return _ok({"changes": [c.as_dict() for c in page.changes], "next_cursor": page.next_cursor,
                "has_more": page.has_more})


_FEED_PARAMETERS = frozenset({"cursor", "since", "limit", "entity"})


def _feed_query(request: web.Request, known: set[str]) -> tuple[Any, ...] | web.Response:
    """The feed's query as the contract declares it: ``cursor`` or ``since`` (not both), ``limit``,
    ``entity`` (a comma-separated list of known entities); anything else is a 400, never ignored."""
    query = request.query
    unknown = set(query) - _FEED_PARAMETERS
    repeated = [name for name in _FEED_PARAMETERS if len(query.getall(name, [])) > 1]
    if unknown or repeated:
        return error(400, "bad_request", f"unknown or repeated query parameters: {sorted(unknown | set(repeated))}")
    cursor, since_raw = query.get("cursor"), query.get("since")
    if cursor is not None and since_raw is not None:
        return error(400, "bad_request", "Pass either cursor or since, not both")
    if cursor == "":
        return error(400, "bad_request", "cursor is empty")
    limit = _limit(query.get("limit"))
    if limit is None:
        return error(400, "bad_request", "limit must be an integer from 1 to 1000")
    since = None
    if since_raw is not None:
        try:
            since = parse_rfc3339(since_raw)
        except ValueError:
            return error(400, "bad_request", f"since is not an RFC 3339 date-time: {since_raw}")
    entities = None
    if "entity" in query:
        entities = query["entity"].split(",")
        if not set(entities) <= known:
            return error(400, "bad_request", f"unknown entity; known: {', '.join(sorted(known))}")
    return cursor, since, limit, entities


def _resource_routes(resource: str, id_field: str, id_prefix: str) -> list[web.RouteDef]:
    """The contract's routes for one resource. Ids match the contract's pattern (prefix and
    digits), so ``/v1/customers/batch-upsert`` is never taken for a customer id."""
    base = f"/v1/{resource}"
    one = f"{base}/{{id:{re.escape(id_prefix)}[0-9]+}}"

    async def list_records(request: web.Request) -> web.Response:
        limit = _limit(request.query.get("limit"))
        if limit is None:
            return error(400, "bad_request", "limit must be an integer from 1 to 1000")
        records, more = request.app[STORE_KEY].page(resource, limit=limit, after=request.query.get("after"))
        return _ok({"records": records, "has_more": more})

    async def create(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        try:
            record = request.app[STORE_KEY].create(resource, body, modified_by=request[CLIENT_KEY], trusted=False)
        except RecordInvalid as exc:
            return _invalid(exc)
        return _ok(record, 201, headers={"Location": f"{base}/{record[id_field]}"})

    async def batch_upsert(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        records = body.get("records")
        extra = set(body) - {"records"}
        if not isinstance(records, list) or not records or extra:
            return error(400, "bad_request", "Body must be {\"records\": [...]} with at least one record")
        not_objects = [i for i, record in enumerate(records) if not isinstance(record, dict)]
        if not_objects:
            return error(400, "bad_request", "Every record must be a JSON object", {"records": not_objects[:20]})
        cfg: TimsConfig = request.app[CONFIG_KEY]
        if len(records) > cfg.max_batch:
            return error(400, "batch_too_large", f"At most {cfg.max_batch} records per request",
                         {"max": cfg.max_batch, "received": len(records)})
        results = request.app[STORE_KEY].batch_upsert(resource, records, modified_by=request[CLIENT_KEY])
        return _ok({"results": results})

    async def by_external_id(request: web.Request) -> web.Response:
        try:
            record = request.app[STORE_KEY].get_by_external_id(resource, request.match_info["external_id"])
        except RecordNotFound as exc:
            return error(404, "not_found", str(exc))
        return _ok(record, headers={"ETag": f'"{record["version"]}"'})

    async def read(request: web.Request) -> web.Response:
        try:
            record = request.app[STORE_KEY].get(resource, request.match_info["id"])
        except RecordNotFound as exc:
            return error(404, "not_found", str(exc))
        return _ok(record, headers={"ETag": f'"{record["version"]}"'})

    def writer(method: str) -> Handler:
        async def write(request: web.Request) -> web.Response:
            if_version = _if_match(request, required=method == "PUT")
            if isinstance(if_version, web.Response):
                return if_version
            store = request.app[STORE_KEY]
            record_id = request.match_info["id"]
            try:
                if method == "DELETE":
                    store.delete(resource, record_id, modified_by=request[CLIENT_KEY], if_version=if_version)
                    return web.Response(status=204)
                body = await _json_object(request)
                if isinstance(body, web.Response):
                    return body
                op = store.replace if method == "PUT" else store.update
                result = op(resource, record_id, body, modified_by=request[CLIENT_KEY], if_version=if_version,
                            trusted=False)
            except RecordNotFound as exc:
                return error(404, "not_found", str(exc))
            except VersionConflict as exc:
                return error(412, "version_conflict", str(exc), {"current_version": exc.current})
            except RecordInvalid as exc:
                return _invalid(exc)
            return _ok(result.record, headers={"ETag": f'"{result.record["version"]}"'})
        return write

    return [
        web.get(base, list_records),
        web.post(base, create),
        web.post(f"{base}/batch-upsert", batch_upsert),
        web.get(f"{base}/by-external-id/{{external_id}}", by_external_id),
        web.get(one, read),
        web.put(one, writer("PUT")),
        web.patch(one, writer("PATCH")),
        web.delete(one, writer("DELETE")),
    ]


def _invalid(exc: RecordInvalid) -> web.Response:
    first = exc.errors[0]
    return error(422, "validation_error", first.message,
                 {"field": first.field, "errors": [e.as_dict() for e in exc.errors]})


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    """The body as a JSON object. NaN, infinities and numbers too large for a float are refused:
    they would be stored and then answered as invalid JSON."""
    try:
        body = json.loads(await request.read(), parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return error(400, "bad_request", "The body is not valid JSON (or holds a number out of range)")
    if not isinstance(body, dict):
        return error(400, "bad_request", "The body must be a JSON object")
    return body


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


_LIMIT = re.compile(r"[0-9]{1,4}", re.ASCII)
_IF_MATCH = re.compile(r'"([0-9]{1,18})"|([0-9]{1,18})', re.ASCII)


def _limit(raw: str | None, default: int = 100) -> int | None:
    """ASCII digits only: ``int()`` would also take " 5", "+5", "1_0" and other scripts' digits."""
    if raw is None:
        return default
    if not _LIMIT.fullmatch(raw):
        return None
    value = int(raw)
    return value if 1 <= value <= 1000 else None


def _if_match(request: web.Request, required: bool = False) -> int | None | web.Response:
    """The version in If-Match (the contract's pattern), None when absent and optional."""
    raw = request.headers.get("If-Match")
    if raw is None:
        if required:
            return error(428, "precondition_required",
                         "This write needs If-Match: the record version it is based on (its ETag)")
        return None
    match = _IF_MATCH.fullmatch(raw)
    if match is None:
        return error(400, "bad_request", "If-Match must be a record version, e.g. \"3\"")
    return int(match.group(1) or match.group(2))


# -- simulator admin -----------------------------------------------------------------------

_WEBHOOK_SETTINGS: dict[str, Callable[[Any], bool]] = {
    "url": lambda v: v is None or (isinstance(v, str) and v.startswith(("http://", "https://"))),
    "secret": lambda v: v is None or (isinstance(v, str) and bool(v)),
    "enabled": lambda v: isinstance(v, bool),
    "max_attempts": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "backoff_seconds": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
    "timeout_seconds": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
}

def _own_admin_routes() -> list[web.RouteDef]:
    """``/__admin/webhook`` (GET status, PUT config, POST drain) and ``/__admin/erp/...``:
    writes by TIMS users (modified_by tims-ui by default), for demos driving a running sandbox."""

    async def get_webhook(request: web.Request) -> web.Response:
        return _ok(request.app[WEBHOOK_KEY].status())

    async def put_webhook(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        sender = request.app[WEBHOOK_KEY]
        unknown = set(body) - set(_WEBHOOK_SETTINGS)
        if unknown:
            return error(400, "bad_request", f"unknown settings {sorted(unknown)}; known: {sorted(_WEBHOOK_SETTINGS)}")
        for key, value in body.items():
            if not _WEBHOOK_SETTINGS[key](value):
                return error(400, "bad_request", f"bad value for {key}: {value!r}")
        for key, value in body.items():
            setattr(sender.config, key, value)
        return _ok(sender.status())

    async def drain_webhook(request: web.Request) -> web.Response:
        timeout = float(request.query.get("timeout", "10"))
        try:
            await request.app[WEBHOOK_KEY].drain(timeout)
        except asyncio.TimeoutError:
            return error(503, "service_unavailable", "webhook deliveries still pending",
                         request.app[WEBHOOK_KEY].status())
        return _ok(request.app[WEBHOOK_KEY].status())

    async def erp_write(request: web.Request) -> web.Response:
        store = request.app[STORE_KEY]
        resource = request.match_info["resource"]
        if resource not in store.contract.resources:
            return error(404, "not_found", f"unknown resource {resource}")
        user = request.query.get("modified_by", UI_USER)
        try:
            if request.method == "DELETE":
                return _ok(store.delete(resource, request.match_info["id"], modified_by=user))
            body = await _json_object(request)
            if isinstance(body, web.Response):
                return body
            if request.method == "PATCH":
                result = store.update(resource, request.match_info["id"], body, modified_by=user)
            else:
                result = store.upsert(resource, body, modified_by=user)
        except RecordNotFound as exc:
            return error(404, "not_found", str(exc))
        except RecordInvalid as exc:
            return _invalid(exc)
        return _ok({"record": result.record, "created": result.created, "changed": result.changed})

    return [
        web.get("/__admin/webhook", get_webhook),
        web.put("/__admin/webhook", put_webhook),
        web.post("/__admin/webhook/drain", drain_webhook),
        web.post("/__admin/erp/{resource}", erp_write),
        web.patch("/__admin/erp/{resource}/{id}", erp_write),
        web.delete("/__admin/erp/{resource}/{id}", erp_write),
    ]
