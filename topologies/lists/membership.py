"""Audience membership of one person across Pardot lists, Salesforce Campaigns and TIMS segments.

Pure: no Kafka, no Faust. An *audience* is a Pardot list linked to a Salesforce Campaign by the
mapping (``link:<list id>:<Campaign Id>``), or a TIMS segment published as a Pardot list and a
Campaign (``segment:<segment id>``). A person's row (table ``lists``, key ``who:<Lead or
Contact Id>``) keeps per audience whether the person is a member, what each target is known to
hold, and the time of the last change taken from each system.

Removal semantics (docs/adr/0026):

- a linked list and Campaign follow each other both ways: an add or a removal in either is made
  in the other; a prospect who opted out of the list in Pardot counts as removed (its
  CampaignMember is deleted) and is never removed from the Pardot list by us, so the opt-out stays
  on record;
- a segment's list and Campaign follow TIMS, which owns segment membership: a customer added
  to or removed from the segment in TIMS is added to or removed from both; an add or removal
  made in Pardot or Salesforce to a segment's list or Campaign is not carried to TIMS and is
  written back over, as an owner's value wins back a field edited elsewhere (ADR 0009); a Pardot
  opt-out stays an opt-out.

An event older than the last change taken from its system for that audience is stale. What a
target is known to hold decides the writes, so our own writes coming back change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.envelope import SinkCommand
from topologies.mapping_file import load_model

__all__ = ["ListLink", "ListsMapping", "load_mapping", "new_row", "Change", "Targets", "Outcome", "apply_change",
           "reconcile", "member_key", "segment_list_name", "DEFAULT_MAPPING_DIR", "TARGETS"]

DEFAULT_MAPPING_DIR = Path(__file__).with_name("mappings")
System = Literal["pardot", "salesforce", "tims"]
TARGETS = ("pardot", "salesforce")


class ListLink(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pardot_list: int = Field(ge=1)
    campaign: str = Field(pattern=r"^701[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$")


class ListsMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Pardot lists kept in step with Campaigns, both ways
    links: tuple[ListLink, ...] = ()
    #: publish every TIMS segment as a Pardot list and a Campaign
    publish_segments: bool = True
    #: the Pardot list's internal name for a segment (its key: never rename it in Pardot)
    segment_list_name: str = "TIMS segment {segment_id}"
    #: a Campaign's external-id field for the segment it publishes
    segment_campaign_field: str = "TIMS_Segment_ID__c"
    #: CampaignMember's external-id field for the members we add (``<Campaign Id>:<Lead/Contact Id>``)
    member_key_field: str = "Connect_Member_Key__c"
    member_status: str = "Sent"
    #: people one segment may keep waiting for its list and Campaign; the next is quarantined
    waiting_limit: int = Field(default=10_000, ge=1)

    @model_validator(mode="after")
    def _unique(self) -> "ListsMapping":
        lists = [link.pardot_list for link in self.links]
        campaigns = [link.campaign[:15] for link in self.links]
        if len(set(lists)) != len(lists) or len(set(campaigns)) != len(campaigns):
            raise ValueError("a Pardot list or a Campaign is linked twice")
        if "{segment_id}" not in self.segment_list_name:
            raise ValueError("segment_list_name must contain {segment_id}")
        return self

    def audience_of_list(self, list_id: int) -> str | None:
        return next((f"link:{k.pardot_list}:{k.campaign}" for k in self.links if k.pardot_list == list_id), None)

    def audience_of_campaign(self, campaign: str) -> str | None:
        return next((f"link:{k.pardot_list}:{k.campaign}" for k in self.links if k.campaign[:15] == campaign[:15]),
                    None)


def load_mapping(directory: Path) -> ListsMapping:
    return load_model(directory / "lists.yaml", ListsMapping)


def segment_list_name(mapping: ListsMapping, segment_id: str) -> str:
    return mapping.segment_list_name.format(segment_id=segment_id)


def member_key(campaign: str, who: str) -> str:
    return f"{campaign}:{who}"


def new_row(key: str) -> dict[str, Any]:
    return {"who": key.removeprefix("who:"), "audiences": {}, "waiting": [], "version": 0}


@dataclass(frozen=True)
class Change:
    """One system says the person is (or is not) a member of an audience, at ``stamp`` (epoch ms)."""

    system: System
    audience: str
    member: bool
    stamp: int
    #: Pardot: the prospect opted out of the list
    opted_out: bool = False


@dataclass(frozen=True)
class Targets:
    """Where an audience's members are written: its list and Campaign (None: not known yet) and
    the person's Pardot prospect (None: not in Pardot)."""

    pardot_list: int | None
    campaign: str | None
    prospect: int | None


@dataclass
class Outcome:
    commands: list[SinkCommand] = field(default_factory=list)
    stale: bool = False
    #: segments whose list or Campaign is not known yet: the person waits for them
    wait_for: list[str] = field(default_factory=list)


def _authoritative(audience: str, system: str) -> bool:
    """Who may change an audience's membership: both targets for a linked list, TIMS for a segment."""
    return system == "tims" if audience.startswith("segment:") else system in TARGETS


def apply_change(row: dict[str, Any], change: Change) -> bool:
    """Take one system's statement; False when it is older than what was taken from that system."""
    state = row["audiences"].get(change.audience) or {"member": False, "held": {}, "stamps": {}, "opted_out": False}
    if change.stamp < state["stamps"].get(change.system, 0):
        return False
    state["stamps"] = {**state["stamps"], change.system: change.stamp}
    if change.system in TARGETS:
        state["held"] = {**state["held"], change.system: change.member}
    if change.system == "pardot":
        state["opted_out"] = change.opted_out
    if _authoritative(change.audience, change.system):
        state["member"] = change.member
    row["audiences"] = {**row["audiences"], change.audience: state}
    return True


def reconcile(row: dict[str, Any], audience: str, targets: Targets, mapping: ListsMapping, now_ms: int) -> Outcome:
    """The writes that bring each target in line with the membership, where the target is known.
    Each write carries the row's next version, so an add after a removal is never taken for a
    replay of the first add by the sinks' version guard."""
    outcome = Outcome()
    version = row.get("version", 0) + 1
    state = row["audiences"].get(audience)
    if state is None:
        return outcome
    held = dict(state["held"])
    want = state["member"]
    if held.get("salesforce", False) != want:
        if targets.campaign is None:
            outcome.wait_for.append(audience)
        else:
            outcome.commands.append(_campaign_member(row["who"], targets.campaign, want, mapping, version))
            held["salesforce"] = want
    pardot_wants_write = held.get("pardot", False) != want and not (not want and state["opted_out"])
    if pardot_wants_write and targets.prospect is not None:
        if targets.pardot_list is None:
            outcome.wait_for.append(audience)
        else:
            outcome.commands.append(_list_member(row["who"], targets.pardot_list, targets.prospect, want, version))
            held["pardot"] = want
    if outcome.commands:
        row["version"] = version
    if held != state["held"]:
        stamps = {**state["stamps"], **{system: now_ms for system in TARGETS if held.get(system) != state["held"].get(system)}}
        row["audiences"] = {**row["audiences"], audience: {**state, "held": held, "stamps": stamps}}
    outcome.wait_for = sorted(set(outcome.wait_for))
    return outcome


def _campaign_member(who: str, campaign: str, add: bool, mapping: ListsMapping, version: int) -> SinkCommand:
    person = "ContactId" if who.startswith("003") else "LeadId"
    fields = {"CampaignId": campaign, person: who, "Status": mapping.member_status} if add else {}
    return SinkCommand(system="salesforce", object="CampaignMember", operation="upsert" if add else "delete",
                       external_id_field=mapping.member_key_field, external_id=member_key(campaign, who),
                       fields=fields, version=version, record_key=f"who:{who}")


def _list_member(who: str, list_id: int, prospect: int, add: bool, version: int) -> SinkCommand:
    return SinkCommand(system="pardot", object="list_membership", operation="upsert" if add else "delete",
                       external_id_field="listId:prospectId", external_id=f"{list_id}:{prospect}",
                       fields={"listId": list_id, "prospectId": prospect}, version=version,
                       record_key=f"who:{who}")


#: ``resolve(audience)`` → where that audience's members go, for this person
Resolve = Callable[[str], Targets]
