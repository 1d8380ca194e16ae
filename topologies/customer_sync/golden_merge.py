"""Merging two golden records found to be one person, and undoing it (docs/adr/0036).

The survivor folds the duplicate in: each field by the conflict policy (``golden.value_wins``:
ownership, then last writer, then the tie-break), links the survivor lacks, every reference,
what each target record is known to hold. It remembers, under ``absorbed[<duplicate key>]``,
what it was before and what it took, so an unmerge gives back exactly that: a field taken from
the duplicate and not edited since returns to the survivor's old value; one edited since stays.

The duplicate keeps its record, marked ``merged_into``; its late events are forwarded to the
survivor. Other systems are told what can be said safely: where both had a TIMS customer, the
duplicate's is set inactive (the contract's ``status``), and active again on unmerge; two
Salesforce records stay as they are (merging them is Salesforce's own, destructive operation),
both linked to the survivor and named in the audit record.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from connectors.envelope import SinkCommand
from topologies.customer_sync.golden import SEEN_WINDOW, SENT_HISTORY, Outcome, Policy, catch_up, value_wins
from topologies.customer_sync.mapping import Mappings

__all__ = ["MergeReport", "absorb", "unmerge", "restore", "merged_into", "TIMS_LINK"]

TIMS_LINK = "tims_customer"


@dataclass
class MergeReport:
    """What a merge or an unmerge did: ids and field names only (it goes to ``audit.merges``)."""

    action: str
    merge_id: str
    survivor: str
    duplicate: str
    fields: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    #: links both records had: link → [survivor's id, duplicate's id]
    duplicates: dict[str, list[str]] = field(default_factory=dict)
    tims_marked: str | None = None
    by: str = "unknown"

    def audit(self, at_ms: int) -> dict[str, Any]:
        return {"action": self.action, "merge_id": self.merge_id, "survivor": self.survivor,
                "duplicate": self.duplicate, "fields": sorted(self.fields), "links": self.links,
                "duplicates": self.duplicates, "tims_marked": self.tims_marked, "by": self.by, "at": at_ms}


def merged_into(record: dict[str, Any] | None) -> str | None:
    """The survivor a record was merged into, if it was."""
    marker = (record or {}).get("merged_into")
    return str(marker["into"]) if marker else None


def _tims_status(record: dict[str, Any], tims_id: str, status: str, version: int) -> SinkCommand:
    return SinkCommand(system="tims", object="customer", operation="upsert", external_id_field="customer_id",
                       external_id=tims_id, fields={"status": status}, version=version, record_key=record["key"],
                       source_event_id=f"merge-status:{tims_id}:{status}:{version}")


def _clear_links(record: dict[str, Any], mappings: Mappings, links: list[str]) -> list[SinkCommand]:
    """Commands emptying the target fields that carried links given back (a TIMS id written to the
    survivor's Contact while merged): ordinary writes never clear a link."""
    commands = []
    for target, spec in mappings.outbound.items():
        key = mappings.key_for(target, record["links"])
        if key is None or not key[2]:
            continue
        key_field, key_value, _ = key
        fields = {name: None for name, rule in spec.fields.items() if rule.link in links and name != key_field}
        if not fields:
            continue
        record["known"].setdefault(f"{target}:{key_value}", {}).update(fields)
        commands.append(SinkCommand(system=spec.system, object=spec.object, operation="upsert",
                                    external_id_field=key_field, external_id=key_value, fields=fields,
                                    version=record["version"], record_key=record["key"]))
    return commands


def _union_state(survivor: dict[str, Any], duplicate: dict[str, Any]) -> list[str]:
    """References, known target records, sent values and observations of the duplicate that the
    survivor lacks; returns the known-record keys taken (an unmerge gives them back)."""
    for ref in duplicate.get("refs", []):
        if ref not in survivor["refs"]:
            survivor["refs"].append(ref)
    taken_known = [name for name in duplicate.get("known", {}) if name not in survivor["known"]]
    for name in taken_known:
        survivor["known"][name] = copy.deepcopy(duplicate["known"][name])
    for target, fields in duplicate.get("sent", {}).items():
        mine = survivor["sent"].setdefault(target, {})
        for name, values in fields.items():
            mine[name] = ([v for v in mine.get(name, []) if v not in values] + list(values))[-SENT_HISTORY:]
    for part in ("observed", "observed_at", "shown_at"):
        for ref, value in duplicate.get(part, {}).items():
            survivor.setdefault(part, {}).setdefault(ref, copy.deepcopy(value))
    survivor["seen"] = (survivor["seen"] + [e for e in duplicate.get("seen", []) if e not in survivor["seen"]])[-SEEN_WINDOW:]
    return taken_known


def absorb(survivor: dict[str, Any], duplicate: dict[str, Any], policy: Policy, mappings: Mappings,
           merge_id: str, by: str = "unknown") -> tuple[Outcome, MergeReport]:
    """Fold ``duplicate`` (its record as it was when merged) into ``survivor``, in place."""
    report = MergeReport("merge", merge_id, survivor["key"], duplicate["key"], by=by)
    outcome = Outcome()
    if duplicate["key"] in survivor.setdefault("absorbed", {}):
        return outcome, report  # a redone merge: already folded in
    before = {"fields": copy.deepcopy(survivor["fields"]), "links": dict(survivor["links"]), "refs": list(survivor["refs"])}
    taken: dict[str, Any] = {}
    for name, slot in duplicate.get("fields", {}).items():
        current = survivor["fields"].get(name)
        if current is None or (current["v"] != slot["v"] and value_wins(policy, name, current, slot)):
            if current is None and slot["v"] is None:
                continue
            survivor["fields"][name] = dict(slot)
            taken[name] = dict(slot)
    for link, record_id in duplicate.get("links", {}).items():
        mine = survivor["links"].get(link)
        if not mine:
            survivor["links"][link] = record_id
            report.links[link] = record_id
        elif mine != record_id:
            report.duplicates[link] = [mine, record_id]
    taken_known = _union_state(survivor, duplicate)
    survivor["version"] = max(survivor["version"], duplicate.get("version", 0)) + 1
    catch_up(survivor, mappings, outcome, bumped=True)
    if TIMS_LINK in report.duplicates:
        report.tims_marked = report.duplicates[TIMS_LINK][1]
        outcome.commands.append(_tims_status(survivor, report.tims_marked, "inactive", survivor["version"]))
    email = (duplicate.get("fields", {}).get("email") or {}).get("v")
    survivor["absorbed"][duplicate["key"]] = {
        "merge_id": merge_id, "before": before, "fields": taken, "links": report.links, "known": taken_known,
        "refs": [ref for ref in duplicate.get("refs", []) if ref not in before["refs"]], "email": email,
        "tims_marked": report.tims_marked}
    report.fields = sorted(taken)
    return outcome, report


def unmerge(survivor: dict[str, Any], merge_id: str, mappings: Mappings,
            by: str = "unknown") -> tuple[Outcome, MergeReport, dict[str, Any]] | None:
    """Give back what merge ``merge_id`` took; None when the survivor holds no such merge. Returns
    the commands, the report and the absorbed entry (its ``refs`` and ``email`` go back to the
    duplicate in the identity index)."""
    found = next(((key, entry) for key, entry in survivor.get("absorbed", {}).items()
                  if entry["merge_id"] == merge_id), None)
    if found is None:
        return None
    duplicate_key, entry = found
    report = MergeReport("unmerge", merge_id, survivor["key"], duplicate_key, by=by)
    before = entry["before"]
    for name, slot in entry["fields"].items():
        if survivor["fields"].get(name) == slot:  # not edited since the merge
            if name in before["fields"]:
                survivor["fields"][name] = before["fields"][name]
            else:
                survivor["fields"].pop(name, None)
            report.fields.append(name)
    for link, record_id in entry["links"].items():
        if survivor["links"].get(link) == record_id:
            survivor["links"].pop(link)
            report.links[link] = record_id
    survivor["refs"] = [ref for ref in survivor["refs"] if ref not in entry["refs"]]
    for name in entry["known"]:
        survivor["known"].pop(name, None)
    for part in ("observed", "observed_at", "shown_at"):
        for ref in entry["refs"]:
            survivor.get(part, {}).pop(ref, None)
    del survivor["absorbed"][duplicate_key]
    survivor["version"] += 1
    outcome = Outcome()
    catch_up(survivor, mappings, outcome, bumped=True)
    outcome.commands.extend(_clear_links(survivor, mappings, list(report.links)))
    if entry.get("tims_marked"):
        report.tims_marked = entry["tims_marked"]
        outcome.commands.append(_tims_status(survivor, entry["tims_marked"], "active", survivor["version"]))
    return outcome, report, entry


def restore(duplicate: dict[str, Any], merge_id: str, version: int, mappings: Mappings) -> Outcome:
    """The duplicate is a customer of its own again: every field written to its records anew, at a
    version above what the survivor wrote to them while merged (``version``)."""
    outcome = Outcome()
    marker = duplicate.get("merged_into") or {}
    if marker.get("merge_id") != merge_id:
        return outcome
    del duplicate["merged_into"]
    duplicate["version"] = max(duplicate["version"], version) + 1
    duplicate["known"] = {}  # what the survivor wrote there meanwhile is unknown here: write it all
    catch_up(duplicate, mappings, outcome, bumped=True)
    return outcome
