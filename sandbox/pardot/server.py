"""The Pardot v5 simulator's HTTP face: ``/api/v5/objects/...`` plus website form handlers.

API request path: bearer token (184) → ``Pardot-Business-Unit-Id`` (181 missing, 182 malformed,
201 unknown) → daily quota (122) → concurrency slot (66 past ``max_concurrent`` in flight per
business unit) → faults (latency is spent holding the slot, as a slow Pardot would) → handler.
Every error body is v5's ``{"code": N, "message": "..."}``.

Form handlers (``/l/<account>/<handler>``) are the public website side: no token, no quota.
Simulator-only routes live under ``/__admin``.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Awaitable, Callable, Collection, Mapping

from aiohttp import web

from sandbox.faults import Fault, Faults, admin_routes
from sandbox.http import serve
from sandbox.pardot.objects import (
    PardotError,
    decode_page_token,
    encode_page_token,
    parse_fields,
    parse_filters,
    parse_order,
)
from sandbox.pardot.store import API_USER_ID, UI_USER_ID, PardotStore

__all__ = [
    "BUSINESS_UNIT_PATTERN",
    "PardotConfig",
    "TokenValidator",
    "create_app",
    "start_server",
    "STORE_KEY",
    "FAULTS_KEY",
    "STATE_KEY",
]

BUSINESS_UNIT_PATTERN = re.compile(r"^0Uv[A-Za-z0-9]{15}$")
TokenValidator = Callable[[str], "bool | Awaitable[bool]"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# fault kind → Pardot error code
_FAULT_CODES = {"429": 66, "503": 183, "lock": 62, "limit": 122, "down": 183}
_CONTROL_PARAMS = {"fields", "orderBy", "limit", "deleted", "nextPageToken"}


@dataclass
class PardotConfig:
    """Server settings; each can be passed to :func:`create_app` as a keyword.

    ``token_validator(token) -> bool`` (sync or async) decides whether a bearer token is valid,
    so the simulator can share the Salesforce simulator's tokens; by default any non-empty token
    is accepted until ``POST /__admin/expire-tokens`` expires the ones seen so far.
    ``business_unit_ids``: accepted ids (None: any well-formed ``0Uv…`` id)."""

    token_validator: TokenValidator | None = None
    business_unit_ids: Collection[str] | None = None
    max_concurrent: int = 5
    daily_limit: int = 100_000
    page_size_default: int = 200
    page_size_max: int = 1000
    page_token_ttl_seconds: float = 4 * 3600
    success_location: str | None = None  # form handlers redirect here when set


@dataclass
class _Limits:
    """Per-app counters: requests today (per UTC day) and requests in flight per business unit."""

    day: date | None = None
    used: int = 0
    in_flight: Counter[str] = field(default_factory=Counter)
    #: the most requests a business unit had in flight at once, and the refusals for the quota
    peak_in_flight: int = 0
    refused_quota: int = 0
    tokens_seen: dict[str, float] = field(default_factory=dict)


STORE_KEY = web.AppKey("pardot_store", PardotStore)
FAULTS_KEY = web.AppKey("pardot_faults", Faults)
STATE_KEY = web.AppKey("pardot_limits", _Limits)
CONFIG_KEY = web.AppKey("pardot_config", PardotConfig)


def create_app(store: PardotStore, faults: Faults, **config: Any) -> web.Application:
    """The Pardot v5 app over ``store``; see :class:`PardotConfig` for ``config``."""
    cfg = PardotConfig(**config)
    app = web.Application(middlewares=[_gate])
    app[STORE_KEY] = store
    app[FAULTS_KEY] = faults
    app[STATE_KEY] = _Limits()
    app[CONFIG_KEY] = cfg
    routes: list[web.RouteDef] = []
    for collection, spec in store.specs.items():
        base = f"/api/v5/objects/{collection}"
        if collection == "prospects":
            routes.append(web.post(f"{base}/do/upsertLatestByEmail", _upsert_latest_by_email))
        if "query" in spec.operations:
            routes.append(web.get(base, _query_handler(collection)))
        if "create" in spec.operations:
            routes.append(web.post(base, _create_handler(collection)))
        if "read" in spec.operations:
            routes.append(web.get(f"{base}/{{id}}", _read_handler(collection)))
        if "update" in spec.operations:
            routes.append(web.patch(f"{base}/{{id}}", _update_handler(collection)))
        if "delete" in spec.operations:
            routes.append(web.delete(f"{base}/{{id}}", _delete_handler(collection)))
    routes += [web.post("/l/{account}/{handler}", _form_handler), web.get("/l/{account}/{handler}", _form_handler)]
    routes += admin_routes(faults, state=store.snapshot, reset_state=store.reset)
    routes += _own_admin_routes()
    app.add_routes(routes)
    return app


async def start_server(host: str, port: int, store: PardotStore, faults: Faults,
                       **config: Any) -> tuple[web.AppRunner, str]:
    """Serve on ``host:port`` (0 = any free port); returns the runner and the real base URL."""
    return await serve(create_app(store, faults, **config), host, port)


# -- the gate -------------------------------------------------------------------------------

def pardot_error(code: int, detail: str | None = None, headers: Mapping[str, str] | None = None) -> web.Response:
    err = PardotError(code, detail)
    return web.json_response(err.as_body(), status=err.status, headers=headers)


@web.middleware
async def _gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/l/"):
        fault = await request.app[FAULTS_KEY].decide(request.path)
        return _fault_response(fault) if fault else await _guarded(request, handler)
    if not request.path.startswith("/api/v5/"):
        return await handler(request)
    cfg: PardotConfig = request.app[CONFIG_KEY]
    limits = request.app[STATE_KEY]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not await _token_ok(request, token):
        return pardot_error(184)
    unit = request.headers.get("Pardot-Business-Unit-Id")
    if not unit:
        return pardot_error(181, "Pardot-Business-Unit-Id")
    if not BUSINESS_UNIT_PATTERN.match(unit):
        return pardot_error(182, "Pardot-Business-Unit-Id must be an 18-character id starting with 0Uv")
    if cfg.business_unit_ids is not None and unit not in cfg.business_unit_ids:
        return pardot_error(201)
    today = request.app[STORE_KEY].now().date()
    if limits.day != today:
        limits.day, limits.used = today, 0
    if limits.used >= cfg.daily_limit:
        limits.refused_quota += 1
        return pardot_error(122)
    limits.used += 1  # a request refused for concurrency still counts, as it reached Pardot
    if limits.in_flight[unit] >= cfg.max_concurrent:
        return pardot_error(66)
    limits.in_flight[unit] += 1
    limits.peak_in_flight = max(limits.peak_in_flight, limits.in_flight[unit])
    try:
        fault = await request.app[FAULTS_KEY].decide(request.path)
        response = _fault_response(fault) if fault else await _guarded(request, handler)
    finally:
        limits.in_flight[unit] -= 1
    if request.headers.get("X-Return-Api-Usage", "").lower() in ("1", "true"):
        response.headers["x-api-usage"] = f"{limits.used}/{cfg.daily_limit}"
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PardotError as exc:
        return web.json_response(exc.as_body(), status=exc.status)
    except web.HTTPMethodNotAllowed:
        return pardot_error(60, request.method)
    except web.HTTPNotFound:
        return pardot_error(198, request.path)


async def _token_ok(request: web.Request, token: str) -> bool:
    cfg: PardotConfig = request.app[CONFIG_KEY]
    if cfg.token_validator is not None:
        verdict = cfg.token_validator(token)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)
    # tokens are judged by when this server first saw them: expire-tokens ends those seen so far
    first_seen = request.app[STATE_KEY].tokens_seen.setdefault(token, time.time())
    return not request.app[FAULTS_KEY].token_expired(first_seen, default_ttl=math.inf)


def _fault_response(fault: Fault) -> web.Response:
    headers = None
    if fault.retry_after is not None:
        headers = {"Retry-After": str(max(0, math.ceil(fault.retry_after)))}
    return pardot_error(_FAULT_CODES.get(fault.kind, 183), f"injected {fault.kind}", headers)


# -- object handlers ---------------------------------------------------------------------------

def _store(request: web.Request) -> PardotStore:
    return request.app[STORE_KEY]


def _object_id(request: web.Request, collection: str) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise PardotError(192, f"{collection} {raw}")
    return int(raw)


def _single_params(request: web.Request) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in request.query.items():
        if key in params:
            raise PardotError(5, f"{key} given twice")
        params[key] = value
    return params


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        raise PardotError(152)
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PardotError(150) from exc


def _query_handler(collection: str) -> Handler:
    async def query(request: web.Request) -> web.Response:
        store, cfg = _store(request), request.app[CONFIG_KEY]
        spec = store.spec(collection)
        params = _single_params(request)
        token = params.get("nextPageToken")
        now = store.now().timestamp()
        if token:
            extra = set(params) - {"nextPageToken", "fields"}
            if extra:
                raise PardotError(5, f"only fields may accompany nextPageToken, not {', '.join(sorted(extra))}")
            state = decode_page_token(token)
            if state["c"] != collection:
                raise PardotError(211)
            if now - float(state["i"]) > cfg.page_token_ttl_seconds:
                raise PardotError(210)
            fields = parse_fields(spec, params["fields"], True) if "fields" in params else state["f"]
            filter_params, order = state["flt"], [(n, bool(d)) for n, d in state["o"]]
            deleted, limit, after = state["d"], int(state["l"]), state["a"]
        else:
            fields = parse_fields(spec, params.get("fields"), True)
            order = parse_order(spec, params.get("orderBy"))
            deleted = params.get("deleted", "false")
            if deleted not in ("true", "false", "all") or ("deleted" in params and not spec.soft_delete):
                raise PardotError(27 if spec.soft_delete else 5, deleted)
            limit = _page_size(params.get("limit"), cfg)
            filter_params = {k: v for k, v in params.items() if k not in _CONTROL_PARAMS}
            after = None
        filters = parse_filters(spec, filter_params)
        page = store.query(collection, filters, order, deleted, after, limit)
        body: dict[str, Any] = {"nextPageToken": None, "nextPageUrl": None,
                                "values": [store.render(collection, row, fields) for row in page.rows]}
        if page.more:
            next_token = encode_page_token({"c": collection, "f": fields, "flt": filter_params,
                                            "o": [[n, d] for n, d in order], "d": deleted, "l": limit,
                                            "a": page.last_key, "i": now})
            body["nextPageToken"] = next_token
            body["nextPageUrl"] = f"{request.scheme}://{request.host}/api/v5/objects/{collection}" \
                                  f"?nextPageToken={next_token}"
        return web.json_response(body)
    return query


def _page_size(raw: str | None, cfg: PardotConfig) -> int:
    if raw is None:
        return cfg.page_size_default
    if not raw.isdigit() or not 1 <= int(raw) <= cfg.page_size_max:
        raise PardotError(23, raw)
    return int(raw)


def _read_handler(collection: str) -> Handler:
    async def read(request: web.Request) -> web.Response:
        store = _store(request)
        params = _single_params(request)
        unknown = set(params) - {"fields", "deleted"}
        if unknown:
            raise PardotError(5, ", ".join(sorted(unknown)))
        fields = parse_fields(store.spec(collection), params.get("fields"), True)
        row = store.get(collection, _object_id(request, collection), include_deleted=params.get("deleted") == "true")
        return web.json_response(store.render(collection, row, fields))
    return read


def _create_handler(collection: str) -> Handler:
    async def create(request: web.Request) -> web.Response:
        store = _store(request)
        fields = parse_fields(store.spec(collection), request.query.get("fields"), False)
        row = store.create(collection, await _json_body(request), user_id=API_USER_ID, api=True)
        return web.json_response(store.render(collection, row, fields or ["id"]), status=201,
                                 headers={"Location": f"/api/v5/objects/{collection}/{row['id']}"})
    return create


def _update_handler(collection: str) -> Handler:
    async def update(request: web.Request) -> web.Response:
        store = _store(request)
        fields = parse_fields(store.spec(collection), request.query.get("fields"), False)
        object_id = _object_id(request, collection)
        row = store.update(collection, object_id, await _json_body(request), user_id=API_USER_ID, api=True)
        if not fields:
            return web.Response(status=204)
        return web.json_response(store.render(collection, row, fields))
    return update


def _delete_handler(collection: str) -> Handler:
    async def delete(request: web.Request) -> web.Response:
        _store(request).delete(collection, _object_id(request, collection), user_id=API_USER_ID)
        return web.Response(status=204)
    return delete


async def _upsert_latest_by_email(request: web.Request) -> web.Response:
    """``{"matchEmail", "prospect": {...}, "fields": [...], "secondaryDeletedSearch"}``:
    201 when a prospect was created, 200 when the latest-activity match was updated."""
    store = _store(request)
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise PardotError(154, "expected an object")
    unknown = set(body) - {"matchEmail", "prospect", "fields", "secondaryDeletedSearch"}
    if unknown:
        raise PardotError(154, ", ".join(sorted(unknown)))
    if "matchEmail" not in body:
        raise PardotError(153, "matchEmail")
    if "prospect" not in body:
        raise PardotError(153, "prospect")
    if not isinstance(body["prospect"], dict):
        raise PardotError(154, "prospect must be an object")
    secondary = body.get("secondaryDeletedSearch", True)
    if not isinstance(secondary, bool):
        raise PardotError(154, "secondaryDeletedSearch must be a boolean")
    fields = parse_fields(store.spec("prospects"), body.get("fields"), False)
    row, created = store.upsert_latest_by_email(body["matchEmail"], body["prospect"], user_id=API_USER_ID,
                                                api=True, secondary_deleted_search=secondary)
    return web.json_response(store.render("prospects", row, fields or ["id"]), status=201 if created else 200)


# -- website form handlers ------------------------------------------------------------------------

_FORM_ALIASES = {"postalcode": "zip", "zipcode": "zip", "title": "jobTitle", "emailaddress": "email"}


async def _form_handler(request: web.Request) -> web.Response:
    """A website form posting to a Pardot form handler (form-encoded, or a GET query)."""
    store = _store(request)
    cfg: PardotConfig = request.app[CONFIG_KEY]
    data = dict(await request.post()) if request.method == "POST" else dict(request.query)
    fields = _map_form_fields(store, {k: v for k, v in data.items() if isinstance(v, str)})
    email = fields.pop("email", "")
    prospect, activity = store.submit_form(email, fields, handler=request.match_info["handler"],
                                           account=request.match_info["account"])
    if cfg.success_location:
        raise web.HTTPFound(cfg.success_location)
    return web.json_response({"success": True, "prospectId": prospect["id"], "activityId": activity["id"]})


def _map_form_fields(store: PardotStore, data: Mapping[str, str]) -> dict[str, Any]:
    """Form field names → prospect fields (first_name, firstName, FIRST-NAME…); others dropped,
    as a form handler ignores fields it has no mapping for."""
    spec = store.spec("prospects")
    by_norm = {_norm(name): f for name, f in spec.fields.items() if f.writable}
    out: dict[str, Any] = {}
    for raw_name, raw in data.items():
        norm = _norm(raw_name)
        fspec = by_norm.get(_norm(_FORM_ALIASES.get(norm, norm)))
        if fspec is None:
            continue
        value: Any = raw.strip()
        if fspec.type == "int":
            if not value.lstrip("-").isdigit():
                continue
            value = int(value)
        elif fspec.type == "float":
            try:
                value = float(value)
            except ValueError:
                continue
        elif fspec.type == "bool":
            value = value.lower() in ("1", "true", "on", "yes")
        out[fspec.name] = value
    return out


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


# -- simulator admin -------------------------------------------------------------------------------

def _own_admin_routes() -> list[web.RouteDef]:
    """``/__admin/limits`` (GET, PUT {daily_limit, max_concurrent}, POST …/reset-usage),
    ``PATCH /__admin/prospects/{id}`` (a marketer's edit in the UI: score, grade, any field),
    ``POST /__admin/prospects/{id}/crm`` (the Salesforce connector links lead/contact/account
    ids) and ``POST /__admin/visitor-activities`` (record an activity for a prospect)."""

    def limits_body(request: web.Request) -> dict[str, Any]:
        cfg: PardotConfig = request.app[CONFIG_KEY]
        limits = request.app[STATE_KEY]
        return {"daily_limit": cfg.daily_limit, "max_concurrent": cfg.max_concurrent, "used_today": limits.used,
                "in_flight": dict(limits.in_flight), "peak_in_flight": limits.peak_in_flight,
                "refused_quota": limits.refused_quota}

    async def get_limits(request: web.Request) -> web.Response:
        return web.json_response(limits_body(request))

    async def put_limits(request: web.Request) -> web.Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise PardotError(154, "expected an object")
        cfg: PardotConfig = request.app[CONFIG_KEY]
        for key in ("daily_limit", "max_concurrent"):
            if key in body:
                if not isinstance(body[key], int) or body[key] < 0:
                    return web.json_response({"error": f"{key} must be a non-negative integer"}, status=400)
                setattr(cfg, key, body[key])
        return web.json_response(limits_body(request))

    async def reset_usage(request: web.Request) -> web.Response:
        request.app[STATE_KEY].used = 0
        return web.json_response(limits_body(request))

    async def ui_edit(request: web.Request) -> web.Response:
        store = _store(request)
        row = store.update("prospects", _object_id(request, "prospects"), await _json_body(request),
                           user_id=UI_USER_ID)
        return web.json_response(store.render("prospects", row))

    async def crm_link(request: web.Request) -> web.Response:
        store = _store(request)
        body = await _json_body(request)
        allowed = {"lead_id", "contact_id", "account_id", "owner_id"}
        if not isinstance(body, dict) or set(body) - allowed:
            raise PardotError(154, f"expected some of {sorted(allowed)}")
        row = store.link_crm(_object_id(request, "prospects"), **body)
        return web.json_response(store.render("prospects", row))

    async def add_activity(request: web.Request) -> web.Response:
        store = _store(request)
        body = await _json_body(request)
        try:
            row = store.add_visitor_activity(int(body["prospectId"]), int(body["type"]), str(body["typeName"]),
                                             body.get("details"))
        except (KeyError, TypeError, ValueError) as exc:
            raise PardotError(153, "prospectId, type and typeName") from exc
        return web.json_response(store.render("visitor-activities", row), status=201)

    def wrap(handler: Handler) -> Handler:  # Pardot-shaped errors for the prospect routes
        async def run(request: web.Request) -> web.StreamResponse:
            return await _guarded(request, handler)
        return run

    return [
        web.get("/__admin/limits", get_limits),
        web.put("/__admin/limits", wrap(put_limits)),
        web.post("/__admin/limits/reset-usage", reset_usage),
        web.patch("/__admin/prospects/{id}", wrap(ui_edit)),
        web.post("/__admin/prospects/{id}/crm", wrap(crm_link)),
        web.post("/__admin/visitor-activities", wrap(add_activity)),
    ]
