"""Pardot (Account Engagement) API v5 objects the simulator serves, and their rules.

Field names are v5's (camelCase; the v3/v4 ``crm_lead_fid``/``crm_contact_fid`` are v5's
``salesforceLeadId``/``salesforceContactId``). Errors carry Pardot's published numeric codes
(developer.salesforce.com/docs/marketing/pardot/guide/error-codes), rendered by the server as
v5's ``{"code": N, "message": "..."}``. Where the docs give no HTTP status we chose one and say
so in :data:`ERRORS`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

__all__ = [
    "DEFAULT_CUSTOM_FIELDS",
    "ERRORS",
    "Filter",
    "FieldSpec",
    "ObjectSpec",
    "PardotError",
    "SPECS",
    "build_specs",
    "decode_page_token",
    "encode_page_token",
    "format_dt",
    "parse_dt",
    "parse_fields",
    "parse_filters",
    "parse_order",
    "valid_email",
]

#: code → (HTTP status, message). The docs publish codes, not statuses; ours: 400 bad input,
#: 401 token, 404 missing record, 405 method, 409 for 62 "Conflicting Update", 429 for the two
#: limits (66 concurrency, 122 daily: clients in the wild, e.g. Airbyte's, expect 429 for 122),
#: 503 for 183 "internal error" (how we render an outage).
ERRORS: dict[int, tuple[int, str]] = {
    3: (400, "Invalid prospect ID"),
    4: (400, "Invalid prospect email address"),
    5: (400, "Invalid query parameters"),
    7: (400, "Invalid timestamp"),
    13: (400, "One or more required parameters are missing"),
    19: (400, "Invalid value specified for sort_by"),
    23: (400, "Invalid value specified for limit"),
    27: (400, "Parameter deleted must be true, false or all"),
    54: (400, "Email address is already in use"),
    55: (400, "Invalid list ID"),
    58: (400, "That prospect is already a member of that list. Update the membership instead."),
    60: (405, "Invalid HTTP request method"),
    62: (409, "Conflicting Update"),
    66: (429, "You have exceeded your concurrent request limit. Please wait, before trying again"),
    122: (429, "Daily API rate limit met"),
    133: (400, "Up to 2 sort by options are allowed."),
    150: (400, "Input needs to be valid JSON"),
    152: (400, "Request body can't be empty"),
    153: (400, "Missing required property in request"),
    154: (400, "Invalid property in request"),
    180: (400, "One or more of the specified fields are invalid"),
    181: (400, "A required header is missing"),
    182: (400, "Invalid header value"),
    183: (503, "An internal error occurred, please try your request again"),
    184: (401, "access_token is invalid, unknown, or malformed"),
    192: (404, "Object specified does not exist"),
    198: (404, "Endpoint not found"),
    201: (400, "Business Unit specified in Pardot-Business-Unit-Id header not found or inactive."),
    209: (400, "Too many fields have filters: The max number of 3 distinct fields with filters was exceeded for this query."),
    210: (400, "Page token has expired."),
    211: (400, "Page token is invalid."),
    215: (400, "Email form field is required."),
    219: (400, "Deleted records can't be updated. Please undelete before updating."),
}


class PardotError(Exception):
    """A refusal with Pardot's numeric code; ``detail`` is appended to the standard message."""

    def __init__(self, code: int, detail: str | None = None) -> None:
        status, message = ERRORS[code]
        self.code = code
        self.status = status
        self.message = f"{message}: {detail}" if detail else message
        super().__init__(f"{code} {self.message}")

    def as_body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str  # "int" | "str" | "bool" | "float" | "datetime"
    writable: bool = False  # settable through the API
    filter: bool = False
    sort: bool = False
    create_only: bool = False  # settable on create, not on update (list memberships' ids)


@dataclass(frozen=True)
class ObjectSpec:
    collection: str  # the URL segment, e.g. "prospects"
    fields: Mapping[str, FieldSpec]
    operations: frozenset[str]  # read, query, create, update, delete
    required_on_create: tuple[str, ...] = ()
    soft_delete: bool = True  # deleted records stay, isDeleted=true (the recycle bin)
    not_found_code: int = 192


def _f(name: str, type_: str, *flags: str) -> FieldSpec:
    return FieldSpec(name, type_, writable="w" in flags or "c" in flags, filter="f" in flags,
                     sort="s" in flags, create_only="c" in flags)


_AUDIT = (_f("createdAt", "datetime", "f", "s"), _f("updatedAt", "datetime", "f", "s"),
          _f("createdById", "int"), _f("updatedById", "int"))

_PROSPECT = (
    _f("id", "int", "f", "s"), _f("email", "str", "w", "f"),
    *(_f(n, "str", "w") for n in (
        "salutation", "firstName", "lastName", "company", "jobTitle", "department", "phone", "fax",
        "website", "addressOne", "addressTwo", "city", "state", "zip", "country", "territory",
        "industry", "annualRevenue", "employees", "yearsInBusiness", "source", "comments", "notes",
        "grade")),
    _f("score", "int", "w"), _f("optedOut", "bool", "w"), _f("isDoNotEmail", "bool", "w"),
    _f("isDoNotCall", "bool", "w"), _f("campaignId", "int", "w"),
    *(_f(n, "str") for n in ("salesforceId", "salesforceLeadId", "salesforceContactId",
                             "salesforceAccountId", "salesforceOwnerId", "salesforceUrl")),
    _f("salesforceLastSync", "datetime"), _f("lastActivityAt", "datetime", "f"),
    _f("isDeleted", "bool"), *_AUDIT,
)
_LIST = (
    _f("id", "int", "f", "s"), _f("name", "str", "w", "f"), _f("title", "str", "w"),
    _f("description", "str", "w"), _f("isPublic", "bool", "w"), _f("isDynamic", "bool"),
    _f("folderId", "int", "w"), _f("campaignId", "int", "w"), _f("isDeleted", "bool"), *_AUDIT,
)
_MEMBERSHIP = (
    _f("id", "int", "f", "s"), _f("listId", "int", "c", "f"), _f("prospectId", "int", "c", "f"),
    _f("optedOut", "bool", "w"), _f("isDeleted", "bool"), *_AUDIT,
)
_ACTIVITY = (
    _f("id", "int", "f", "s"), _f("prospectId", "int", "f"), _f("visitorId", "int"), _f("visitId", "int"),
    _f("type", "int", "f"), _f("typeName", "str"), _f("details", "str"), _f("campaignId", "int"),
    _f("formHandlerId", "int"), _f("formId", "int"), _f("emailId", "int"),
    _f("createdAt", "datetime", "f", "s"), _f("updatedAt", "datetime", "f", "s"),
)

#: v5's custom redirect: a tracked link to ``destinationUrl``; a click is a visitor activity of
#: the prospect (type 21, custom URL click). Pardot assigns ``url`` (on the tracker domain).
_REDIRECT = (
    _f("id", "int", "f", "s"), _f("name", "str", "w"), _f("campaignId", "int", "w"),
    _f("destinationUrl", "str", "w"), _f("folderId", "int", "w"), _f("trackerDomainId", "int", "w"),
    _f("vanityUrlPath", "str", "w"),
    *(_f(n, "str", "w") for n in ("gaSource", "gaMedium", "gaTerm", "gaContent", "gaCampaign")),
    _f("url", "str"), _f("vanityUrl", "str"), _f("isDeleted", "bool"), *_AUDIT,
)

#: custom prospect fields (API name → type) the sandbox business unit has by default: the
#: values Salesforce carries from TIMS, for nurture programs
DEFAULT_CUSTOM_FIELDS: dict[str, str] = {
    "TIMS_Customer_ID__c": "str",
    "Payment_Terms__c": "str",
    "Total_Revenue__c": "float",
    # the receivables flow's roll-up (docs/adr/0032); dates are text (YYYY-MM-DD)
    "Open_Balance__c": "float",
    "Overdue_Amount__c": "float",
    "Last_Invoice_Date__c": "str",
    "Last_Payment_Date__c": "str",
    "Lifetime_Revenue__c": "float",
    "Credit_Hold__c": "bool",
    "Last_Order_Date__c": "str",
    "Last_Purchased_Products__c": "str",
    # the abandoned carts flow (docs/adr/0035); the time is text (ISO 8601, UTC)
    "Abandoned_Cart_Value__c": "float",
    "Abandoned_Cart_Items__c": "str",
    "Abandoned_Cart_URL__c": "str",
    "Abandoned_Cart_At__c": "str",
}


def build_specs(custom_fields: Mapping[str, str] | None = None) -> dict[str, ObjectSpec]:
    """The served objects; prospects gain ``custom_fields`` (each writable, named ``…__c``)."""
    custom = DEFAULT_CUSTOM_FIELDS if custom_fields is None else custom_fields
    for name, type_ in custom.items():
        if not name.endswith("__c") or type_ not in ("str", "int", "float", "bool"):
            raise ValueError(f"custom field {name}: names end in __c, types are str/int/float/bool")
    prospect_fields = _PROSPECT + tuple(_f(n, t, "w") for n, t in custom.items())
    all_ops = frozenset({"read", "query", "create", "update", "delete"})
    return {
        "prospects": ObjectSpec("prospects", {f.name: f for f in prospect_fields}, all_ops, ("email",)),
        "lists": ObjectSpec("lists", {f.name: f for f in _LIST}, all_ops, ("name",)),
        "list-memberships": ObjectSpec("list-memberships", {f.name: f for f in _MEMBERSHIP}, all_ops,
                                       ("listId", "prospectId")),
        "custom-redirects": ObjectSpec("custom-redirects", {f.name: f for f in _REDIRECT}, all_ops,
                                       ("name", "campaignId", "destinationUrl")),
        "visitor-activities": ObjectSpec("visitor-activities", {f.name: f for f in _ACTIVITY},
                                         frozenset({"read", "query"}), soft_delete=False),
    }


SPECS = build_specs()

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def valid_email(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 255 and bool(_EMAIL.match(value))


# -- timestamps: v5 writes ISO 8601 with an offset, second precision -----------------------

def format_dt(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def parse_dt(raw: str) -> datetime:
    """ISO 8601 as v5 takes it; a '+' sent unencoded in a query arrives as a space."""
    text = raw.strip()
    if re.search(r" \d\d:?\d\d$", text):
        text = text[: text.rfind(" ")] + "+" + text[text.rfind(" ") + 1:]
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise PardotError(7, raw) from exc
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


# -- query parameters ------------------------------------------------------------------------

@dataclass(frozen=True)
class Filter:
    field: str
    op: str  # eq | gt | gte | lt | lte
    value: Any

    def matches(self, record: Mapping[str, Any]) -> bool:
        have = record.get(self.field)
        if self.op == "eq":
            return have == self.value
        if have is None:
            return False
        return {"gt": have > self.value, "gte": have >= self.value,
                "lt": have < self.value, "lte": have <= self.value}[self.op]


_SUFFIXES = {
    "datetime": (("AfterOrEqualTo", "gte"), ("BeforeOrEqualTo", "lte"), ("After", "gt"), ("Before", "lt")),
    "int": (("GreaterThanOrEqualTo", "gte"), ("LessThanOrEqualTo", "lte"), ("GreaterThan", "gt"),
            ("LessThan", "lt")),
}


def parse_filters(spec: ObjectSpec, params: Mapping[str, str]) -> list[Filter]:
    """Filters from query parameters such as ``updatedAtAfterOrEqualTo`` or ``idGreaterThan``.
    Raises PardotError 5 for an unknown parameter and 209 past three filtered fields."""
    filters: list[Filter] = []
    for name, raw in params.items():
        found = _match_filter(spec, name)
        if found is None:
            raise PardotError(5, name)
        fspec, op = found
        filters.append(Filter(fspec.name, op, _coerce_param(fspec, raw)))
    if len({f.field for f in filters}) > 3:
        raise PardotError(209)
    return filters


def _match_filter(spec: ObjectSpec, name: str) -> tuple[FieldSpec, str] | None:
    fspec = spec.fields.get(name)
    if fspec is not None and fspec.filter:
        return fspec, "eq"
    for fspec in spec.fields.values():
        if not fspec.filter or not name.startswith(fspec.name):
            continue
        for suffix, op in _SUFFIXES.get(fspec.type, ()):
            if name == fspec.name + suffix:
                return fspec, op
    return None


def _coerce_param(fspec: FieldSpec, raw: str) -> Any:
    if fspec.type == "datetime":
        return parse_dt(raw)
    if fspec.type == "int":
        try:
            return int(raw)
        except ValueError as exc:
            raise PardotError(5, f"{fspec.name} must be an integer") from exc
    if fspec.type == "bool":
        if raw not in ("true", "false"):
            raise PardotError(5, f"{fspec.name} must be true or false")
        return raw == "true"
    return raw


def parse_fields(spec: ObjectSpec, raw: str | list[Any] | None, required: bool) -> list[str]:
    """The ``fields`` selection; every name must be a field of the object (180 otherwise)."""
    if raw is None or raw == "" or raw == []:
        if required:
            raise PardotError(13, "fields")
        return []
    names = [n.strip() for n in raw.split(",")] if isinstance(raw, str) else raw
    if not all(isinstance(n, str) and n for n in names):
        raise PardotError(180, "fields must be field names")
    unknown = [n for n in names if n not in spec.fields]
    if unknown:
        raise PardotError(180, ", ".join(unknown))
    return list(dict.fromkeys(names))


def parse_order(spec: ObjectSpec, raw: str | None) -> list[tuple[str, bool]]:
    """``orderBy`` as [(field, descending)], id appended as the tie-break."""
    order: list[tuple[str, bool]] = []
    for part in (raw or "").split(","):
        words = part.split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC")):
            raise PardotError(19, part.strip())
        fspec = spec.fields.get(words[0])
        if fspec is None or not fspec.sort:
            raise PardotError(19, words[0])
        order.append((words[0], len(words) == 2 and words[1].upper() == "DESC"))
    if len(order) > 2:
        raise PardotError(133)
    if "id" not in (name for name, _ in order):
        order.append(("id", False))
    return order


# -- page tokens: the whole query, keyed to resume strictly after the last row -----------------

def encode_page_token(state: Mapping[str, Any]) -> str:
    raw = json.dumps(state, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise PardotError(211) from exc
    if not isinstance(state, dict) or not {"c", "f", "flt", "o", "d", "l", "a", "i"} <= state.keys():
        raise PardotError(211)
    return state
