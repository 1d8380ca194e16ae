"""Pardot visitor activities become Salesforce Tasks on the prospect's Lead or Contact.

Pure: no Kafka, no Faust. A prospect's row (table ``activities``, key ``prospect:<Pardot id>``)
holds the Salesforce record its Tasks go on (the Contact once Pardot has synced one, else the
Lead), the activities already written, its open roll-ups and the activities that wait for the
prospect to be synced with Salesforce. The mapping (``mappings/activities.yaml``) says per
activity type whether it becomes a Task of its own (``each``), counts in one Task per prospect,
group and day (``daily``), or is left out (``skip``).

Exactly once: each Task is upserted by an external id (``Pardot_Activity_Key__c`` by default):
``pardot:<activity id>`` for a Task of its own, ``pardot:<prospect>:<group>:<day>`` for a
roll-up, so a replayed or repeated activity never makes a second Task. A roll-up's version is
the number of activities it counts, so the sinks' version guard never lets an older count
overwrite a newer one. The row remembers the activities it wrote (bounded) so a replay costs
no call (docs/adr/0025).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from string import Formatter
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.envelope import SinkCommand, SourceEvent
from topologies.activities.context import AMOUNTS, CONTEXT_VALUES, describe
from topologies.mapping_file import load_model
from topologies.money import currency_code, wire

__all__ = ["ActivityRule", "ActivityMapping", "load_mapping", "new_person_row", "apply_pardot", "Outcome",
           "DEFAULT_MAPPING_DIR", "task_key"]

DEFAULT_MAPPING_DIR = Path(__file__).with_name("mappings")
#: Salesforce text limits of the Task fields we write
SUBJECT_LIMIT, DESCRIPTION_LIMIT = 255, 32_000
_TEMPLATE_FIELDS = {"type_name", "details", "count", "day", "group"}
#: ``context(salesforce ids)`` → the ERP context of the first id that has one, or None
ContextOf = Callable[[list[str]], "dict[str, Any] | None"]


class ActivityRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Pardot's visitor activity type number
    type: int = Field(ge=0)
    name: str = Field(min_length=1, pattern=r"^[a-z][a-z0-9_]*$")
    task: Literal["each", "daily", "skip"]
    #: the Task's Subject: ``{type_name}``, ``{details}``, and for roll-ups ``{count}``, ``{day}``
    subject: str = "{type_name}: {details}"
    #: the Task's Type picklist value
    task_type: str = "Other"
    #: roll-ups of the same group count in one Task (default: the rule's name)
    group: str | None = None

    @field_validator("subject")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        names = {name for _, name, _, _ in Formatter().parse(value) if name is not None}
        if names - _TEMPLATE_FIELDS:
            raise ValueError(f"unknown placeholder(s) {sorted(names - _TEMPLATE_FIELDS)}; "
                             f"use {', '.join(sorted(_TEMPLATE_FIELDS))}")
        return value

    @property
    def rollup_group(self) -> str:
        return self.group or self.name


class ActivityMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the Task's external-id field (the sandbox org and the install guide create it)
    external_id_field: str = "Pardot_Activity_Key__c"
    status: str = "Completed"
    currency: str = "USD"
    #: what becomes of an activity type the mapping does not list
    unlisted: Literal["each", "skip"] = "skip"
    #: activities a prospect not yet synced with Salesforce may hold back; the next is quarantined
    pending_limit: int = Field(default=200, ge=1)
    #: activity ids a prospect's row remembers as written (replays within them cost no call)
    seen_limit: int = Field(default=500, ge=1)
    #: days a roll-up stays open; an activity older than the prospect's newest by more is quarantined
    rollup_days: int = Field(default=35, ge=1)
    #: most activities a roll-up lists in its description (it counts them all)
    rollup_lines: int = Field(default=25, ge=1)
    #: most activities one roll-up counts; the next is quarantined
    rollup_limit: int = Field(default=2000, ge=1)
    #: Task field → ERP context value (``open_orders``, ``balance``, ``last_invoice`` …)
    context_fields: dict[str, str] = Field(default_factory=dict)
    types: tuple[ActivityRule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> "ActivityMapping":
        currency_code(self.currency)
        numbers = [rule.type for rule in self.types]
        if len(set(numbers)) != len(numbers):
            raise ValueError("an activity type is listed twice")
        unknown = set(self.context_fields.values()) - set(CONTEXT_VALUES)
        if unknown:
            raise ValueError(f"context_fields: unknown value(s) {sorted(unknown)}; known: {', '.join(CONTEXT_VALUES)}")
        return self

    def rule_for(self, activity_type: Any, type_name: str) -> ActivityRule:
        for rule in self.types:
            if rule.type == activity_type:
                return rule
        slug = "".join(c if c.isascii() and c.isalnum() else "_" for c in type_name.lower()).strip("_")
        return ActivityRule(type=0, name=f"unlisted_{slug}" if slug else "unlisted", task=self.unlisted)


def load_mapping(directory: Path) -> ActivityMapping:
    return load_model(directory / "activities.yaml", ActivityMapping)


def new_person_row(key: str) -> dict[str, Any]:
    return {"prospect_id": key.removeprefix("prospect:"), "who": None, "ids": {}, "stamp": 0, "seen": [],
            "rollups": {}, "pending": [], "newest_day": None}


@dataclass
class Outcome:
    commands: list[SinkCommand] = field(default_factory=list)
    #: (reason, value) pairs to set aside on the flow's quarantine
    quarantined: list[tuple[str, Any]] = field(default_factory=list)
    duplicate: bool = False
    stale: bool = False
    skipped: int = 0
    parked: int = 0


def task_key(prospect_id: str, activity_id: str | None = None, group: str | None = None,
             day: str | None = None) -> str:
    """The Task's external id: one per activity, or one per prospect, roll-up group and day."""
    return f"pardot:{activity_id}" if activity_id is not None else f"pardot:{prospect_id}:{group}:{day}"


def apply_pardot(row: dict[str, Any], event: SourceEvent, mapping: ActivityMapping,
                 context_of: ContextOf) -> Outcome:
    """Fold a prospect or visitor activity event into the prospect's row; the Task commands it makes."""
    outcome = Outcome()
    if event.entity == "prospect":
        _take_prospect(row, event, outcome)
        if row["who"] and row["pending"]:
            pending, row["pending"] = row["pending"], []
            for activity in pending:
                _take_activity(row, activity, mapping, context_of, outcome)
        return outcome
    activity = dict(event.fields)
    activity.setdefault("id", event.record_id)
    if row["who"] is None:
        _park(row, activity, mapping, outcome)
    else:
        _take_activity(row, activity, mapping, context_of, outcome)
    return outcome


def _take_prospect(row: dict[str, Any], event: SourceEvent, outcome: Outcome) -> None:
    """The Salesforce record the prospect's Tasks go on: its Contact once synced, else its Lead."""
    if event.commit_timestamp < row["stamp"]:
        outcome.stale = True
        return
    row["stamp"] = event.commit_timestamp
    fields = event.fields
    ids = {name: str(fields[name]) for name in ("salesforceContactId", "salesforceLeadId", "salesforceAccountId")
           if fields.get(name)}
    row["ids"] = ids
    row["who"] = None if event.change_type == "DELETE" else (
        ids.get("salesforceContactId") or ids.get("salesforceLeadId"))


def _park(row: dict[str, Any], activity: dict[str, Any], mapping: ActivityMapping, outcome: Outcome) -> None:
    if any(str(held.get("id")) == str(activity["id"]) for held in row["pending"]):
        outcome.duplicate = True
    elif len(row["pending"]) >= mapping.pending_limit:
        outcome.quarantined.append((f"prospect {row['prospect_id']} is not synced with Salesforce and already "
                                    f"holds {mapping.pending_limit} activities back", activity))
    else:
        row["pending"].append(activity)
        outcome.parked += 1


def _day(activity: dict[str, Any]) -> tuple[str, str]:
    """The activity's UTC day and time of day, from ``createdAt``; ValueError when it has none."""
    raw = str(activity.get("createdAt") or "")
    stamp = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    stamp = (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    return stamp.date().isoformat(), stamp.strftime("%H:%M")


def _take_activity(row: dict[str, Any], activity: dict[str, Any], mapping: ActivityMapping,
                   context_of: ContextOf, outcome: Outcome) -> None:
    activity_id = str(activity["id"])
    rule = mapping.rule_for(activity.get("type"), str(activity.get("typeName") or ""))
    if rule.task == "skip":
        outcome.skipped += 1
        return
    try:
        day, clock = _day(activity)
    except ValueError:
        outcome.quarantined.append((f"activity {activity_id}: createdAt {activity.get('createdAt')!r} "
                                    "is not a date-time", activity))
        return
    context = context_of([row["ids"][name] for name in ("salesforceContactId", "salesforceAccountId")
                          if row["ids"].get(name)])
    if rule.task == "each":
        if activity_id in row["seen"]:
            outcome.duplicate = True
            return
        outcome.commands.append(_each_task(row, activity, rule, mapping, day, context))
        row["seen"] = [*row["seen"], activity_id][-mapping.seen_limit:]
    else:
        _roll_up(row, activity, rule, mapping, (day, clock), context, outcome)


def _values(activity: dict[str, Any], rule: ActivityRule, **more: Any) -> dict[str, Any]:
    return {"type_name": activity.get("typeName") or rule.name, "details": activity.get("details") or "",
            "group": rule.rollup_group, **more}


def _task(row: dict[str, Any], key: str, mapping: ActivityMapping, rule: ActivityRule, subject: str, day: str,
          body: str, context: dict[str, Any] | None, version: int, activity: dict[str, Any]) -> SinkCommand:
    fields: dict[str, Any] = {
        "Subject": subject[:SUBJECT_LIMIT], "WhoId": row["who"], "ActivityDate": day, "Status": mapping.status,
        "Type": rule.task_type,
        "Description": (body + (f"\n\n{describe(context)}" if context else ""))[:DESCRIPTION_LIMIT],
    }
    for task_field, name in mapping.context_fields.items():
        value = context.get(name) if context else None
        fields[task_field] = wire(Decimal(value)) if name in AMOUNTS and value is not None else value
    return SinkCommand(system="salesforce", object="Task", external_id_field=mapping.external_id_field,
                       external_id=key, fields=fields, version=version, record_key=f"prospect:{row['prospect_id']}",
                       source_event_id=f"pardot:visitor_activity:{activity['id']}")


def _each_task(row: dict[str, Any], activity: dict[str, Any], rule: ActivityRule, mapping: ActivityMapping,
               day: str, context: dict[str, Any] | None) -> SinkCommand:
    values = _values(activity, rule, count=1, day=day)
    body = f"{values['type_name']}: {values['details']}".rstrip(": ") + \
        f"\nPardot activity {activity['id']} at {activity.get('createdAt')}"
    return _task(row, task_key(row["prospect_id"], str(activity["id"])), mapping, rule,
                 rule.subject.format_map(values), day, body, context, 1, activity)


def _roll_up(row: dict[str, Any], activity: dict[str, Any], rule: ActivityRule, mapping: ActivityMapping,
             when: tuple[str, str], context: dict[str, Any] | None, outcome: Outcome) -> None:
    day, clock = when
    newest = max(row["newest_day"] or day, day)
    oldest_open = (datetime.fromisoformat(newest) - timedelta(days=mapping.rollup_days)).date().isoformat()
    if day < oldest_open:
        outcome.quarantined.append((f"activity {activity['id']} of {day} is older than the {mapping.rollup_days} "
                                    "days a roll-up stays open", activity))
        return
    row["newest_day"] = newest
    slot = f"{rule.rollup_group}:{day}"
    rollup = row["rollups"].get(slot) or {"ids": [], "lines": []}
    if str(activity["id"]) in rollup["ids"]:
        outcome.duplicate = True
        return
    if len(rollup["ids"]) >= mapping.rollup_limit:
        outcome.quarantined.append((f"roll-up {slot} of prospect {row['prospect_id']} already counts "
                                    f"{mapping.rollup_limit} activities", activity))
        return
    line = f"{clock} {activity.get('typeName') or rule.name}" + (f": {activity['details']}" if activity.get("details") else "")
    rollup = {"ids": [*rollup["ids"], str(activity["id"])], "lines": [*rollup["lines"], line][-mapping.rollup_lines:]}
    row["rollups"] = {k: v for k, v in row["rollups"].items() if k.split(":", 1)[1] >= oldest_open} | {slot: rollup}
    count = len(rollup["ids"])
    values = _values(activity, rule, count=count, day=day)
    body = f"{count} × {rule.rollup_group.replace('_', ' ')} on {day} (latest {len(rollup['lines'])}):\n" + \
        "\n".join(rollup["lines"])
    outcome.commands.append(_task(row, task_key(row["prospect_id"], group=rule.rollup_group, day=day), mapping, rule,
                                  rule.subject.format_map(values), day, body, context, count, activity))
