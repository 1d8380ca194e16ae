"""The simulated org: object schema as data, an in-memory record store, and transactional writes.

Every committed write hands one :class:`RecordChange` per record to ``org.listener`` (the CDC
event bus). REST requests write through :meth:`Org.transaction` with their own
:class:`WriteContext`; the plain methods (:meth:`Org.create`, :meth:`Org.update`, ...) act as a
UI user (change origin ``""``) for tests and demos. All methods are thread-safe: the server runs
on its own event loop while tests drive the org from another thread.

Field values are kept in their REST JSON form: datetimes ``2024-01-31T12:00:00.000+0000``, dates
``2024-01-31``, numbers as float (int fields as int), ids as 18 characters.
"""

from __future__ import annotations

import itertools
import re
import secrets
import string
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Iterator, Literal, Mapping, Sequence

from . import soql
from .changes import ChangeListener, RecordChange

__all__ = [
    "FieldDef", "SObjectDef", "DEFAULT_SCHEMA", "Org", "OrgTransaction", "WriteContext", "SfError",
    "SalesforceError", "MultipleMatches", "ValidationRule", "ConvertResult", "Session", "ApiUsage",
    "make_id", "normalize_id",
]

FieldType = Literal["string", "double", "boolean", "datetime", "date", "id", "reference", "int"]


@dataclass(frozen=True)
class FieldDef:
    """One field as describe reports it; the CDC server builds its Avro schemas from these.

    ``compound`` marks a derived compound field (Lead/Contact ``Name``): it is never written and
    never carried in a RecordChange; its components name it in ``compound_field_name`` (address
    components name ``MailingAddress`` etc., which has no FieldDef of its own).
    """

    name: str
    type: FieldType
    external_id: bool = False
    nillable: bool = True
    unique: bool = False
    createable: bool = True
    updateable: bool = True
    reference_to: tuple[str, ...] = ()
    compound_field_name: str | None = None
    compound: bool = False
    format: str = ""  # describe's finer type: email, phone, picklist, currency, textarea, url
    default: Any = None

    @property
    def required(self) -> bool:
        """Must have a value on create (REQUIRED_FIELD_MISSING otherwise)."""
        return (not self.nillable and self.createable and self.default is None
                and self.type != "boolean")


@dataclass(frozen=True)
class SObjectDef:
    name: str
    key_prefix: str
    fields: tuple[FieldDef, ...]

    def field(self, name: str) -> FieldDef | None:
        lower = name.lower()
        return next((f for f in self.fields if f.name.lower() == lower), None)


def _f(name: str, type_: FieldType = "string", **kw: Any) -> FieldDef:
    return FieldDef(name, type_, **kw)


def _system(owner: bool = True) -> list[FieldDef]:
    ro = {"createable": False, "updateable": False}
    out = [_f("Id", "id", nillable=False, **ro)]
    if owner:
        out.append(_f("OwnerId", "reference", nillable=False, reference_to=("User",), default="$user"))
    out += [
        _f("IsDeleted", "boolean", nillable=False, default=False, **ro),
        _f("CreatedDate", "datetime", nillable=False, **ro),
        _f("CreatedById", "reference", nillable=False, reference_to=("User",), **ro),
        _f("LastModifiedDate", "datetime", nillable=False, **ro),
        _f("LastModifiedById", "reference", nillable=False, reference_to=("User",), **ro),
        _f("SystemModstamp", "datetime", nillable=False, **ro),
    ]
    return out


def _person(required_last: bool = True) -> list[FieldDef]:
    return [
        _f("Salutation", format="picklist", compound_field_name="Name"),
        _f("FirstName", compound_field_name="Name"),
        _f("LastName", nillable=not required_last, compound_field_name="Name"),
        _f("Name", nillable=False, createable=False, updateable=False, compound=True),
    ]


def _address(prefix: str, compound: str) -> list[FieldDef]:
    return [
        _f(f"{prefix}Street", format="textarea", compound_field_name=compound),
        _f(f"{prefix}City", compound_field_name=compound),
        _f(f"{prefix}State", compound_field_name=compound),
        _f(f"{prefix}PostalCode", compound_field_name=compound),
        _f(f"{prefix}Country", compound_field_name=compound),
    ]


def _tims_customer() -> list[FieldDef]:
    return [_f("TIMS_Customer_ID__c", external_id=True, unique=True)]


def _tims_money() -> list[FieldDef]:
    return [
        _f("TIMS_Payment_Terms__c", format="picklist"),
        _f("TIMS_Total_Revenue__c", "double", format="currency"),
        _f("TIMS_Credit_Limit__c", "double", format="currency"),
        _f("TIMS_Open_Balance__c", "double", format="currency"),
        _f("TIMS_Last_Payment_Date__c", "date"),
        # the receivables flow's roll-up (docs/adr/0032)
        _f("TIMS_Overdue_Amount__c", "double", format="currency"),
        _f("TIMS_Days_Past_Due__c", "int"),
        _f("TIMS_Last_Invoice_Date__c", "date"),
        _f("TIMS_Last_Invoice_Amount__c", "double", format="currency"),
        _f("TIMS_Last_Payment_Amount__c", "double", format="currency"),
        _f("TIMS_Lifetime_Revenue__c", "double", format="currency"),
        _f("TIMS_Credit_Hold__c", "boolean", nillable=False, default=False),
    ]


def _pardot() -> list[FieldDef]:
    return [
        _f("pi__score__c", "double"),
        _f("pi__grade__c"),
        _f("pi__url__c", format="url"),
        _f("pi__campaign__c"),
        _f("pi__last_activity__c", "datetime"),
        _f("pi__conversion_date__c", "datetime"),
    ]


def _contactish() -> list[FieldDef]:
    return [
        _f("Title"),
        _f("Email", format="email"),
        _f("Phone", format="phone"),
        _f("MobilePhone", format="phone"),
        _f("LeadSource", format="picklist"),
        _f("Description", format="textarea"),
        _f("HasOptedOutOfEmail", "boolean", nillable=False, default=False),
        _f("DoNotCall", "boolean", nillable=False, default=False),
    ]


_RO = {"createable": False, "updateable": False}

DEFAULT_SCHEMA: dict[str, SObjectDef] = {
    d.name: d
    for d in (
        SObjectDef("Lead", "00Q", tuple(_system() + _person() + [
            _f("Company", nillable=False),
            *_contactish(),
            _f("Website", format="url"),
            _f("Status", nillable=False, format="picklist", default="Open - Not Contacted"),
            _f("Industry", format="picklist"),
            _f("Rating", format="picklist"),
            _f("AnnualRevenue", "double", format="currency"),
            _f("NumberOfEmployees", "int"),
            *_address("", "Address"),
            _f("IsConverted", "boolean", nillable=False, default=False, **_RO),
            _f("ConvertedDate", "date", **_RO),
            _f("ConvertedAccountId", "reference", reference_to=("Account",), **_RO),
            _f("ConvertedContactId", "reference", reference_to=("Contact",), **_RO),
            _f("ConvertedOpportunityId", "reference", reference_to=("Opportunity",), **_RO),
            *_tims_customer(),
            *_pardot(),
        ])),
        SObjectDef("Contact", "003", tuple(_system() + _person() + [
            _f("AccountId", "reference", reference_to=("Account",)),
            _f("Department"),
            *_contactish(),
            *_address("Mailing", "MailingAddress"),
            *_tims_customer(),
            *_tims_money(),
            *_pardot(),
        ])),
        SObjectDef("Account", "001", tuple(_system() + [
            _f("Name", nillable=False),
            _f("AccountNumber"),
            _f("Type", format="picklist"),
            _f("Industry", format="picklist"),
            _f("Phone", format="phone"),
            _f("Website", format="url"),
            _f("AnnualRevenue", "double", format="currency"),
            _f("NumberOfEmployees", "int"),
            _f("Description", format="textarea"),
            _f("ParentId", "reference", reference_to=("Account",)),
            *_address("Billing", "BillingAddress"),
            *_address("Shipping", "ShippingAddress"),
            *_tims_customer(),
            *_tims_money(),
        ])),
        SObjectDef("Opportunity", "006", tuple(_system() + [
            _f("Name", nillable=False),
            _f("AccountId", "reference", reference_to=("Account",)),
            _f("StageName", nillable=False, format="picklist"),
            _f("CloseDate", "date", nillable=False),
            _f("Amount", "double", format="currency"),
            _f("Probability", "double"),
            _f("Type", format="picklist"),
            _f("LeadSource", format="picklist"),
            _f("Description", format="textarea"),
            _f("IsClosed", "boolean", nillable=False, default=False, **_RO),
            _f("IsWon", "boolean", nillable=False, default=False, **_RO),
            _f("CurrencyIsoCode", format="picklist", default="USD"),
            _f("Pricebook2Id", "reference", reference_to=("Pricebook2",)),
            _f("TIMS_Sales_Order_ID__c", external_id=True, unique=True),
            _f("TIMS_Order_Status__c", format="picklist"),
            _f("Ship_Date__c", "date"),
            _f("Tracking__c"),
        ])),
        SObjectDef("OpportunityLineItem", "00k", tuple(_system(owner=False) + [
            _f("OpportunityId", "reference", nillable=False, updateable=False, reference_to=("Opportunity",)),
            _f("Product2Id", "reference", updateable=False, reference_to=("Product2",)),
            _f("PricebookEntryId", "reference", updateable=False, reference_to=("PricebookEntry",)),
            _f("Quantity", "double", nillable=False),
            _f("UnitPrice", "double", format="currency"),
            _f("TotalPrice", "double", format="currency", **_RO),
            _f("Description"),
        ])),
        SObjectDef("Pricebook2", "01s", tuple(_system(owner=False) + [
            _f("Name", nillable=False),
            _f("IsActive", "boolean", nillable=False, default=False),
            _f("IsStandard", "boolean", nillable=False, default=False, **_RO),
            _f("Description", format="textarea"),
        ])),
        SObjectDef("PricebookEntry", "01u", tuple(_system(owner=False) + [
            _f("Pricebook2Id", "reference", nillable=False, updateable=False, reference_to=("Pricebook2",)),
            _f("Product2Id", "reference", nillable=False, updateable=False, reference_to=("Product2",)),
            _f("UnitPrice", "double", nillable=False, format="currency"),
            _f("IsActive", "boolean", nillable=False, default=False),
            _f("UseStandardPrice", "boolean", nillable=False, default=False),
            _f("ProductCode", **_RO),
            _f("TIMS_Item_Number__c", external_id=True, unique=True),
        ])),
        SObjectDef("Campaign", "701", tuple(_system() + [
            _f("Name", nillable=False),
            _f("Type", format="picklist"),
            _f("Status", format="picklist"),
            _f("IsActive", "boolean", nillable=False, default=False),
            _f("StartDate", "date"),
            _f("EndDate", "date"),
            _f("Description", format="textarea"),
            _f("ParentId", "reference", reference_to=("Campaign",)),
            _f("TIMS_Segment_ID__c", external_id=True, unique=True),
        ])),
        SObjectDef("CampaignMember", "00v", tuple(_system(owner=False) + [
            _f("CampaignId", "reference", nillable=False, updateable=False, reference_to=("Campaign",)),
            _f("LeadId", "reference", updateable=False, reference_to=("Lead",)),
            _f("ContactId", "reference", updateable=False, reference_to=("Contact",)),
            _f("Status", format="picklist", default="Sent"),
            _f("HasResponded", "boolean", nillable=False, default=False, **_RO),
            # the lists flow's key for the members it adds: <Campaign Id>:<Lead or Contact Id>
            _f("Connect_Member_Key__c", external_id=True, unique=True),
        ])),
        SObjectDef("Product2", "01t", tuple(_system() + [
            _f("Name", nillable=False),
            _f("ProductCode"),
            _f("Description", format="textarea"),
            _f("IsActive", "boolean", nillable=False, default=False),
            _f("Family", format="picklist"),
            _f("StockKeepingUnit"),
            _f("QuantityUnitOfMeasure", format="picklist"),
            _f("TIMS_Item_Number__c", external_id=True, unique=True),
            _f("TIMS_List_Price__c", "double", format="currency"),
        ])),
        SObjectDef("Task", "00T", tuple(_system() + [
            _f("Subject"),
            _f("Status", nillable=False, format="picklist", default="Not Started"),
            _f("Priority", nillable=False, format="picklist", default="Normal"),
            _f("WhoId", "reference", reference_to=("Lead", "Contact")),
            _f("WhatId", "reference", reference_to=("Account", "Opportunity", "Campaign", "Product2")),
            _f("ActivityDate", "date"),
            _f("Description", format="textarea"),
            _f("Type", format="picklist"),
            _f("IsClosed", "boolean", nillable=False, default=False, **_RO),
            _f("TIMS_Document_ID__c", external_id=True, unique=True),
            # the activities flow: one Task per Pardot activity (or roll-up), with ERP context
            _f("Pardot_Activity_Key__c", external_id=True, unique=True),
            _f("TIMS_Open_Orders__c", "int"),
            _f("TIMS_Open_Balance__c", "double", format="currency"),
            _f("TIMS_Last_Invoice__c"),
        ])),
    )
}

# -- ids ---------------------------------------------------------------------------------------

_B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SUFFIX = string.ascii_uppercase + "012345"
_ID_RE = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-5]{3})?$")


def _checksum(id15: str) -> str:
    out = ""
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        bits = sum(1 << i for i, c in enumerate(chunk) if "A" <= c <= "Z")
        out += _SUFFIX[bits]
    return out


def make_id(prefix: str, body: str) -> str:
    """An 18-character id: 3-character key prefix, 12 characters, case-safe checksum."""
    id15 = (prefix + body.rjust(12, "0"))[:15]
    return id15 + _checksum(id15)


def normalize_id(value: Any) -> str | None:
    """The 18-character form of a 15- or 18-character id, or None when malformed."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        return None
    id15 = value[:15]
    full = id15 + _checksum(id15)
    if len(value) == 18 and value[15:].upper() != full[15:]:
        return None
    return full


def _b62(n: int, width: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = _B62[r] + out
    return out.rjust(width, "0")


# -- errors ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SfError:
    """One Salesforce error: REST renders it as {message, errorCode, fields}, collections as
    {statusCode, message, fields}."""

    code: str
    message: str
    fields: tuple[str, ...] = ()

    def rest(self) -> dict[str, Any]:
        return {"message": self.message, "errorCode": self.code, "fields": list(self.fields)}

    def collection(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": list(self.fields)}


class SalesforceError(Exception):
    """A refused write or read; ``status`` is the HTTP status a single-record request gets."""

    def __init__(self, error: SfError, status: int = 400) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error
        self.status = status


class MultipleMatches(SalesforceError):
    """An external id value matched several records (REST: 300 with their URLs)."""

    def __init__(self, entity: str, field_name: str, ids: Sequence[str]) -> None:
        super().__init__(SfError(
            "DUPLICATE_EXTERNAL_ID",
            f"{field_name}: more than one record found for external id field: {list(ids)}",
            (field_name,)), status=300)
        self.entity = entity
        self.ids = list(ids)


def _err(code: str, message: str, fields: Sequence[str] = (), status: int = 400) -> SalesforceError:
    return SalesforceError(SfError(code, message, tuple(fields)), status)


# -- org data types ----------------------------------------------------------------------------

@dataclass(frozen=True)
class WriteContext:
    """Who writes and how the change origin reads (``""`` for UI edits)."""

    user_id: str
    change_origin: str = ""


@dataclass
class ValidationRule:
    """Simulator switch: a record whose ``field`` equals ``equals`` fails to save."""

    id: str
    entity: str
    field: str
    equals: Any
    message: str

    def violated(self, record: Mapping[str, Any]) -> bool:
        value = record.get(self.field)
        if self.equals is None or value is None:
            return value is None and self.equals is None
        if isinstance(value, bool) or isinstance(self.equals, bool):
            return str(value).lower() == str(self.equals).lower()
        try:
            return float(value) == float(self.equals)
        except (TypeError, ValueError):
            return str(value) == str(self.equals)


@dataclass(frozen=True)
class ConvertResult:
    lead_id: str
    account_id: str
    contact_id: str
    opportunity_id: str | None


@dataclass
class Session:
    token: str
    user_id: str
    username: str
    client_id: str
    issued_at: float


@dataclass
class ApiUsage:
    """The daily API request quota and who spent it."""

    limit: int
    used: int = 0
    by_client: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    by_client_kind: Counter[str] = field(default_factory=Counter)

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit

    def count(self, client: str, kind: str) -> None:
        self.used += 1
        name = client or "(none)"
        self.by_client[name] += 1
        self.by_kind[kind] += 1
        self.by_client_kind[f"{name} {kind}"] += 1

    def snapshot(self) -> dict[str, Any]:
        return {"limit": self.limit, "used": self.used, "remaining": max(0, self.limit - self.used),
                "by_client": dict(self.by_client), "by_kind": dict(self.by_kind),
                "by_client_kind": dict(self.by_client_kind)}


# Lead conversion copies these (the org's standard lead field mapping plus our custom fields).
_LEAD_TO_CONTACT = {f: f for f in (
    "Salutation", "FirstName", "LastName", "Title", "Email", "Phone", "MobilePhone", "LeadSource",
    "Description", "HasOptedOutOfEmail", "DoNotCall", "TIMS_Customer_ID__c", "pi__score__c",
    "pi__grade__c", "pi__url__c", "pi__campaign__c", "pi__last_activity__c",
    "pi__conversion_date__c")} | {
    "Street": "MailingStreet", "City": "MailingCity", "State": "MailingState",
    "PostalCode": "MailingPostalCode", "Country": "MailingCountry"}
_LEAD_TO_ACCOUNT = {
    "Company": "Name", "Phone": "Phone", "Website": "Website", "Industry": "Industry",
    "AnnualRevenue": "AnnualRevenue", "NumberOfEmployees": "NumberOfEmployees",
    "Street": "BillingStreet", "City": "BillingCity", "State": "BillingState",
    "PostalCode": "BillingPostalCode", "Country": "BillingCountry"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# -- the org -----------------------------------------------------------------------------------

class Org:
    """One simulated Salesforce org (a tenant), shared by the REST and CDC servers."""

    def __init__(self, *, listener: ChangeListener | None = None, daily_api_limit: int = 100_000,
                 schema: Mapping[str, SObjectDef] | None = None, clock: Any = time.time,
                 org_id: str | None = None) -> None:
        self.listener = listener
        self._clock = clock
        self._lock = threading.RLock()
        self._schema: dict[str, SObjectDef] = dict(schema or DEFAULT_SCHEMA)
        self._salt = "".join(secrets.choice(_B62) for _ in range(4))
        self._ids = itertools.count(1)
        self.org_id = org_id or make_id("00D", "5g" + self._salt + "0" * 6)
        self.users: dict[str, str] = {}  # username -> user id
        self.admin_user_id = self.ensure_user("admin@sandbox.example")
        self.integration_user_id = self.ensure_user("integration@sandbox.example")
        self.sessions: dict[str, Session] = {}
        self.refresh_tokens: dict[str, tuple[str, str]] = {}  # token -> (client id, user id)
        self.validation_rules: list[ValidationRule] = []
        self.api = ApiUsage(daily_api_limit)
        self._records: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in self._schema}
        self._index: dict[tuple[str, str], dict[Any, set[str]]] = {}
        self._commit_number = 0
        self._seed()

    # -- schema
    @property
    def entities(self) -> list[str]:
        return list(self._schema)

    def sobject(self, entity: str) -> SObjectDef:
        """The object's definition by case-insensitive name; NOT_FOUND (404) if unknown."""
        lower = entity.lower()
        for name, sobj in self._schema.items():
            if name.lower() == lower:
                return sobj
        raise _err("NOT_FOUND", "The requested resource does not exist", status=404)

    def describe(self, entity: str) -> list[FieldDef]:
        return list(self.sobject(entity).fields)

    def entity_for_id(self, record_id: str) -> str | None:
        prefix = record_id[:3]
        return next((n for n, s in self._schema.items() if s.key_prefix == prefix), None)

    def add_field(self, entity: str, fdef: FieldDef) -> None:
        """Add a field (a schema change, as an admin would): existing records get its default."""
        with self._lock:
            sobj = self.sobject(entity)
            self._schema[sobj.name] = replace(sobj, fields=sobj.fields + (fdef,))
            for rec in self._records[sobj.name].values():
                rec[fdef.name] = fdef.default
            self._reindex(sobj.name)

    # -- users, sessions
    def ensure_user(self, username: str) -> str:
        with self._lock:
            if username not in self.users:
                self.users[username] = self._new_id("005")
            return self.users[username]

    def username_of(self, user_id: str) -> str | None:
        return next((u for u, i in self.users.items() if i == user_id), None)

    def issue_session(self, user_id: str, client_id: str) -> Session:
        token = f"{self.org_id[:15]}!{secrets.token_urlsafe(72)}"
        session = Session(token, user_id, self.username_of(user_id) or "", client_id, self._clock())
        with self._lock:
            self.sessions[token] = session
        return session

    def session(self, token: str) -> Session | None:
        return self.sessions.get(token)

    def issue_refresh_token(self, client_id: str, username: str) -> str:
        """A refresh token, as the web-server flow would have produced (we serve no such flow)."""
        token = secrets.token_urlsafe(48)
        with self._lock:
            self.refresh_tokens[token] = (client_id, self.ensure_user(username))
        return token

    def revoke(self, token: str) -> bool:
        with self._lock:
            return (self.sessions.pop(token, None) is not None
                    or self.refresh_tokens.pop(token, None) is not None)

    # -- validation rules
    def add_validation_rule(self, entity: str, field_name: str, equals: Any, message: str) -> ValidationRule:
        sobj = self.sobject(entity)
        fdef = sobj.field(field_name)
        if fdef is None:
            raise _err("INVALID_FIELD", f"No such column '{field_name}' on sobject of type {sobj.name}")
        rule = ValidationRule(uuid.uuid4().hex[:12], sobj.name, fdef.name, equals, message)
        with self._lock:
            self.validation_rules.append(rule)
        return rule

    def clear_validation_rules(self, rule_id: str | None = None) -> int:
        with self._lock:
            before = len(self.validation_rules)
            self.validation_rules = [r for r in self.validation_rules
                                     if rule_id is not None and r.id != rule_id]
            return before - len(self.validation_rules)

    # -- reads
    def get(self, entity: str, record_id: str, *, include_deleted: bool = False) -> dict[str, Any] | None:
        sobj = self.sobject(entity)
        rid = normalize_id(record_id)
        with self._lock:
            rec = self._records[sobj.name].get(rid or "")
            if rec is None or (rec["IsDeleted"] and not include_deleted):
                return None
            return dict(rec)

    def retrieve(self, entity: str, record_id: str) -> dict[str, Any]:
        """A live record by id, or the error REST gives for that id."""
        sobj = self.sobject(entity)
        with self._lock:
            return dict(self._live(sobj, record_id))

    def find(self, entity: str, field_name: str, value: Any) -> list[dict[str, Any]]:
        """Live records whose external id ``field_name`` equals ``value``."""
        sobj = self.sobject(entity)
        fdef = self._ext_field(sobj, field_name)
        with self._lock:
            if fdef.name == "Id":
                rec = self._records[sobj.name].get(normalize_id(value) or "")
                return [dict(rec)] if rec and not rec["IsDeleted"] else []
            ids = self._index.get((sobj.name, fdef.name), {}).get(self._key(fdef, value), set())
            return [dict(self._records[sobj.name][i]) for i in sorted(ids)]

    def records(self, entity: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        sobj = self.sobject(entity)
        with self._lock:
            return [dict(r) for r in self._records[sobj.name].values()
                    if include_deleted or not r["IsDeleted"]]

    def parse_query(self, text: str) -> soql.Query:
        def describe(name: str) -> tuple[str, Sequence[FieldDef]] | None:
            try:
                sobj = self.sobject(name)
            except SalesforceError:
                return None
            return sobj.name, sobj.fields

        return soql.parse(text, describe)

    def run_query(self, query: soql.Query, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            rows = [r for r in self._records[query.entity].values()
                    if include_deleted or not r["IsDeleted"]]
            return [dict(r) for r in query.run(rows)]

    def query(self, text: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Run a SOQL query; rows hold the selected fields. Raises soql.SoqlError."""
        q = self.parse_query(text)
        return [q.project(r) for r in self.run_query(q, include_deleted=include_deleted)]

    def count_api_call(self, client: str, kind: str) -> None:
        with self._lock:
            self.api.count(client, kind)

    def set_api_usage(self, *, used: int | None = None, limit: int | None = None) -> None:
        with self._lock:
            if used is not None:
                self.api.used = used
            if limit is not None:
                self.api.limit = limit

    def count(self, entity: str) -> int:
        sobj = self.sobject(entity)
        with self._lock:
            return sum(1 for r in self._records[sobj.name].values() if not r["IsDeleted"])

    # -- writes as a UI user
    def ui_context(self) -> WriteContext:
        return WriteContext(self.admin_user_id, "")

    def create(self, entity: str, values: Mapping[str, Any], *, ctx: WriteContext | None = None) -> str:
        with self.transaction(ctx) as tx:
            return tx.create(entity, values)

    def update(self, entity: str, record_id: str, values: Mapping[str, Any], *,
               ctx: WriteContext | None = None) -> None:
        with self.transaction(ctx) as tx:
            tx.update(entity, record_id, values)

    def upsert(self, entity: str, field_name: str, value: Any, values: Mapping[str, Any], *,
               ctx: WriteContext | None = None) -> tuple[str, bool]:
        with self.transaction(ctx) as tx:
            return tx.upsert(entity, field_name, value, values)

    def delete(self, entity: str, record_id: str, *, ctx: WriteContext | None = None) -> None:
        with self.transaction(ctx) as tx:
            tx.delete(entity, record_id)

    def undelete(self, entity: str, record_id: str, *, ctx: WriteContext | None = None) -> None:
        with self.transaction(ctx) as tx:
            tx.undelete(entity, record_id)

    def convert_lead(self, lead_id: str, *, ctx: WriteContext | None = None, **options: Any) -> ConvertResult:
        """Simulator extension (real orgs convert via SOAP convertLead or Apex): see
        :meth:`OrgTransaction.convert_lead`."""
        with self.transaction(ctx) as tx:
            return tx.convert_lead(lead_id, **options)

    @contextmanager
    def transaction(self, ctx: WriteContext | None = None) -> Iterator[OrgTransaction]:
        """Writes inside commit together (one transaction key) or, on an exception, not at all."""
        with self._lock:
            tx = OrgTransaction(self, ctx or self.ui_context())
            try:
                yield tx
            except BaseException:
                tx.rollback()
                raise
            self._commit(tx)

    # -- admin
    def reset(self) -> None:
        """Forget records, rules and API counters; keep users, tokens and schema."""
        with self._lock:
            self._records = {n: {} for n in self._schema}
            self._index.clear()
            self.validation_rules.clear()
            self.api = ApiUsage(self.api.limit)
            self._seed()

    def _seed(self) -> None:
        """What every org has from the start: the standard price book (no change event)."""
        if "Pricebook2" not in self._schema:
            return
        listener, self.listener = self.listener, None
        try:
            with self.transaction(WriteContext(self.admin_user_id, "")) as tx:
                book = tx.create("Pricebook2", {"Name": "Standard Price Book", "IsActive": True})
                tx.update("Pricebook2", book, {"IsStandard": True}, system=True)
        finally:
            self.listener = listener

    @property
    def standard_pricebook_id(self) -> str | None:
        books = [r["Id"] for r in self.records("Pricebook2") if r["IsStandard"]]
        return books[0] if books else None

    def snapshot(self, *, with_records: bool = True) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {
                "org_id": self.org_id,
                "users": dict(self.users),
                "counts": {n: sum(1 for r in recs.values() if not r["IsDeleted"])
                           for n, recs in self._records.items()},
                "deleted": {n: sum(1 for r in recs.values() if r["IsDeleted"])
                            for n, recs in self._records.items()},
                "api": self.api.snapshot(),
                "validation_rules": [asdict(r) for r in self.validation_rules],
                "sessions": len(self.sessions),
                "commit_number": self._commit_number,
            }
            if with_records:
                out["records"] = {n: [dict(r) for r in recs.values()] for n, recs in self._records.items()}
            return out

    # -- internals (callers hold the lock)
    def _now(self) -> float:
        return self._clock()

    def _new_id(self, prefix: str) -> str:
        return make_id(prefix, "5g" + self._salt + _b62(next(self._ids), 6))

    def _live(self, sobj: SObjectDef, record_id: str) -> dict[str, Any]:
        rid = normalize_id(record_id)
        if rid is None:
            raise _err("MALFORMED_ID", f"{sobj.name} ID: id value of incorrect type: {record_id}", ("Id",))
        if rid[:3] != sobj.key_prefix:
            raise _err("MALFORMED_ID", f"{sobj.name} ID: id value of incorrect type: {record_id}", ("Id",))
        rec = self._records[sobj.name].get(rid)
        if rec is None:
            raise _err("NOT_FOUND", "The requested resource does not exist", status=404)
        if rec["IsDeleted"]:
            raise _err("ENTITY_IS_DELETED", "entity is deleted", status=404)
        return rec

    def _ext_field(self, sobj: SObjectDef, field_name: str) -> FieldDef:
        fdef = sobj.field(field_name)
        if fdef is None or not (fdef.external_id or fdef.name == "Id"):
            raise _err("NOT_FOUND",
                       f"Provided external ID field does not exist or is not accessible: {field_name}",
                       status=404)
        return fdef

    @staticmethod
    def _indexed(fdef: FieldDef) -> bool:
        return fdef.external_id or fdef.unique

    @staticmethod
    def _key(fdef: FieldDef, value: Any) -> Any:
        if value is None:
            return None
        if fdef.type in ("double", "int"):
            try:
                return float(value)
            except (TypeError, ValueError):
                return str(value)
        return str(value).casefold()  # external ids are case-insensitive by default

    def _reindex(self, entity: str) -> None:
        sobj = self._schema[entity]
        for fdef in sobj.fields:
            if self._indexed(fdef):
                index: dict[Any, set[str]] = {}
                for rid, rec in self._records[entity].items():
                    if not rec["IsDeleted"] and rec.get(fdef.name) is not None:
                        index.setdefault(self._key(fdef, rec[fdef.name]), set()).add(rid)
                self._index[(entity, fdef.name)] = index

    def _store(self, entity: str, rid: str, new: dict[str, Any] | None) -> dict[str, Any] | None:
        """Replace a record (None removes it), keeping the external id indexes right."""
        recs = self._records[entity]
        old = recs.get(rid)
        for fdef in self._schema[entity].fields:
            if not self._indexed(fdef):
                continue
            index = self._index.setdefault((entity, fdef.name), {})
            if old is not None and not old["IsDeleted"] and old.get(fdef.name) is not None:
                key = self._key(fdef, old[fdef.name])
                index.get(key, set()).discard(rid)
                if not index.get(key):
                    index.pop(key, None)
            if new is not None and not new["IsDeleted"] and new.get(fdef.name) is not None:
                index.setdefault(self._key(fdef, new[fdef.name]), set()).add(rid)
        if new is None:
            recs.pop(rid, None)
        else:
            recs[rid] = new
        return old

    def _commit(self, tx: OrgTransaction) -> None:
        if not tx.pending:
            return
        self._commit_number += 1
        listener = self.listener
        if listener is None:
            return
        for seq, (entity, rid, kind, fields_, changed, nulled) in enumerate(tx.pending, start=1):
            listener.publish(RecordChange(
                entity=entity, record_id=rid, change_type=kind, fields=fields_,
                changed_fields=changed, nulled_fields=nulled, change_origin=tx.ctx.change_origin,
                commit_user=tx.ctx.user_id, commit_timestamp=tx.now_ms,
                commit_number=self._commit_number, transaction_key=tx.key, sequence_number=seq))


_Pending = tuple[str, str, str, dict[str, Any], tuple[str, ...], tuple[str, ...]]


class OrgTransaction:
    """Writes of one request; :meth:`savepoint`/:meth:`rollback_to` give per-record partial saves."""

    def __init__(self, org: Org, ctx: WriteContext) -> None:
        self.org = org
        self.ctx = ctx
        self.now_ms = int(org._now() * 1000)
        self.stamp = soql.format_datetime(self.now_ms / 1000)
        self.key = str(uuid.uuid4())
        self.pending: list[_Pending] = []
        self._undo: list[tuple[str, str, dict[str, Any] | None]] = []

    # -- savepoints
    def savepoint(self) -> tuple[int, int]:
        return len(self._undo), len(self.pending)

    def rollback_to(self, point: tuple[int, int]) -> None:
        while len(self._undo) > point[0]:
            entity, rid, old = self._undo.pop()
            self.org._store(entity, rid, old)
        del self.pending[point[1]:]

    def rollback(self) -> None:
        self.rollback_to((0, 0))

    def _put(self, entity: str, rid: str, new: dict[str, Any]) -> None:
        self._undo.append((entity, rid, self.org._store(entity, rid, new)))

    # -- operations
    def create(self, entity: str, values: Mapping[str, Any]) -> str:
        sobj = self.org.sobject(entity)
        data = self._prepare(sobj, values, creating=True)
        rec: dict[str, Any] = {}
        for fdef in sobj.fields:
            default = fdef.default
            rec[fdef.name] = self.ctx.user_id if default == "$user" else default
        rec.update(data)
        rid = self.org._new_id(sobj.key_prefix)
        rec.update(Id=rid, IsDeleted=False, CreatedDate=self.stamp, CreatedById=self.ctx.user_id,
                   LastModifiedDate=self.stamp, LastModifiedById=self.ctx.user_id,
                   SystemModstamp=self.stamp)
        self._from_pricebook_entry(sobj.name, rec)
        _derive(sobj.name, rec)
        self._validate(sobj, rec, None)
        self._put(sobj.name, rid, rec)
        self.pending.append((sobj.name, rid, "CREATE", _public(sobj, rec), (), ()))
        self._roll_up(sobj.name, rec)
        return rid

    def update(self, entity: str, record_id: str, values: Mapping[str, Any], *, system: bool = False) -> None:
        sobj = self.org.sobject(entity)
        old = self.org._live(sobj, record_id)
        if sobj.name == "Lead" and old["IsConverted"] and not system:
            raise _err("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", ("Id",))
        body = {k: v for k, v in values.items() if k.lower() != "id" or normalize_id(v) != old["Id"]}
        data = self._prepare(sobj, body, creating=False, system=system)
        new = dict(old)
        new.update(data)
        new.update(LastModifiedDate=self.stamp, LastModifiedById=self.ctx.user_id, SystemModstamp=self.stamp)
        _derive(sobj.name, new)
        self._validate(sobj, new, old)
        self._put(sobj.name, old["Id"], new)
        changed = tuple(f.name for f in sobj.fields if not f.compound and new[f.name] != old[f.name])
        nulled = tuple(f for f in changed if new[f] is None)
        self.pending.append((sobj.name, old["Id"], "UPDATE", {f: new[f] for f in changed}, changed, nulled))
        self._roll_up(sobj.name, new)

    def _from_pricebook_entry(self, entity: str, rec: dict[str, Any]) -> None:
        """An opportunity line names a price book entry: its product, and its price unless given;
        an entry shows its product's code."""
        if entity == "OpportunityLineItem" and rec.get("PricebookEntryId"):
            entry = self.org._records["PricebookEntry"].get(rec["PricebookEntryId"]) or {}
            rec["Product2Id"] = rec.get("Product2Id") or entry.get("Product2Id")
            if rec.get("UnitPrice") is None:
                rec["UnitPrice"] = entry.get("UnitPrice")
        elif entity == "PricebookEntry" and rec.get("Product2Id"):
            rec["ProductCode"] = (self.org._records["Product2"].get(rec["Product2Id"]) or {}).get("ProductCode")

    def _roll_up(self, entity: str, line: Mapping[str, Any]) -> None:
        """An opportunity with lines has the sum of their totals as its Amount (a roll-up the
        platform keeps, in the same transaction as the line's change)."""
        if entity != "OpportunityLineItem":
            return
        opportunity = line["OpportunityId"]
        totals = [r["TotalPrice"] or 0.0 for r in self.org._records["OpportunityLineItem"].values()
                  if r["OpportunityId"] == opportunity and not r["IsDeleted"]]
        amount = round(sum(totals), 2)
        if self.org._records["Opportunity"][opportunity]["Amount"] != amount:
            self.update("Opportunity", opportunity, {"Amount": amount}, system=True)

    def upsert(self, entity: str, field_name: str, value: Any, values: Mapping[str, Any]) -> tuple[str, bool]:
        """Update the record whose external id equals ``value``, or create it: (id, created)."""
        sobj = self.org.sobject(entity)
        fdef = self.org._ext_field(sobj, field_name)
        body = {k: v for k, v in values.items() if k != "attributes"}
        in_body = next((k for k in body if k.lower() == fdef.name.lower()), None)
        if in_body is not None:
            given = body.pop(in_body)
            if given is not None and self.org._key(fdef, given) != self.org._key(fdef, value):
                raise _err("INVALID_FIELD", f"The value of {fdef.name} in the request body does not "
                           f"match the value in the URL: {given}", (fdef.name,))
        if fdef.name == "Id":
            if value in (None, ""):
                return self.create(sobj.name, body), True
            self.update(sobj.name, str(value), body)
            return self.org._live(sobj, str(value))["Id"], False
        if value in (None, ""):
            raise _err("MISSING_ARGUMENT", f"{fdef.name} not specified", (fdef.name,))
        ids = sorted(self.org._index.get((sobj.name, fdef.name), {}).get(self.org._key(fdef, value), set()))
        if len(ids) > 1:
            raise MultipleMatches(sobj.name, fdef.name, ids)
        if ids:
            self.update(sobj.name, ids[0], body)
            return ids[0], False
        return self.create(sobj.name, {**body, fdef.name: value}), True

    def delete(self, entity: str, record_id: str) -> None:
        sobj = self.org.sobject(entity)
        old = self.org._live(sobj, record_id)
        new = dict(old, IsDeleted=True, LastModifiedDate=self.stamp,
                   LastModifiedById=self.ctx.user_id, SystemModstamp=self.stamp)
        self._put(sobj.name, old["Id"], new)
        self.pending.append((sobj.name, old["Id"], "DELETE", {}, (), ()))
        self._roll_up(sobj.name, new)

    def undelete(self, entity: str, record_id: str) -> None:
        sobj = self.org.sobject(entity)
        rid = normalize_id(record_id)
        old = self.org._records[sobj.name].get(rid or "")
        if old is None:
            raise _err("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ("Id",))
        if not old["IsDeleted"]:
            raise _err("UNDELETE_FAILED", "Entity is not in the recycle bin", ("Id",))
        new = dict(old, IsDeleted=False, LastModifiedDate=self.stamp,
                   LastModifiedById=self.ctx.user_id, SystemModstamp=self.stamp)
        self._check_unique(sobj, new, old["Id"])
        self._put(sobj.name, old["Id"], new)
        self.pending.append((sobj.name, old["Id"], "UNDELETE", _public(sobj, new), (), ()))

    def convert_lead(self, lead_id: str, *, account_id: str | None = None, contact_id: str | None = None,
                     create_opportunity: bool = True, opportunity_name: str | None = None,
                     converted_status: str = "Closed - Converted", owner_id: str | None = None) -> ConvertResult:
        """Convert a lead as the standard conversion does: an Account (or the given one), a Contact
        (or the given one, blank fields filled from the lead), optionally an Opportunity, and the
        lead marked IsConverted with the Converted*Id links. Simulator extension."""
        lead = dict(self.org._live(self.org.sobject("Lead"), lead_id))
        if lead["IsConverted"]:
            raise _err("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", ("Id",))
        owner = owner_id or lead["OwnerId"]
        if account_id:
            acc_id = self.org._live(self.org.sobject("Account"), account_id)["Id"]
        else:
            acc_id = self.create("Account", {**_mapped(lead, _LEAD_TO_ACCOUNT), "OwnerId": owner})
        contact_values = _mapped(lead, _LEAD_TO_CONTACT)
        if contact_id:
            existing = self.org._live(self.org.sobject("Contact"), contact_id)
            fill = {k: v for k, v in contact_values.items() if existing.get(k) in (None, False)}
            if existing.get("AccountId") is None:
                fill["AccountId"] = acc_id
            self.update("Contact", existing["Id"], fill)
            con_id = existing["Id"]
        else:
            con_id = self.create("Contact", {**contact_values, "AccountId": acc_id, "OwnerId": owner})
        opp_id = None
        if create_opportunity:
            opp_id = self.create("Opportunity", {
                "Name": opportunity_name or f"{lead['Company']}-", "StageName": "Prospecting",
                "CloseDate": datetime.fromtimestamp(self.now_ms / 1000, tz=timezone.utc).date().isoformat(),
                "AccountId": acc_id, "LeadSource": lead.get("LeadSource"), "OwnerId": owner})
        today = self.stamp[:10]
        self.update("Lead", lead["Id"], {
            "Status": converted_status, "IsConverted": True, "ConvertedDate": today,
            "ConvertedAccountId": acc_id, "ConvertedContactId": con_id,
            "ConvertedOpportunityId": opp_id}, system=True)
        return ConvertResult(lead["Id"], acc_id, con_id, opp_id)

    # -- checks
    def _prepare(self, sobj: SObjectDef, values: Mapping[str, Any], *, creating: bool,
                 system: bool = False) -> dict[str, Any]:
        """Canonical field names and coerced values; refuses unknown and read-only fields."""
        out: dict[str, Any] = {}
        readonly: list[str] = []
        for key, value in values.items():
            if key == "attributes":
                continue
            fdef = sobj.field(key)
            if fdef is None:
                raise _err("INVALID_FIELD", f"No such column '{key}' on sobject of type {sobj.name}")
            if fdef.name == "Id" and creating:
                raise _err("INVALID_FIELD", "cannot specify Id in an insert call", ("Id",))
            allowed = fdef.createable if creating else fdef.updateable
            if not allowed and not system:
                readonly.append(fdef.name)
                continue
            out[fdef.name] = _coerce(sobj, fdef, value)
        if readonly:
            raise _err("INVALID_FIELD_FOR_INSERT_UPDATE",
                       f"Unable to create/update fields: {', '.join(readonly)}. Please check the security "
                       "settings of this field and verify that it is read/write for your profile or "
                       "permission set.", readonly)
        return out

    def _validate(self, sobj: SObjectDef, rec: dict[str, Any], old: dict[str, Any] | None) -> None:
        missing = [f.name for f in sobj.fields
                   if not f.nillable and not f.compound and f.type != "boolean" and rec.get(f.name) is None]
        if sobj.name == "CampaignMember" and rec.get("LeadId") is None and rec.get("ContactId") is None:
            missing.append("LeadId")
        if missing:
            raise _err("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
        for fdef in sobj.fields:
            value = rec.get(fdef.name)
            if fdef.type == "reference" and value is not None and (old is None or old.get(fdef.name) != value):
                self._check_reference(fdef, value)
        for rule in self.org.validation_rules:
            if rule.entity == sobj.name and rule.violated(rec):
                raise _err("FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.message, (rule.field,))
        self._check_unique(sobj, rec, rec.get("Id"))
        if sobj.name == "CampaignMember" and old is None:
            for other in self.org._records["CampaignMember"].values():
                if (not other["IsDeleted"] and other["CampaignId"] == rec["CampaignId"]
                        and (other["LeadId"], other["ContactId"]) == (rec["LeadId"], rec["ContactId"])):
                    raise _err("DUPLICATE_VALUE", "Already a campaign member.")

    def _check_reference(self, fdef: FieldDef, value: str) -> None:
        if fdef.reference_to == ("User",):
            if value not in self.org.users.values():
                raise _err("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", (fdef.name,))
            return
        target = self.org.entity_for_id(value)
        if target not in fdef.reference_to:
            raise _err("FIELD_INTEGRITY_EXCEPTION",
                       f"{fdef.name}: id value of incorrect type: {value}", (fdef.name,))
        rec = self.org._records[target].get(value)
        if rec is None:
            raise _err("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", (fdef.name,))
        if rec["IsDeleted"]:
            raise _err("ENTITY_IS_DELETED", "entity is deleted", (fdef.name,))

    def _check_unique(self, sobj: SObjectDef, rec: dict[str, Any], rid: str | None) -> None:
        for fdef in sobj.fields:
            if not fdef.unique or rec.get(fdef.name) is None:
                continue
            index = self.org._index.get((sobj.name, fdef.name), {})
            holders = index.get(self.org._key(fdef, rec[fdef.name]), set())
            others = sorted(holders - {rid})
            if others:
                raise _err("DUPLICATE_VALUE", f"duplicate value found: {fdef.name} duplicates value on "
                           f"record with id: {others[0][:15]}")


def _coerce(sobj: SObjectDef, fdef: FieldDef, value: Any) -> Any:
    """Salesforce's JSON deserialisation and field-level checks, for one value."""

    def bad() -> SalesforceError:
        return _err("JSON_PARSER_ERROR", f"Cannot deserialize instance of {fdef.type} from value "
                    f"{value!r} or request may be missing a required field", (fdef.name,))

    if value is None:
        return False if fdef.type == "boolean" else None
    if isinstance(value, (dict, list)):
        raise bad()
    t = fdef.type
    if t == "string":
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if text == "":
            return None  # Salesforce stores an empty text value as null
        if fdef.format == "email" and not _EMAIL.match(text):
            raise _err("INVALID_EMAIL_ADDRESS", f"{fdef.name}: invalid email address: {text}", (fdef.name,))
        return text
    if t in ("id", "reference"):
        if value == "":
            return None
        rid = normalize_id(value)
        if rid is None:
            raise _err("MALFORMED_ID", f"{fdef.name}: id value of incorrect type: {value}", (fdef.name,))
        return rid
    if t in ("double", "int"):
        if isinstance(value, bool):
            raise bad()
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad() from None
        if t == "int":
            if number != int(number):
                raise bad()
            return int(number)
        return number
    if t == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise bad()
    if t == "date":
        try:
            return soql.parse_date(str(value)).isoformat()
        except ValueError:
            raise bad() from None
    if t == "datetime":
        try:
            return soql.format_datetime(soql.parse_datetime(str(value)))
        except ValueError:
            raise bad() from None
    raise bad()


def _derive(entity: str, rec: dict[str, Any]) -> None:
    """Fields the platform computes from others."""
    if entity in ("Lead", "Contact"):
        rec["Name"] = " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p) or None
    elif entity == "Opportunity":
        stage = (rec.get("StageName") or "").lower()
        rec["IsClosed"] = stage.startswith("closed")
        rec["IsWon"] = stage == "closed won"
    elif entity == "OpportunityLineItem" and rec.get("Quantity") is not None and rec.get("UnitPrice") is not None:
        rec["TotalPrice"] = round(rec["Quantity"] * rec["UnitPrice"], 2)
    elif entity == "Task":
        rec["IsClosed"] = (rec.get("Status") or "").lower() == "completed"
    elif entity == "CampaignMember":
        rec["HasResponded"] = (rec.get("Status") or "").lower() == "responded"


def _public(sobj: SObjectDef, rec: Mapping[str, Any]) -> dict[str, Any]:
    return {f.name: rec.get(f.name) for f in sobj.fields if not f.compound}


def _mapped(source: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    return {dst: source[src] for src, dst in mapping.items() if source.get(src) not in (None, "")}
