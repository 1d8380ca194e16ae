"""The simulated org's REST API (``/services/data``), OAuth endpoint and admin switches, on aiohttp.

Shapes follow Salesforce's public REST API: sObject CRUD and upsert by external id, sObject
Collections (create, update, delete, retrieve, upsert; ≤200 records, per-record results, HTTP 200
even when records fail), SOQL ``query``/``queryAll`` with ``nextRecordsUrl`` paging, ``limits``,
describe, the ``Sforce-Limit-Info`` header and the daily request quota.

Simulator extensions (real orgs do these over SOAP or Apex), under ``/services/data/vXX.X/sandbox``:
``POST convertLead`` ``{leadId, accountId?, contactId?, createOpportunity?, opportunityName?,
convertedStatus?}`` and ``POST undelete`` ``{ids: [...]}``.

Admin routes (no auth, never faulted): everything from :func:`sandbox.faults.admin_routes` plus
``GET/POST /__admin/records/{Obj}``, ``PATCH/DELETE /__admin/records/{Obj}/{id}``,
``POST /__admin/records/{Obj}/{id}/undelete``, ``POST /__admin/leads/{id}/convert`` (all as a UI
user: change origin ""), ``GET/POST/DELETE /__admin/validation-rules`` (``{object, field, equals,
message}``), ``DELETE /__admin/validation-rules/{id}``, ``POST /__admin/refresh-tokens``
(``{client_id, username}``), ``PUT /__admin/api-usage`` (``{used?, limit?}``) and
``GET /__admin/describe/{Obj}``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import math
import re
import secrets
import ssl
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from ..faults import Fault, Faults, admin_routes
from ..http import serve
from . import soql
from .oauth import OAuthConfig, authenticate, oauth_routes
from .org import (ConvertResult, MultipleMatches, Org, OrgTransaction, SalesforceError, Session, SfError,
                  WriteContext, normalize_id)

__all__ = ["create_app", "start_rest_server", "self_signed_tls", "MAX_COLLECTION"]

MAX_COLLECTION = 200
_SEASONS = ("Winter", "Spring", "Summer")
_DESCRIBE_TYPES = {"email", "phone", "picklist", "currency", "textarea", "url"}
_ROLLED_BACK = SfError("ALL_OR_NONE_OPERATION_ROLLED_BACK", "Record rolled back because not all "
                       "records were valid and the request was using AllOrNone header")
_LOCKED = SfError("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record")


@dataclass(frozen=True)
class _Call:
    """What the endpoint wrapper learned about an authenticated API request."""

    version: str
    session: Session
    client: str
    locked: bool  # a lock fault to render per record

    @property
    def ctx(self) -> WriteContext:
        origin = f"com/salesforce/api/rest/{self.version}"
        if self.client:
            origin += f";client={self.client}"
        return WriteContext(self.session.user_id, origin)


Handler = Callable[[web.Request, _Call], Awaitable[web.Response]]
Route = Callable[[web.Request], Awaitable[web.Response]]


def _errors(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response([{"message": message, "errorCode": code}], status=status, headers=headers)


def _sf_error(exc: SalesforceError, version: str) -> web.Response:
    if isinstance(exc, MultipleMatches):
        return web.json_response([f"{_base_path(version)}/sobjects/{exc.entity}/{i}" for i in exc.ids],
                                 status=300)
    return web.json_response([exc.error.rest()], status=exc.status)


def _client_of(header: str) -> str:
    m = re.search(r"(?:^|[,;\s])client=([^,;\s]+)", header)
    return m.group(1) if m else ""


def _base_path(version: str) -> str:
    return f"/services/data/v{version}"


def _label(version: str) -> str:
    k = int(float(version)) - 62  # v62.0 is Winter '25
    return f"{_SEASONS[k % 3]} '{25 + k // 3:02d}"


class _RestApi:
    def __init__(self, org: Org, faults: Faults, oauth: OAuthConfig, api_version: str,
                 min_version: str, query_batch_size: int, public_url: str | None) -> None:
        self.org = org
        self.faults = faults
        self.oauth = oauth
        self.api_version = api_version
        self.min_version = float(min_version)
        self.batch = query_batch_size
        self.public_url = public_url
        self.cursors: OrderedDict[str, tuple[str, list[dict[str, Any]], int]] = OrderedDict()

    # -- plumbing
    def base_url(self, request: web.Request) -> str:
        return self.public_url or str(request.url.origin())

    def versions(self) -> list[str]:
        top = int(float(self.api_version))
        return [f"{v}.0" for v in range(int(self.min_version), top + 1)]

    def limit_header(self) -> str:
        return f"api-usage={self.org.api.used}/{self.org.api.limit}"

    def render_fault(self, fault: Fault) -> web.Response:
        headers = {"Retry-After": str(max(1, math.ceil(fault.retry_after)))} if fault.retry_after else None
        if fault.kind == "429":
            return _errors(429, "REQUEST_LIMIT_EXCEEDED", "Too many requests; retry later.", headers)
        if fault.kind == "limit":
            return _errors(403, "REQUEST_LIMIT_EXCEEDED",
                           "ConcurrentRequests (Concurrent API Requests) Limit exceeded.", headers)
        if fault.kind == "lock":
            return _errors(400, _LOCKED.code, _LOCKED.message)
        return _errors(503, "SERVER_UNAVAILABLE", "Server is temporarily unavailable. Please try again later.",
                       headers)

    def endpoint(self, kind: str, handler: Handler, *, collection: bool = False) -> Route:
        """Wrap a handler with what every API call goes through: version, faults, session,
        daily quota, call accounting and the Sforce-Limit-Info header."""

        async def run(request: web.Request) -> web.Response:
            version = request.match_info["version"][1:]
            if version not in self.versions():
                return _errors(404, "NOT_FOUND", "The requested resource does not exist")
            fault = await self.faults.decide(request.path)
            response: web.Response
            if fault is not None and not (fault.kind == "lock" and collection):
                response = self.render_fault(fault)
            else:
                session = authenticate(request, self.org, self.faults, self.oauth)
                if isinstance(session, web.Response):
                    response = session
                elif self.org.api.exhausted:
                    response = _errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                else:
                    client = _client_of(request.headers.get("Sforce-Call-Options", ""))
                    self.org.count_api_call(client, kind)
                    call = _Call(version, session, client, fault is not None)
                    try:
                        response = await handler(request, call)
                    except SalesforceError as exc:
                        response = _sf_error(exc, version)
                    except soql.SoqlError as exc:
                        response = _errors(400, exc.code, exc.message)
            response.headers["Sforce-Limit-Info"] = self.limit_header()
            return response

        return run

    @staticmethod
    async def body(request: web.Request) -> Any:
        try:
            return json.loads(await request.text() or "null")
        except json.JSONDecodeError as exc:
            raise SalesforceError(SfError("JSON_PARSER_ERROR", f"Unexpected character at [line:{exc.lineno}, "
                                          f"column:{exc.colno}]")) from None

    async def body_object(self, request: web.Request) -> dict[str, Any]:
        data = await self.body(request)
        if not isinstance(data, dict):
            raise SalesforceError(SfError("JSON_PARSER_ERROR", "Cannot deserialize instance of sObject "
                                          "from a value that is not an object"))
        return data

    def record_json(self, entity: str, rec: dict[str, Any], version: str,
                    fields: list[str] | None = None) -> dict[str, Any]:
        url = f"{_base_path(version)}/sobjects/{entity}/{rec['Id']}"
        out: dict[str, Any] = {"attributes": {"type": entity, "url": url}}
        names = fields if fields is not None else [f.name for f in self.org.describe(entity)]
        out.update({n: rec.get(n) for n in names})
        return out

    def field_list(self, entity: str, raw: str | None) -> list[str] | None:
        if not raw:
            return None
        sobj = self.org.sobject(entity)
        names = []
        for part in raw.split(","):
            fdef = sobj.field(part.strip())
            if fdef is None:
                raise SalesforceError(SfError("INVALID_FIELD", f"No such column '{part.strip()}' on entity "
                                              f"'{sobj.name}'. If you are attempting to use a custom field, be "
                                              "sure to append the '__c' after the custom field name."))
            names.append(fdef.name)
        return names

    # -- resources
    async def list_versions(self, request: web.Request) -> web.Response:
        return web.json_response([{"label": _label(v), "url": _base_path(v), "version": v}
                                  for v in self.versions()])

    async def resources(self, request: web.Request, call: _Call) -> web.Response:
        base = _base_path(call.version)
        names = ("sobjects", "query", "queryAll", "limits", "composite")
        return web.json_response({n: f"{base}/{n}" for n in names})

    async def limits(self, request: web.Request, call: _Call) -> web.Response:
        api = self.org.api
        remaining = max(0, api.limit - api.used)
        return web.json_response({"DailyApiRequests": {"Max": api.limit, "Remaining": remaining}})

    async def describe_global(self, request: web.Request, call: _Call) -> web.Response:
        base = _base_path(call.version)
        return web.json_response({"encoding": "UTF-8", "maxBatchSize": MAX_COLLECTION, "sobjects": [
            self.object_summary(name, base) for name in self.org.entities]})

    def object_summary(self, entity: str, base: str) -> dict[str, Any]:
        sobj = self.org.sobject(entity)
        url = f"{base}/sobjects/{sobj.name}"
        return {"name": sobj.name, "label": sobj.name, "keyPrefix": sobj.key_prefix, "createable": True,
                "updateable": True, "deletable": True, "queryable": True, "custom": False,
                "urls": {"sobject": url, "describe": f"{url}/describe", "rowTemplate": f"{url}/{{ID}}"}}

    async def sobject_info(self, request: web.Request, call: _Call) -> web.Response:
        summary = self.object_summary(request.match_info["obj"], _base_path(call.version))
        return web.json_response({"objectDescribe": summary, "recentItems": []})

    async def describe(self, request: web.Request, call: _Call) -> web.Response:
        sobj = self.org.sobject(request.match_info["obj"])
        body = self.object_summary(sobj.name, _base_path(call.version))
        body["fields"] = [_describe_field(f) for f in sobj.fields]
        return web.json_response(body)

    async def create(self, request: web.Request, call: _Call) -> web.Response:
        entity = self.org.sobject(request.match_info["obj"]).name
        values = await self.body_object(request)
        with self.org.transaction(call.ctx) as tx:
            rid = tx.create(entity, values)
        return web.json_response({"id": rid, "success": True, "errors": []}, status=201)

    @staticmethod
    def check_path_id(raw: str) -> None:
        if normalize_id(raw) is None:
            raise SalesforceError(SfError(
                "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {raw}"), 404)

    async def get_record(self, request: web.Request, call: _Call) -> web.Response:
        entity = self.org.sobject(request.match_info["obj"]).name
        self.check_path_id(request.match_info["id"])
        rec = self.org.retrieve(entity, request.match_info["id"])
        fields = self.field_list(entity, request.query.get("fields"))
        return web.json_response(self.record_json(entity, rec, call.version, fields))

    async def update(self, request: web.Request, call: _Call) -> web.Response:
        entity = self.org.sobject(request.match_info["obj"]).name
        self.check_path_id(request.match_info["id"])
        values = await self.body_object(request)
        with self.org.transaction(call.ctx) as tx:
            tx.update(entity, request.match_info["id"], values)
        return web.Response(status=204)

    async def delete(self, request: web.Request, call: _Call) -> web.Response:
        entity = self.org.sobject(request.match_info["obj"]).name
        self.check_path_id(request.match_info["id"])
        with self.org.transaction(call.ctx) as tx:
            tx.delete(entity, request.match_info["id"])
        return web.Response(status=204)

    async def get_by_external_id(self, request: web.Request, call: _Call) -> web.Response:
        entity = self.org.sobject(request.match_info["obj"]).name
        found = self.org.find(entity, request.match_info["field"], request.match_info["value"])
        if not found:
            return _errors(404, "NOT_FOUND", "The requested resource does not exist")
        if len(found) > 1:
            raise MultipleMatches(entity, request.match_info["field"], [r["Id"] for r in found])
        fields = self.field_list(entity, request.query.get("fields"))
        return web.json_response(self.record_json(entity, found[0], call.version, fields))

    async def upsert(self, request: web.Request, call: _Call) -> web.Response:
        entity = self.org.sobject(request.match_info["obj"]).name
        values = await self.body_object(request)
        with self.org.transaction(call.ctx) as tx:
            rid, created = tx.upsert(entity, request.match_info["field"], request.match_info["value"], values)
        return web.json_response({"id": rid, "success": True, "errors": [], "created": created},
                                 status=201 if created else 200)

    # -- sObject Collections
    async def collection_body(self, request: web.Request) -> tuple[list[dict[str, Any]], bool]:
        data = await self.body_object(request)
        records = data.get("records")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise SalesforceError(SfError("JSON_PARSER_ERROR", "records must be a list of sObjects"))
        if len(records) > MAX_COLLECTION:
            raise SalesforceError(SfError("EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more "
                                          f"than {MAX_COLLECTION} records into this call"))
        return records, bool(data.get("allOrNone", False))

    def run_collection(self, call: _Call, ops: list[Callable[[OrgTransaction], dict[str, Any]]],
                       all_or_none: bool, *, upsert: bool = False) -> list[dict[str, Any]]:
        """Per-record savepoints; with allOrNone a single failure rolls every record back."""
        results: list[dict[str, Any]] = []
        failed = False
        with self.org.transaction(call.ctx) as tx:
            for op in ops:
                point = tx.savepoint()
                try:
                    if call.locked:
                        raise SalesforceError(_LOCKED)
                    results.append(op(tx))
                except SalesforceError as exc:
                    tx.rollback_to(point)
                    results.append(_failure(exc.error, upsert))
                    failed = True
            if failed and all_or_none:
                tx.rollback()
                results = [_failure(_ROLLED_BACK, upsert) if r["success"] else r for r in results]
        return results

    def typed(self, record: dict[str, Any]) -> str:
        attrs = record.get("attributes")
        entity = attrs.get("type") if isinstance(attrs, dict) else None
        if not entity:
            raise SalesforceError(SfError("INVALID_TYPE", "Must send a concrete entity type."))
        return str(entity)

    async def collection_create(self, request: web.Request, call: _Call) -> web.Response:
        records, all_or_none = await self.collection_body(request)

        def op(record: dict[str, Any]) -> Callable[[OrgTransaction], dict[str, Any]]:
            def run(tx: OrgTransaction) -> dict[str, Any]:
                return {"id": tx.create(self.typed(record), record), "success": True, "errors": []}
            return run

        return web.json_response(self.run_collection(call, [op(r) for r in records], all_or_none))

    async def collection_update(self, request: web.Request, call: _Call) -> web.Response:
        records, all_or_none = await self.collection_body(request)

        def op(record: dict[str, Any]) -> Callable[[OrgTransaction], dict[str, Any]]:
            def run(tx: OrgTransaction) -> dict[str, Any]:
                rid = next((v for k, v in record.items() if k.lower() == "id"), None)
                if not rid:
                    raise SalesforceError(SfError("MISSING_ARGUMENT", "Id not specified in an update call",
                                                  ("Id",)))
                tx.update(self.typed(record), str(rid), record)
                return {"id": normalize_id(rid), "success": True, "errors": []}
            return run

        return web.json_response(self.run_collection(call, [op(r) for r in records], all_or_none))

    async def collection_delete(self, request: web.Request, call: _Call) -> web.Response:
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        if len(ids) > MAX_COLLECTION:
            raise SalesforceError(SfError("EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more "
                                          f"than {MAX_COLLECTION} records into this call"))
        all_or_none = request.query.get("allOrNone", "false").lower() == "true"

        def op(raw: str) -> Callable[[OrgTransaction], dict[str, Any]]:
            def run(tx: OrgTransaction) -> dict[str, Any]:
                rid = normalize_id(raw)
                entity = self.org.entity_for_id(rid) if rid else None
                if rid is None or entity is None:
                    raise SalesforceError(SfError("MALFORMED_ID", f"malformed id {raw}"))
                tx.delete(entity, rid)
                return {"id": rid, "success": True, "errors": []}
            return run

        return web.json_response(self.run_collection(call, [op(i) for i in ids], all_or_none))

    async def collection_retrieve(self, request: web.Request, call: _Call) -> web.Response:
        entity = self.org.sobject(request.match_info["obj"]).name
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        if len(ids) > 2000:
            raise SalesforceError(SfError("EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more "
                                          "than 2000 records into this call"))
        fields = self.field_list(entity, request.query.get("fields"))
        out: list[dict[str, Any] | None] = []
        for raw in ids:
            rec = self.org.get(entity, raw)
            out.append(self.record_json(entity, rec, call.version, fields) if rec else None)
        return web.json_response(out)

    async def collection_upsert(self, request: web.Request, call: _Call) -> web.Response:
        sobj = self.org.sobject(request.match_info["obj"])
        field_name = request.match_info["field"]
        fdef = sobj.field(field_name)
        if fdef is None or not (fdef.external_id or fdef.name == "Id"):
            raise SalesforceError(SfError("INVALID_FIELD", f"Field name provided, {field_name} is not an "
                                          f"External ID or indexed field for {sobj.name}"))
        records, all_or_none = await self.collection_body(request)
        for record in records:
            if self.typed(record).lower() != sobj.name.lower():
                raise SalesforceError(SfError("INVALID_TYPE", "All records must be of the type named in the "
                                              f"URL: {sobj.name}"))
        values = [next((v for k, v in r.items() if k.lower() == fdef.name.lower()), None) for r in records]
        keys = [self.org._key(fdef, v) if v not in (None, "") else None for v in values]
        seen: dict[Any, int] = {}
        for key in keys:
            if key is not None:
                seen[key] = seen.get(key, 0) + 1

        def op(record: dict[str, Any], value: Any, key: Any) -> Callable[[OrgTransaction], dict[str, Any]]:
            def run(tx: OrgTransaction) -> dict[str, Any]:
                if key is not None and seen[key] > 1:
                    raise SalesforceError(SfError("DUPLICATE_EXTERNAL_ID",
                                                  f"Duplicate external id specified: {value}", (fdef.name,)))
                if key is None and fdef.name != "Id":
                    raise SalesforceError(SfError("MISSING_ARGUMENT", f"{fdef.name} not specified", (fdef.name,)))
                rid, created = tx.upsert(sobj.name, fdef.name, value, record)
                return {"id": rid, "success": True, "errors": [], "created": created}
            return run

        ops = [op(r, v, k) for r, v, k in zip(records, values, keys)]
        return web.json_response(self.run_collection(call, ops, all_or_none, upsert=True))

    # -- query
    def page_size(self, request: web.Request) -> int:
        m = re.search(r"batchSize=(\d+)", request.headers.get("Sforce-Query-Options", ""))
        return max(200, min(2000, int(m.group(1)))) if m else self.batch

    async def query(self, request: web.Request, call: _Call) -> web.Response:
        include_deleted = request.path.rstrip("/").endswith("queryAll")
        text = request.query.get("q")
        if not text:
            return _errors(400, "MALFORMED_QUERY", "A query string has to be specified")
        q = self.org.parse_query(text)
        rows = self.org.run_query(q, include_deleted=include_deleted)
        if q.count_only:
            return web.json_response({"totalSize": len(rows), "done": True, "records": []})
        records = [self.record_json(q.entity, r, call.version, list(q.fields)) for r in rows]
        size = self.page_size(request)
        body: dict[str, Any] = {"totalSize": len(records), "done": len(records) <= size,
                                "records": records[:size]}
        if len(records) > size:
            locator = "01g" + secrets.token_hex(8)[:12] + "AAA"
            self.cursors[locator] = (q.entity, records, size)
            while len(self.cursors) > 50:
                self.cursors.popitem(last=False)
            body["nextRecordsUrl"] = self.next_url(call.version, include_deleted, locator, size)
        return web.json_response(body)

    @staticmethod
    def next_url(version: str, include_deleted: bool, locator: str, offset: int) -> str:
        kind = "queryAll" if include_deleted else "query"
        return f"{_base_path(version)}/{kind}/{locator}-{offset}"

    async def query_more(self, request: web.Request, call: _Call) -> web.Response:
        include_deleted = "/queryAll/" in request.path
        locator, _, offset_text = request.match_info["locator"].rpartition("-")
        cursor = self.cursors.get(locator)
        if cursor is None or not offset_text.isdigit():
            return _errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        _, records, size = cursor
        offset = int(offset_text)
        page = records[offset:offset + size]
        body: dict[str, Any] = {"totalSize": len(records), "done": offset + size >= len(records), "records": page}
        if not body["done"]:
            body["nextRecordsUrl"] = self.next_url(call.version, include_deleted, locator, offset + size)
        return web.json_response(body)

    # -- simulator extensions
    async def convert_lead(self, request: web.Request, call: _Call) -> web.Response:
        data = await self.body_object(request)
        lead_id = data.get("leadId")
        if not lead_id:
            raise SalesforceError(SfError("REQUIRED_FIELD_MISSING", "Required fields are missing: [leadId]",
                                          ("leadId",)))
        result = self.org.convert_lead(str(lead_id), ctx=call.ctx, **_convert_options(data))
        return web.json_response(_convert_json(result))

    async def undelete(self, request: web.Request, call: _Call) -> web.Response:
        data = await self.body_object(request)
        ids = [str(i) for i in data.get("ids") or []]

        def op(raw: str) -> Callable[[OrgTransaction], dict[str, Any]]:
            def run(tx: OrgTransaction) -> dict[str, Any]:
                entity = self.org.entity_for_id(raw)
                if entity is None or normalize_id(raw) is None:
                    raise SalesforceError(SfError("MALFORMED_ID", f"malformed id {raw}"))
                tx.undelete(entity, raw)
                return {"id": normalize_id(raw), "success": True, "errors": []}
            return run

        return web.json_response(self.run_collection(call, [op(i) for i in ids], False))


def _failure(error: SfError, upsert: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": None, "success": False, "errors": [error.collection()]}
    if upsert:
        out["created"] = False
    return out


def _describe_field(fdef: Any) -> dict[str, Any]:
    return {"name": fdef.name, "label": fdef.name,
            "type": fdef.format if fdef.format in _DESCRIBE_TYPES else fdef.type,
            "externalId": fdef.external_id, "nillable": fdef.nillable, "unique": fdef.unique,
            "createable": fdef.createable, "updateable": fdef.updateable,
            "referenceTo": list(fdef.reference_to), "compoundFieldName": fdef.compound_field_name,
            "defaultedOnCreate": fdef.default is not None}


def _convert_options(data: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, name in (("accountId", "account_id"), ("contactId", "contact_id"),
                      ("opportunityName", "opportunity_name"), ("convertedStatus", "converted_status"),
                      ("ownerId", "owner_id")):
        if data.get(key):
            options[name] = str(data[key])
    if "createOpportunity" in data:
        options["create_opportunity"] = bool(data["createOpportunity"])
    elif "doNotCreateOpportunity" in data:
        options["create_opportunity"] = not bool(data["doNotCreateOpportunity"])
    return options


def _convert_json(result: ConvertResult) -> dict[str, Any]:
    return {"leadId": result.lead_id, "accountId": result.account_id, "contactId": result.contact_id,
            "opportunityId": result.opportunity_id, "success": True, "errors": []}


def _admin_routes(org: Org) -> list[web.RouteDef]:
    """Simulator switches: UI-user writes, validation rules, tokens and the API quota."""

    def fail(exc: SalesforceError) -> web.Response:
        return web.json_response([exc.error.rest()], status=exc.status if exc.status >= 400 else 400)

    async def body(request: web.Request) -> dict[str, Any]:
        text = await request.text()
        data = json.loads(text) if text else {}
        return data if isinstance(data, dict) else {}

    def guarded(handler: Route) -> Route:
        async def run(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except SalesforceError as exc:
                return fail(exc)
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
        return run

    async def list_records(request: web.Request) -> web.Response:
        deleted = request.query.get("include_deleted", "").lower() in ("1", "true", "yes")
        return web.json_response(org.records(request.match_info["obj"], include_deleted=deleted))

    async def create(request: web.Request) -> web.Response:
        rid = org.create(request.match_info["obj"], await body(request))
        return web.json_response({"id": rid}, status=201)

    async def update(request: web.Request) -> web.Response:
        org.update(request.match_info["obj"], request.match_info["id"], await body(request))
        return web.json_response({"id": normalize_id(request.match_info["id"])})

    async def delete(request: web.Request) -> web.Response:
        org.delete(request.match_info["obj"], request.match_info["id"])
        return web.json_response({"id": normalize_id(request.match_info["id"])})

    async def undelete(request: web.Request) -> web.Response:
        org.undelete(request.match_info["obj"], request.match_info["id"])
        return web.json_response({"id": normalize_id(request.match_info["id"])})

    async def convert(request: web.Request) -> web.Response:
        result = org.convert_lead(request.match_info["id"], **_convert_options(await body(request)))
        return web.json_response(_convert_json(result))

    async def rules(request: web.Request) -> web.Response:
        return web.json_response([asdict(r) for r in org.validation_rules])

    async def add_rule(request: web.Request) -> web.Response:
        data = await body(request)
        rule = org.add_validation_rule(str(data["object"]), str(data["field"]), data.get("equals"),
                                       str(data.get("message") or "Validation failed"))
        return web.json_response(asdict(rule), status=201)

    async def clear_rules(request: web.Request) -> web.Response:
        return web.json_response({"removed": org.clear_validation_rules(request.match_info.get("id"))})

    async def refresh_token(request: web.Request) -> web.Response:
        data = await body(request)
        token = org.issue_refresh_token(str(data.get("client_id") or "sandbox-client"),
                                        str(data.get("username") or "integration@sandbox.example"))
        return web.json_response({"refresh_token": token}, status=201)

    async def api_usage(request: web.Request) -> web.Response:
        data = await body(request)
        org.set_api_usage(used=data.get("used"), limit=data.get("limit"))
        return web.json_response(org.api.snapshot())

    async def describe(request: web.Request) -> web.Response:
        return web.json_response([asdict(f) for f in org.describe(request.match_info["obj"])])

    routes = [
        ("GET", "/__admin/records/{obj}", list_records), ("POST", "/__admin/records/{obj}", create),
        ("PATCH", "/__admin/records/{obj}/{id}", update), ("DELETE", "/__admin/records/{obj}/{id}", delete),
        ("POST", "/__admin/records/{obj}/{id}/undelete", undelete),
        ("POST", "/__admin/leads/{id}/convert", convert),
        ("GET", "/__admin/validation-rules", rules), ("POST", "/__admin/validation-rules", add_rule),
        ("DELETE", "/__admin/validation-rules", clear_rules),
        ("DELETE", "/__admin/validation-rules/{id}", clear_rules),
        ("POST", "/__admin/refresh-tokens", refresh_token), ("PUT", "/__admin/api-usage", api_usage),
        ("GET", "/__admin/describe/{obj}", describe),
    ]
    return [web.route(method, path, guarded(handler)) for method, path, handler in routes]


def create_app(org: Org, faults: Faults, *, api_version: str = "62.0", min_api_version: str = "50.0",
               oauth: OAuthConfig | None = None, query_batch_size: int = 2000,
               public_url: str | None = None) -> web.Application:
    """The org's web application: OAuth, REST under /services/data, and /__admin.

    ``public_url`` fixes the instance_url handed out by OAuth (default: the request's own origin);
    ``query_batch_size`` is the page size of query results (Salesforce: 2000).
    """
    api = _RestApi(org, faults, oauth or OAuthConfig(), api_version, min_api_version, query_batch_size, public_url)
    app = web.Application(client_max_size=32 * 1024 * 1024)
    routes: list[web.RouteDef] = []

    def add(method: str, path: str, kind: str, handler: Handler, *, collection: bool = False) -> None:
        wrapped = api.endpoint(kind, handler, collection=collection)
        full = "/services/data/{version:v[0-9]+\\.[0-9]}" + path
        routes.append(web.route(method, full, wrapped))
        routes.append(web.route(method, full + "/", wrapped))

    routes.append(web.get("/services/data", api.list_versions))
    routes.append(web.get("/services/data/", api.list_versions))
    routes.append(web.get("/services/data/{version:v[0-9]+\\.[0-9]}/", api.endpoint("resources", api.resources)))
    routes.append(web.get("/services/data/{version:v[0-9]+\\.[0-9]}", api.endpoint("resources", api.resources)))
    add("GET", "/limits", "limits", api.limits)
    add("GET", "/sobjects", "describeGlobal", api.describe_global)
    add("GET", "/sobjects/{obj}/describe", "describe", api.describe)
    add("GET", "/sobjects/{obj}", "sobject", api.sobject_info)
    add("POST", "/sobjects/{obj}", "create", api.create)
    add("GET", "/sobjects/{obj}/{id}", "retrieve", api.get_record)
    add("PATCH", "/sobjects/{obj}/{id}", "update", api.update)
    add("DELETE", "/sobjects/{obj}/{id}", "delete", api.delete)
    add("GET", "/sobjects/{obj}/{field}/{value}", "retrieveByExternalId", api.get_by_external_id)
    add("PATCH", "/sobjects/{obj}/{field}/{value}", "upsert", api.upsert)
    add("POST", "/composite/sobjects", "collections.create", api.collection_create, collection=True)
    add("PATCH", "/composite/sobjects", "collections.update", api.collection_update, collection=True)
    add("DELETE", "/composite/sobjects", "collections.delete", api.collection_delete, collection=True)
    add("GET", "/composite/sobjects/{obj}", "collections.retrieve", api.collection_retrieve)
    add("PATCH", "/composite/sobjects/{obj}/{field}", "collections.upsert", api.collection_upsert, collection=True)
    add("GET", "/query", "query", api.query)
    add("GET", "/queryAll", "queryAll", api.query)
    add("GET", "/query/{locator}", "queryMore", api.query_more)
    add("GET", "/queryAll/{locator}", "queryMore", api.query_more)
    add("POST", "/sandbox/convertLead", "sandbox.convertLead", api.convert_lead)
    add("POST", "/sandbox/undelete", "sandbox.undelete", api.undelete, collection=True)
    routes += oauth_routes(org, faults, api.oauth, api.base_url)
    def reset_state() -> None:
        org.reset()
        api.cursors.clear()

    routes += admin_routes(faults, state=lambda: {**org.snapshot(), "query_cursors": len(api.cursors)},
                           reset_state=reset_state)
    routes += _admin_routes(org)
    app.add_routes(routes)
    return app


async def start_rest_server(host: str, port: int, org: Org, faults: Faults, *,
                            ssl_context: ssl.SSLContext | None = None,
                            **options: Any) -> tuple[web.AppRunner, str]:
    """Serve :func:`create_app` on ``host:port`` (0 picks a free port); returns (runner, url).
    Stop it with ``await runner.cleanup()``."""
    return await serve(create_app(org, faults, **options), host, port, ssl_context=ssl_context)


def self_signed_tls(directory: Path, host: str = "127.0.0.1") -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for ``host`` signed by a fresh throwaway CA, and the CA certificate's
    path for clients to trust (clients such as simple-salesforce only speak https)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def builder(subject: str, issuer: str, public_key: Any) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=7))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = "sandbox test CA"
    ca_usage = x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                             encipher_only=False, decipher_only=False)
    ca = (builder(ca_name, ca_name, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(ca_usage, critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        alt: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(host))]
    except ValueError:
        alt = [x509.DNSName(host)]
    alt.append(x509.DNSName("localhost"))
    leaf = (builder(host, ca_name, key.public_key())
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = (directory / name
                                    for name in ("sf-sandbox-ca.crt", "sf-sandbox.crt", "sf-sandbox.key"))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, ca_path
