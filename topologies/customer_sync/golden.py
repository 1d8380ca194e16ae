"""The golden customer record and everything decided about it: dedupe, echoes, conflicts, writes.

A golden record is a plain JSON-able dict (it lives in the ``customer_master`` table):

- ``fields``: canonical field → ``{"v": value, "src": system, "ts": commit ms}``
- ``links``: link name → the record's id in that system (``salesforce_contact`` ...)
- ``refs``: every source reference already linked to this customer
- ``known``: ``<target>:<record id>`` → {field: value} as far as we know that target record
  holds it (what we wrote and what we saw); ``<target>:`` while the record is being created and
  its id is not known yet. Outbound writes are the difference between the golden projection and
  this, so an accepted edit is never written back to where it came from (no ping-pong), and a
  rejected edit (a non-owner changed an owned field) is overwritten with the owner's value. Per
  record, so a second TIMS customer for one person does not pass for the one we write to.
  Records stored before ADR 0014 have it per target; they are read as the linked record's.
- ``sent``: target → {field: [recent values we wrote]}: an incoming value equal to one of them
  is our own write coming back (an echo), even when it is an older one, unless the event's
  origin says someone else made it (``Policy.our_clients``, ADR 0014). A clear we wrote is
  remembered as None, so its echo is recognised the same way.
- ``observed``: source reference → {field: value} as its latest event showed them (the fields
  the mappings read): a full-state event's unchanged fields are not edits. ``observed_at``:
  source reference → commit time of the newest event seen from it, so an older event arriving
  late (its events take different routes through the stages) does not undo what a newer one
  showed; ``shown_at``: source reference → {field: commit time of the newest event that showed
  it}, so a late edit of a field no newer event showed still counts.
- ``seen``: the latest event ids (dedupe window), ``version``: bumped on every real change and
  before any write the change did not cause (the sinks apply only versions newer than the last).

Clears: a field emptied in the system allowed to change it (the same ownership and last-writer
rules as any edit) keeps its slot with the value None, and the targets that are known to hold a
value for it get an explicit null. A target never known to hold one gets nothing, and a field
the golden record never had is never cleared anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.envelope import SinkCommand, SourceEvent
from topologies.customer_sync.identity import company_refs, crossrefs, source_ref
from topologies.customer_sync.mapping import Mappings
from topologies.origin import written_by_us

__all__ = ["Policy", "Outcome", "new_record", "apply_event", "apply_tims_link", "LINK_OF", "DEFAULT_OWNERS",
           "value_wins", "catch_up"]

SEEN_WINDOW = 200
SENT_HISTORY = 4
DEFAULT_OWNERS = {
    "payment_terms": "tims", "credit_limit": "tims", "total_revenue": "tims",
    "first_name": "salesforce", "last_name": "salesforce", "email": "salesforce", "phone": "salesforce",
    "score": "pardot", "grade": "pardot",
}
#: the link a record's own id fills, by source entity
LINK_OF = {
    ("salesforce", "Lead"): "salesforce_lead", ("salesforce", "Contact"): "salesforce_contact",
    ("salesforce", "Account"): "salesforce_account", ("pardot", "prospect"): "pardot_prospect",
    ("tims", "customer"): "tims_customer", ("shop", "customer"): "shop_customer",
}
_REF_LINK = {f"{system}:{entity}": link for (system, entity), link in LINK_OF.items()}
_NOT_IN_EXTERNAL_ID = re.compile(r"[^A-Za-z0-9_.:-]")


def _shop_external_id(record_id: str) -> str:
    """A shop's global id as a TIMS external id allows it (no ``/``): ``gid://shopify/Customer/7``
    → ``shop:shopify:Customer:7`` (docs/adr/0035)."""
    return "shop:" + _NOT_IN_EXTERNAL_ID.sub(":", record_id.removeprefix("gid://")).strip(":")


#: how a link holds its record's id where it is not the id itself: the shop customer's link is
#: what a TIMS customer made for a shop-only person is upserted by
_LINK_VALUE = {"shop_customer": _shop_external_id}


@dataclass(frozen=True)
class Policy:
    """Per-field ownership, then last writer wins by commit time; ties go to the system earlier
    in ``rank``, then to a value over an empty one, then to the smaller value (so every run
    decides the same way). A clear (None) is an edit like any other under these rules."""

    owners: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_OWNERS))
    rank: tuple[str, ...] = ("salesforce", "tims", "pardot")
    #: edits from two systems closer than this are reported as conflicts even when LWW decides
    conflict_window_ms: int = 60_000
    #: our API client name per system, as origins name our own writes (none: echoes by value only)
    our_clients: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    duplicate: bool = False
    changed: list[str] = field(default_factory=list)
    echo_fields: list[str] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    commands: list[SinkCommand] = field(default_factory=list)
    new_refs: list[str] = field(default_factory=list)


def new_record(key: str) -> dict[str, Any]:
    return {"key": key, "version": 0, "fields": {}, "links": {}, "refs": [], "known": {}, "sent": {}, "observed": {},
            "observed_at": {}, "seen": []}


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _link(record: dict[str, Any], ref: str, outcome: Outcome) -> None:
    if ref not in record["refs"]:
        record["refs"].append(ref)
        outcome.new_refs.append(ref)
    system, entity, record_id = ref.split(":", 2)
    link = _REF_LINK.get(f"{system}:{entity}")
    if link and not record["links"].get(link):
        record["links"][link] = _LINK_VALUE.get(link, str)(record_id)
        outcome.changed.append(f"link:{link}")


def _wins(policy: Policy, field_name: str, current: Mapping[str, Any], src: str, value: Any, ts: int) -> tuple[bool, str]:
    owner = policy.owners.get(field_name)
    if owner is not None:
        if src == owner:
            return True, "owner"
        if current["src"] == owner:
            return False, "owner"
    if ts != current["ts"]:
        return ts > current["ts"], "last_writer"
    rank = {name: i for i, name in enumerate(policy.rank)}
    mine, theirs = rank.get(src, len(rank)), rank.get(current["src"], len(rank))
    if mine != theirs:
        return mine < theirs, "tie_break"
    # a value beats an empty one at a perfect tie; otherwise the smaller text wins
    return (value is None, str(value)) < (current["v"] is None, str(current["v"])), "tie_break"


def _merge(record: dict[str, Any], policy: Policy, src: str, ts: int, values: Mapping[str, Any],
           event_id: str, outcome: Outcome) -> None:
    for name, value in values.items():
        current = record["fields"].get(name)
        if current is None:
            if value is not None:
                record["fields"][name] = {"v": value, "src": src, "ts": ts}
                outcome.changed.append(name)
            continue
        if current["v"] == value:
            if policy.owners.get(name) == src != current["src"]:
                current.update(src=src, ts=ts)  # the owner confirms it: from now on it is the owner's
            continue
        accepted, rule = _wins(policy, name, current, src, value, ts)
        different_source = current["src"] != src
        if different_source and (not accepted or abs(ts - current["ts"]) <= policy.conflict_window_ms):
            winner = (src, value, ts) if accepted else (current["src"], current["v"], current["ts"])
            loser = (current["src"], current["v"], current["ts"]) if accepted else (src, value, ts)
            outcome.conflicts.append({
                "customer_key": record["key"], "field": name, "rule": rule,
                "owner": policy.owners.get(name),
                "winner": {"system": winner[0], "value": winner[1], "commit_timestamp": winner[2]},
                "loser": {"system": loser[0], "value": loser[1], "commit_timestamp": loser[2]},
                "event_id": event_id,
            })
        if accepted:
            record["fields"][name] = {"v": value, "src": src, "ts": ts}
            outcome.changed.append(name)


def _read_paths(mappings: Mappings, target: str) -> set[str]:
    """The flat field names the inbound mappings of ``target`` read (an address and its parts)."""
    paths: set[str] = set()
    for rule in mappings.inbound.get(target, {}).values():
        if rule.source:
            paths |= {rule.source, rule.source.split(".", 1)[0]}
    return paths


def _unchanged(last_seen: Mapping[str, Any], name: str, value: Any) -> bool:
    """The record showed this field so before (absent counts as empty, and so do the parts of a
    nested value: an address that had a city is not unchanged when it becomes empty)."""
    if value is None:
        return all(v is None for k, v in last_seen.items() if k == name or k.startswith(name + "."))
    return name in last_seen and last_seen[name] == value


def _is_echo(record: dict[str, Any], target: str, name: str, value: Any) -> bool:
    return value in record["sent"].get(target, {}).get(name, [])


def _known(record: dict[str, Any], target: str, record_id: str) -> dict[str, Any]:
    """What one target record holds as far as we know (``record_id`` "": one being created)."""
    return record["known"].setdefault(f"{target}:{record_id}", {})


def _known_linked(record: dict[str, Any], target: str, record_id: str) -> dict[str, Any]:
    """What the target record we write to holds; the record we were creating is this one once
    its id is linked (what its own events showed since wins over what we wrote)."""
    pending = record["known"].pop(f"{target}:", None)
    known = _known(record, target, record_id)
    if pending is not None:
        known.update({name: value for name, value in pending.items() if name not in known})
    return known


def _upgrade_known(record: dict[str, Any], mappings: Mappings) -> None:
    """Before ADR 0014 ``known`` was kept per target: it stood for the record we write to."""
    for target in [name for name in record["known"] if ":" not in name]:
        values = record["known"].pop(target)
        key = mappings.key_for(target, record["links"]) if target in mappings.outbound else None
        if key is not None:
            _, record_id, exists = key
            record["known"].setdefault(f"{target}:{record_id if exists else ''}", values)


def _remember(known: dict[str, Any], values: Mapping[str, Any]) -> None:
    """Record what a target holds now. An emptied nested value (``billing_address: null``)
    empties every part known under it, or a stale part would later look like something to clear."""
    for name, value in values.items():
        if value is None:
            for inner in [k for k in known if k.startswith(name + ".")]:
                known[inner] = None
        known[name] = value


def _with_clears(event: SourceEvent, flat: dict[str, Any], last_seen: Mapping[str, Any]) -> dict[str, Any]:
    """The event's fields with the clears it states implicitly made explicit (as None).

    - A Salesforce UPDATE names nulled fields in ``nulledFields``; they count even when the
      event's values leave them out.
    - A full-state event restates a nested value (an address) whole: a part the record showed
      before and no longer carries, while the value itself is there, is empty now. A top-level
      field the event lacks is *not* taken as cleared: a system that simply has no such field
      (or a source reading fewer fields) must never clear it elsewhere."""
    out = dict(flat)
    if not event.full_state:
        for name in event.nulled_fields:
            out.setdefault(name, None)
        return out
    for name in last_seen:
        if "." in name and name not in out:
            parent = name.rsplit(".", 1)[0] + "."
            if any(k.startswith(parent) for k in flat):
                out[name] = None
    return out


def _clearable(mappings: Mappings, target: str, cleared: set[str]) -> set[str]:
    """Target fields whose empty projection is a clear to write: those copied from one canonical
    field the golden record holds as cleared. Links, constants and concatenations are never
    cleared (a concatenation changes to what is left; TIMS requires a customer's name)."""
    return {name for name, rule in mappings.outbound[target].fields.items()
            if rule.source is not None and rule.source in cleared}


def _outbound(record: dict[str, Any], mappings: Mappings, event: SourceEvent | None, outcome: Outcome,
              *, bumped: bool) -> None:
    """Commands for what the targets lack. Each needs a version its target has not applied yet,
    or the sinks' version guard drops it as stale: a write the record did not change for (an
    owner winning back a field edited elsewhere, a target catching up after an echo) bumps the
    version first (``bumped``: this event already did)."""
    golden = {name: slot["v"] for name, slot in record["fields"].items()}
    cleared = {name for name, value in golden.items() if value is None}
    links = record["links"]
    for target, spec in mappings.outbound.items():
        key = mappings.key_for(target, links)
        if key is None:
            continue
        key_field, key_value, exists = key
        if not exists and not mappings.may_create(target, golden, links):
            continue
        clearable = _clearable(mappings, target, cleared)
        # None stays only where it is a clear; a field the golden record never had is not written
        projection = {k: v for k, v in mappings.to_target(target, golden, links).items()
                      if v is not None or k in clearable}
        known = _known_linked(record, target, key_value) if exists else _known(record, target, "")
        # a clear differs only from a value the target is known to hold: one it never had stays as is
        diff = {k: v for k, v in projection.items() if known.get(k) != v}
        if not diff:
            continue
        # Nested objects (an address) go whole: APIs replace them rather than merge their parts.
        touched = {k.split(".", 1)[0] for k in diff if "." in k}
        payload = {k: v for k, v in projection.items() if k in diff or k.split(".", 1)[0] in touched}
        nested: dict[str, Any] = {}
        for name, value in payload.items():
            parts = name.split(".")
            node = nested
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        nested.pop(key_field, None)
        if not bumped:
            record["version"] += 1
            bumped = True
        _remember(known, payload)
        sent = record["sent"].setdefault(target, {})
        for name, value in payload.items():
            history = [v for v in sent.get(name, []) if v != value][-(SENT_HISTORY - 1):]
            sent[name] = history + [value]
        outcome.commands.append(SinkCommand(
            system=spec.system, object=spec.object, operation="upsert", external_id_field=key_field,
            external_id=key_value, fields=nested, version=record["version"], record_key=record["key"],
            source_commit_timestamp=event.commit_timestamp if event else None,
            source_event_id=event.event_id if event else None,
        ))


def apply_event(record: dict[str, Any], event: SourceEvent, mappings: Mappings, policy: Policy) -> Outcome:
    """Fold one source event into the golden record (in place); say what to write and report.

    Raises ``Uncleanable`` (topologies.customer_sync.cleansing) when a value cannot be made
    valid: the caller quarantines the event and the record stays as it was."""
    outcome = Outcome()
    if event.event_id in record["seen"]:
        outcome.duplicate = True
        return outcome
    target = f"{event.source}.{event.entity}"
    ref = source_ref(event)
    # A full-state event (TIMS, Pardot, a Salesforce create or snapshot) restates every field at
    # its commit time. A field it carries as the record's previous event showed it (an empty one
    # as never seen) was not edited then: taken as an edit, it would win last-writer-wins over a
    # newer edit made elsewhere (a TIMS user changing the payment terms would put back the city a
    # Salesforce user just changed; a new Contact with no city would clear the one TIMS has).
    # So a full-state event clears a field only when it changed from a value to empty.
    last_seen = record.get("observed", {}).get(ref, {})
    flat = _with_clears(event, _flatten(event.fields), last_seen)
    # One record's events can be merged out of order: a Contact's create, matched by email, can
    # be overtaken by its next update, found by id. A value an older event carries for a field a
    # newer event of the same record already showed is history: neither an edit (an empty one
    # would clear a value that arrived since) nor what the target holds now. Newer per field: an
    # edit of the city that waited while a later edit of the title was merged is still the latest
    # word on the city (``shown_at``: when each field was last shown; records from before it
    # count every field as shown by the record's newest event, the earlier rule).
    observed_at = record.setdefault("observed_at", {})
    shown_at = record.setdefault("shown_at", {}).setdefault(ref, {})
    newest = observed_at.get(ref, event.commit_timestamp)
    stale = event.commit_timestamp < newest
    superseded = ({name for name in flat if name in last_seen and event.commit_timestamp < shown_at.get(name, newest)}
                  if stale else set())
    # someone else's change is theirs even where it equals a value we wrote once (ADR 0014)
    ours = written_by_us(event, policy.our_clients)
    echoes = {name for name, value in flat.items() if ours is not False and _is_echo(record, target, name, value)}
    restated = {name for name, value in flat.items() if event.full_state and _unchanged(last_seen, name, value)}
    fresh = {name: value for name, value in flat.items()
             if name not in echoes and name not in restated and name not in superseded}
    # only the parts of an address that changed (a nulled address still clears every part)
    canonical = {} if event.change_type == "DELETE" else mappings.to_canonical(target, event.fields, set(fresh))
    _upgrade_known(record, mappings)
    read = _read_paths(mappings, target)
    shown = {name: value for name, value in flat.items() if name in read}
    if stale:
        told = {name: value for name, value in shown.items() if name not in superseded}
        record.setdefault("observed", {})[ref] = last_seen | told
    else:
        told = shown
        record.setdefault("observed", {})[ref] = ({} if event.full_state else dict(last_seen)) | shown
        observed_at[ref] = event.commit_timestamp
    for name in told:
        if name not in shown_at or shown_at[name] < event.commit_timestamp:
            shown_at[name] = event.commit_timestamp

    before = record["version"]
    outcome.echo_fields = sorted(echoes)
    if target in mappings.outbound:
        known = _known(record, target, event.record_id)
        # a late event tells only what nothing newer (an event, our write) has told already
        _remember(known, {name: value for name, value in flat.items() if not stale or name not in known})
    for linked in [ref, *crossrefs(event), *company_refs(event)]:
        _link(record, linked, outcome)
    _merge(record, policy, event.source, event.commit_timestamp, canonical, event.event_id, outcome)
    if outcome.changed:
        record["version"] = before + 1
    _outbound(record, mappings, event, outcome, bumped=bool(outcome.changed))
    record["seen"] = (record["seen"] + [event.event_id])[-SEEN_WINDOW:]
    return outcome


def apply_tims_link(record: dict[str, Any], tims_id: str, mappings: Mappings) -> Outcome:
    """The TIMS writer created (or found) the customer: link it and write its id back."""
    outcome = Outcome()
    _upgrade_known(record, mappings)
    _link(record, f"tims:customer:{tims_id}", outcome)
    if outcome.changed:
        record["version"] += 1
    _outbound(record, mappings, None, outcome, bumped=bool(outcome.changed))
    return outcome


def value_wins(policy: Policy, field_name: str, current: Mapping[str, Any], slot: Mapping[str, Any]) -> bool:
    """Whether ``slot`` (a field's value, system and time) wins over ``current`` by the policy."""
    return _wins(policy, field_name, current, slot["src"], slot["v"], slot["ts"])[0]


def catch_up(record: dict[str, Any], mappings: Mappings, outcome: Outcome, *, bumped: bool) -> None:
    """Commands for whatever the record's targets lack (after a merge or an unmerge of records)."""
    _upgrade_known(record, mappings)
    _outbound(record, mappings, None, outcome, bumped=bumped)
