"""The simulated Pardot business unit: prospects, lists, list memberships, visitor activities.

The HTTP server and the Python API (a marketer in the Pardot UI, a website visitor filling in a
form, the Salesforce connector linking CRM ids) share these methods, so both paths obey the same
rules. Timestamps have second precision, as Pardot's do, so several records often share an
``updatedAt``: pollers must page by (updatedAt, id), never by updatedAt alone.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping

from sandbox.pardot.objects import (
    DEFAULT_CUSTOM_FIELDS,
    Filter,
    ObjectSpec,
    PardotError,
    build_specs,
    format_dt,
    parse_dt,
    valid_email,
)

__all__ = ["PardotStore", "QueryPage", "FORM_HANDLER_ACTIVITY", "UI_USER_ID", "API_USER_ID"]

UI_USER_ID = 1000  # the marketer working in the Pardot UI
API_USER_ID = 1001  # the integration user behind API tokens
#: visitor activity type and name Pardot records for a successful form-handler submission
FORM_HANDLER_ACTIVITY = (4, "Form Handler")

Listener = Callable[[str, str, dict[str, Any]], None]  # (collection, "create"|"update"|"delete", record)
_SYSTEM = {"id", "createdAt", "updatedAt", "createdById", "updatedById", "isDeleted"}
_FIRST_IDS = {"prospects": 1001, "lists": 2001, "list-memberships": 3001, "visitor-activities": 4001,
              "custom-redirects": 5001}
#: the business unit's tracker domain, which custom redirect URLs are on
TRACKER_DOMAIN = "https://go.connect-sandbox.test"


@dataclass(frozen=True)
class QueryPage:
    rows: list[dict[str, Any]]
    last_key: list[float] | None  # sort key of the last row: where the next page starts
    more: bool


class PardotStore:
    """In-memory Pardot business unit. ``ampsea`` mirrors "Allow Multiple Prospects with the
    Same Email Address": off (the default), a second prospect with a used email is refused."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 custom_fields: Mapping[str, str] | None = None, ampsea: bool = False,
                 form_score: int = 50) -> None:
        self._clock = clock
        self.specs: dict[str, ObjectSpec] = build_specs(
            DEFAULT_CUSTOM_FIELDS if custom_fields is None else custom_fields)
        self.ampsea = ampsea
        self.form_score = form_score
        self._listeners: list[Listener] = []
        self.reset()

    # -- state ---------------------------------------------------------------------------

    def reset(self) -> None:
        self._rows: dict[str, dict[int, dict[str, Any]]] = {c: {} for c in self.specs}
        self._next_id = dict(_FIRST_IDS)
        self._form_handlers: dict[tuple[str, str], int] = {}

    def snapshot(self) -> dict[str, Any]:
        return {
            "counts": {c: len(rows) for c, rows in self._rows.items()},
            "records": {c: [self.render(c, r) for r in rows.values()] for c, rows in self._rows.items()},
            "form_handlers": {f"{a}/{h}": i for (a, h), i in self._form_handlers.items()},
        }

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(collection, op, record)`` after each change (e.g. to sync Salesforce)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def now(self) -> datetime:
        return datetime.fromtimestamp(int(self._clock()), tz=timezone.utc)

    # -- generic object operations --------------------------------------------------------

    def spec(self, collection: str) -> ObjectSpec:
        if collection not in self.specs:
            raise KeyError(f"unknown Pardot object {collection!r}")
        return self.specs[collection]

    def get(self, collection: str, object_id: int, include_deleted: bool = False) -> dict[str, Any]:
        row = self._rows[self.spec(collection).collection].get(object_id)
        if row is None or (row.get("isDeleted") and not include_deleted):
            raise PardotError(192, f"{collection} {object_id}")
        return dict(row)

    def create(self, collection: str, values: Mapping[str, Any], *, user_id: int | None = UI_USER_ID,
               api: bool = False) -> dict[str, Any]:
        """A new object. ``api`` limits ``values`` to what the v5 API may write; the UI and
        Pardot itself may set more (score, CRM ids)."""
        spec = self.spec(collection)
        clean = self._check_values(spec, values, api=api, creating=True)
        missing = [n for n in spec.required_on_create if clean.get(n) in (None, "")]
        if missing:
            raise PardotError(153, ", ".join(missing))
        self._check_relations(collection, clean, None)
        now = self.now()
        row = {name: None for name in spec.fields}
        row.update(_defaults(collection))
        row.update(clean)
        row.update(id=self._take_id(collection), createdAt=now, updatedAt=now, createdById=user_id,
                   updatedById=user_id)
        if "isDeleted" in spec.fields:
            row["isDeleted"] = False
        if collection == "custom-redirects":
            row["url"] = f"{TRACKER_DOMAIN}/l/{row['id']}/{now:%Y-%m-%d}/cr{row['id']}"
        self._rows[collection][row["id"]] = row
        self._notify(collection, "create", row)
        return dict(row)

    def update(self, collection: str, object_id: int, values: Mapping[str, Any], *,
               user_id: int | None = UI_USER_ID, api: bool = False, touch: bool = True) -> dict[str, Any]:
        """Change some fields. A write that changes nothing leaves updatedAt alone."""
        spec = self.spec(collection)
        row = self._rows[collection].get(object_id)
        if row is None:
            raise PardotError(192, f"{collection} {object_id}")
        if row.get("isDeleted"):
            raise PardotError(219, f"{collection} {object_id}")
        clean = self._check_values(spec, values, api=api, creating=False)
        self._check_relations(collection, clean, object_id)
        changed = {k: v for k, v in clean.items() if row.get(k) != v}
        if not changed:
            return dict(row)
        row.update(changed)
        if touch:
            row.update(updatedAt=self.now(), updatedById=user_id)
        self._notify(collection, "update", row)
        return dict(row)

    def delete(self, collection: str, object_id: int, *, user_id: int | None = UI_USER_ID) -> None:
        """Into the recycle bin (isDeleted) for soft-deleted objects, else gone."""
        spec = self.spec(collection)
        row = self._rows[collection].get(object_id)
        if row is None or row.get("isDeleted"):
            raise PardotError(192, f"{collection} {object_id}")
        if spec.soft_delete:
            row.update(isDeleted=True, updatedAt=self.now(), updatedById=user_id)
        else:
            del self._rows[collection][object_id]
        self._notify(collection, "delete", row)

    def undelete(self, collection: str, object_id: int, *, user_id: int | None = UI_USER_ID) -> dict[str, Any]:
        row = self._rows[collection].get(object_id)
        if row is None or not row.get("isDeleted"):
            raise PardotError(192, f"{collection} {object_id}")
        row.update(isDeleted=False, updatedAt=self.now(), updatedById=user_id)
        self._notify(collection, "update", row)
        return dict(row)

    def query(self, collection: str, filters: Iterable[Filter] = (), order: list[tuple[str, bool]] | None = None,
              deleted: str = "false", after: list[float] | None = None, limit: int = 200) -> QueryPage:
        """Rows matching ``filters`` in ``order`` (id appended), strictly after the sort key
        ``after``: keyset paging, so rows changing between pages are never skipped."""
        spec = self.spec(collection)
        order = order or [("id", False)]
        filters = list(filters)
        rows = []
        for row in self._rows[collection].values():
            if spec.soft_delete and deleted != "all" and bool(row.get("isDeleted")) != (deleted == "true"):
                continue
            if all(f.matches(row) for f in filters):
                rows.append(row)
        keyed = sorted(((_sort_key(row, order), row) for row in rows), key=lambda kr: kr[0])
        if after is not None:
            keyed = [(k, r) for k, r in keyed if k > after]
        page = keyed[:limit]
        return QueryPage([dict(r) for _, r in page], page[-1][0] if page else after, len(keyed) > limit)

    def render(self, collection: str, row: Mapping[str, Any], fields: Iterable[str] | None = None) -> dict[str, Any]:
        """The JSON form of a row, limited to ``fields`` (v5 returns only what was asked for)."""
        names = list(fields) if fields is not None else list(self.spec(collection).fields)
        out: dict[str, Any] = {}
        for name in names:
            value = row.get(name)
            out[name] = format_dt(value) if isinstance(value, datetime) else value
        return out

    # -- prospects -------------------------------------------------------------------------

    def prospects_by_email(self, email: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Exact (case-sensitive, as Pardot matches) email matches, latest activity first."""
        rows = [r for r in self._rows["prospects"].values()
                if r["email"] == email and (include_deleted or not r["isDeleted"])]
        rows.sort(key=_latest_first, reverse=True)
        return [dict(r) for r in rows]

    def create_prospect(self, email: str, *, user_id: int | None = UI_USER_ID, **fields: Any) -> dict[str, Any]:
        return self.create("prospects", {"email": email, **fields}, user_id=user_id)

    def update_prospect(self, prospect_id: int, *, user_id: int | None = UI_USER_ID, **fields: Any) -> dict[str, Any]:
        return self.update("prospects", prospect_id, fields, user_id=user_id)

    def upsert_latest_by_email(self, email: str, values: Mapping[str, Any], *, user_id: int | None = UI_USER_ID,
                               api: bool = False, secondary_deleted_search: bool = True) -> tuple[dict[str, Any], bool]:
        """Update the prospect with this email and the latest activity, else create one
        (undeleting a recycled match first when ``secondary_deleted_search``). Returns
        (prospect, created)."""
        if not valid_email(email):
            raise PardotError(4, str(email))
        matches = self.prospects_by_email(email)
        if not matches and secondary_deleted_search:
            recycled = self.prospects_by_email(email, include_deleted=True)
            if recycled:
                self.undelete("prospects", recycled[0]["id"], user_id=user_id)
                matches = [self.get("prospects", recycled[0]["id"])]
        if matches:
            return self.update("prospects", matches[0]["id"], values, user_id=user_id, api=api), False
        return self.create("prospects", {"email": email, **values}, user_id=user_id, api=api), True

    def link_crm(self, prospect_id: int, *, lead_id: str | None = None, contact_id: str | None = None,
                 account_id: str | None = None, owner_id: str | None = None) -> dict[str, Any]:
        """Record the Salesforce ids the Pardot–Salesforce connector synced for this prospect
        (salesforceId is the contact once converted, else the lead)."""
        values: dict[str, Any] = {"salesforceLastSync": self.now()}
        if lead_id is not None:
            values["salesforceLeadId"] = lead_id
        if contact_id is not None:
            values["salesforceContactId"] = contact_id
        if account_id is not None:
            values["salesforceAccountId"] = account_id
        if owner_id is not None:
            values["salesforceOwnerId"] = owner_id
        current = self.get("prospects", prospect_id)
        sf_id = values.get("salesforceContactId", current["salesforceContactId"]) or \
            values.get("salesforceLeadId", current["salesforceLeadId"])
        values["salesforceId"] = sf_id
        return self.update("prospects", prospect_id, values, user_id=None)

    # -- website and activities --------------------------------------------------------------

    def form_handler_id(self, account: str, handler: str) -> int:
        key = (account, handler)
        if key not in self._form_handlers:
            self._form_handlers[key] = 5001 + len(self._form_handlers)
        return self._form_handlers[key]

    def submit_form(self, email: str, fields: Mapping[str, Any] | None = None, *, handler: str = "website-lead",
                    account: str = "sandbox") -> tuple[dict[str, Any], dict[str, Any]]:
        """A visitor submits a form handler: the prospect with this email (latest activity) is
        updated, else created; its score rises by ``form_score``; a visitor activity is
        recorded. Returns (prospect, activity)."""
        if not email:
            raise PardotError(215)
        if not valid_email(email):
            raise PardotError(4, email)
        values = {k: v for k, v in (fields or {}).items() if v not in (None, "")}
        now = self.now()
        prospect, created = self.upsert_latest_by_email(email, values, user_id=None, api=True)
        extra = {"score": (prospect["score"] or 0) + self.form_score, "lastActivityAt": now}
        if created:
            extra["source"] = prospect["source"] or "Website"
        prospect = self.update("prospects", prospect["id"], extra, user_id=None)
        handler_id = self.form_handler_id(account, handler)
        activity = self.add_visitor_activity(prospect["id"], *FORM_HANDLER_ACTIVITY, details=handler,
                                             formHandlerId=handler_id)
        return self.get("prospects", prospect["id"]), activity

    def add_visitor_activity(self, prospect_id: int, type: int, type_name: str, details: str | None = None,
                             **extra: Any) -> dict[str, Any]:
        """Record an activity (page view, email open, cart abandoned…) and touch lastActivityAt."""
        prospect = self.get("prospects", prospect_id)
        now = self.now()
        row = {name: None for name in self.specs["visitor-activities"].fields}
        row.update(extra)
        row.update(id=self._take_id("visitor-activities"), prospectId=prospect_id, type=type, typeName=type_name,
                   details=details, createdAt=now, updatedAt=now)
        row.setdefault("campaignId", prospect.get("campaignId"))
        self._rows["visitor-activities"][row["id"]] = row
        self._notify("visitor-activities", "create", row)
        if prospect.get("lastActivityAt") != now:
            self.update("prospects", prospect_id, {"lastActivityAt": now}, user_id=None, touch=False)
        return dict(row)

    # -- lists ------------------------------------------------------------------------------------

    def create_list(self, name: str, **fields: Any) -> dict[str, Any]:
        return self.create("lists", {"name": name, **fields})

    def add_to_list(self, list_id: int, prospect_id: int, opted_out: bool = False) -> dict[str, Any]:
        return self.create("list-memberships", {"listId": list_id, "prospectId": prospect_id, "optedOut": opted_out})

    def memberships(self, list_id: int | None = None, prospect_id: int | None = None) -> list[dict[str, Any]]:
        return [dict(r) for r in self._rows["list-memberships"].values()
                if not r["isDeleted"] and (list_id is None or r["listId"] == list_id)
                and (prospect_id is None or r["prospectId"] == prospect_id)]

    # -- internals ----------------------------------------------------------------------------------

    def _take_id(self, collection: str) -> int:
        value = self._next_id[collection]
        self._next_id[collection] += 1
        return value

    def _check_values(self, spec: ObjectSpec, values: Mapping[str, Any], *, api: bool,
                      creating: bool) -> dict[str, Any]:
        if not isinstance(values, Mapping):
            raise PardotError(154, "expected an object")
        clean: dict[str, Any] = {}
        for name, value in values.items():
            fspec = spec.fields.get(name)
            if fspec is None or name in _SYSTEM:
                raise PardotError(180, name)
            if api and (not fspec.writable or (fspec.create_only and not creating)):
                raise PardotError(180, f"{name} is not writable")
            if fspec.create_only and not creating:
                raise PardotError(180, f"{name} can only be set on create")
            clean[name] = _check_type(fspec.type, name, value)
        if "email" in clean and spec.collection == "prospects" and not valid_email(clean["email"]):
            raise PardotError(4, str(clean["email"]))
        destination = clean.get("destinationUrl")
        if spec.collection == "custom-redirects" and destination is not None \
                and not re.match(r"^https?://[^/\s]+\.[^/\s]+(/\S*)?$", destination):
            raise PardotError(154, "destinationUrl must be a fully qualified URL")
        return clean

    def _check_relations(self, collection: str, clean: Mapping[str, Any], own_id: int | None) -> None:
        if collection == "prospects" and clean.get("email") and not self.ampsea:
            for other in self._rows["prospects"].values():
                if other["email"] == clean["email"] and other["id"] != own_id and not other["isDeleted"]:
                    raise PardotError(54, clean["email"])
        if collection == "list-memberships" and own_id is None:
            lst = self._rows["lists"].get(clean.get("listId"))  # type: ignore[arg-type]
            if lst is None or lst["isDeleted"]:
                raise PardotError(55, str(clean.get("listId")))
            prospect = self._rows["prospects"].get(clean.get("prospectId"))  # type: ignore[arg-type]
            if prospect is None or prospect["isDeleted"]:
                raise PardotError(3, str(clean.get("prospectId")))
            for other in self._rows["list-memberships"].values():
                if (other["listId"], other["prospectId"]) == (clean["listId"], clean["prospectId"]) \
                        and not other["isDeleted"]:
                    raise PardotError(58)

    def _notify(self, collection: str, op: str, row: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            listener(collection, op, dict(row))


def _check_type(type_: str, name: str, value: Any) -> Any:
    if value is None:
        return None
    if type_ == "datetime" and isinstance(value, str):
        return parse_dt(value)
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "datetime": isinstance(value, datetime),
    }[type_]
    if not ok:
        raise PardotError(154, f"{name} must be {type_}")
    return value


def _defaults(collection: str) -> dict[str, Any]:
    if collection == "prospects":
        return {"score": 0, "optedOut": False, "isDoNotEmail": False, "isDoNotCall": False}
    if collection == "lists":
        return {"isPublic": False, "isDynamic": False}
    if collection == "list-memberships":
        return {"optedOut": False}
    return {}


def _latest_first(row: Mapping[str, Any]) -> tuple[float, float, int]:
    last = row.get("lastActivityAt")
    return (last.timestamp() if last else 0.0, row["updatedAt"].timestamp(), row["id"])


def _sort_key(row: Mapping[str, Any], order: list[tuple[str, bool]]) -> list[float]:
    key: list[float] = []
    for name, desc in order:
        value = row.get(name)
        number = value.timestamp() if isinstance(value, datetime) else float(value or 0)
        key.append(-number if desc else number)
    return key
