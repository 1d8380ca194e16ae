"""Faust agents of the lists flow, thin around ``membership`` (docs/adr/0026).

    src.pardot.list_membership ─┐                 ┌ who:<Lead/Contact Id> ─► sink.salesforce.CampaignMember
    src.salesforce.CampaignMember┤                 │                         sink.pardot.list_membership
    src.tims.customer ──────────┼─ingest─► lists.merge ┤ prospect:<Pardot id>  (held until synced)
    src.tims.segment ───────────┤                 └ segment:<TIMS id> ─────► sink.salesforce.Campaign
    src.pardot.prospect ────────┤ (links, into the people map)                sink.pardot.list
    src.pardot.list ────────────┤
    src.salesforce.Campaign ────┘

``ingest`` learns links into a map every worker holds (``lists_people``): a prospect's Lead or
Contact (and back), a segment's Pardot list (by its internal name) and Campaign (by its
``TIMS_Segment_ID__c``), a CampaignMember's Campaign and person (its delete event names neither).
It sends membership events to the person's row; a list membership of a prospect not synced with
Salesforce waits in the prospect's row until it is. ``merge`` takes each system's statement and
writes what the targets do not hold yet; a person who needs a segment's list or Campaign before
they exist waits in the segment's row and is rechecked when they do.

``merge`` may run on another worker than the ``ingest`` that learned a link, and that worker's
copy of the map may not have read it yet: every message whose handling depends on a link carries
it, and ``merge`` reads the links it was told (kept on the row until its own map has them) before
its map (``topologies.told_links``; docs/adr/0026, addendum).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from faust.types import EventT

from connectors.envelope import SinkCommand, SourceEvent
from topologies.flow import BatchLike, FlowContext
from topologies.lists.membership import (
    DEFAULT_MAPPING_DIR, Change, ListsMapping, Targets, apply_change, load_mapping, new_row, reconcile,
    segment_list_name,
)
from topologies.lists.messages import MERGE, Linked, LinkedEvent, Park, Recheck
from topologies.mapping_file import ReloadsMapping
from topologies.messages import EventMessage
from topologies.origin import written_by_us
from topologies.stage import KeyedBatchStage, agent_named, read_source_event
from topologies.told_links import LinkMap, Told, remember, told_values

__all__ = ["Lists", "install", "FLOW_NAME", "SOURCE_TOPICS", "STAGE_TOPICS", "TABLES", "SINK_OBJECTS"]

FLOW_NAME = "lists"
SOURCE_TOPICS = ("src.pardot.list_membership", "src.salesforce.CampaignMember", "src.tims.customer",
                 "src.tims.segment", "src.pardot.prospect", "src.pardot.list", "src.salesforce.Campaign")
STAGE_TOPICS = (f"{FLOW_NAME}.merge",)
TABLES = ("lists", f"{FLOW_NAME}_people")
SINK_OBJECTS = ("salesforce.CampaignMember", "salesforce.Campaign", "pardot.list_membership", "pardot.list")
#: most list memberships a prospect not synced with Salesforce holds back
HELD_LIMIT = 200
_PERSON = re.compile(r"^(003|00Q)[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$")
log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _list_name_pattern(mapping: ListsMapping) -> re.Pattern[str]:
    return re.compile("^" + re.escape(mapping.segment_list_name).replace(
        re.escape("{segment_id}"), "(?P<segment>[A-Za-z0-9_.:-]+)") + "$")


def _list_ref(list_id: Any) -> str:
    return f"list:{list_id}"


def _campaign_ref(campaign: str) -> str:
    return f"campaign:{campaign[:15]}"


def _with_told(row: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    """The row with the links it keeps from its messages (``told``; absent when none)."""
    bare = {name: value for name, value in row.items() if name != "told"}
    return {**bare, "told": kept} if kept else bare


class Lists(ReloadsMapping):
    """The flow's topics, tables and stage bodies, built once per app by :func:`install`."""

    mapping_source = (load_mapping, DEFAULT_MAPPING_DIR)

    def __init__(self, ctx: FlowContext, mapping: ListsMapping) -> None:
        self.ctx = ctx
        self.mapping = mapping
        self.source_topic = ctx.topic(*SOURCE_TOPICS)
        self.merge_topic = ctx.topic(*STAGE_TOPICS)
        self.sink_topics = {name: ctx.topic(f"sink.{name}") for name in SINK_OBJECTS}
        self.table = ctx.table("lists", default=None, key_type=str)
        self.people = ctx.replicated("people")
        settings = ctx.settings
        self.our_clients = {"salesforce": settings.salesforce_client_name, "tims": settings.tims_client_name}
        self.list_name = _list_name_pattern(mapping)
        self.merge = KeyedBatchStage(ctx, "merge", MERGE, self.table, self._merge)

    def use_mapping(self, mapping: ListsMapping) -> None:
        self.mapping, self.list_name = mapping, _list_name_pattern(mapping)

    def count(self, name: str, n: int = 1) -> None:
        self.ctx.counters[name] += n

    # -- ingest ----------------------------------------------------------------------------------
    async def _link(self, ref: str, value: str) -> bool:
        if self.people.get(ref) == value:
            return False
        await self.ctx.send(*self.people.entry(ref, value))
        self.count("links")
        return True

    async def _to_merge(self, key: str, message: Any) -> None:
        await self.ctx.send(self.merge_topic, key, message.wire())

    def _known(self, *refs: str) -> dict[str, str]:
        """What this worker's map holds for these references, carried to ``merge`` (whose map may lag)."""
        return {ref: value for ref in refs if (value := self.people.get(ref)) is not None}

    async def ingest_one(self, message: EventT) -> None:
        event = await read_source_event(self.ctx, message)
        if event is None:
            return
        handler = {("pardot", "prospect"): self._prospect, ("pardot", "list"): self._pardot_list,
                   ("pardot", "list_membership"): self._list_membership, ("salesforce", "Campaign"): self._campaign,
                   ("salesforce", "CampaignMember"): self._campaign_member, ("tims", "customer"): self._customer,
                   ("tims", "segment"): self._segment}.get((event.source, event.entity))
        if handler is None:
            self.count("unrelated")
            return
        await handler(event, message.value)

    async def _prospect(self, event: SourceEvent, raw: Any) -> None:
        fields = event.fields
        who = fields.get("salesforceContactId") or fields.get("salesforceLeadId")
        if event.change_type == "DELETE" or not who:
            return
        pid, who = str(event.record_id), str(who)
        linked = await self._link(f"prospect:{pid}", who)
        if await self._link(f"who:{who}", pid) or linked:
            told = {f"prospect:{pid}": who, f"who:{who}": pid}
            await self._to_merge(f"prospect:{pid}", Linked(kind="linked", links=told))
            await self._to_merge(f"who:{who}", Recheck(kind="recheck", links=told))

    async def _pardot_list(self, event: SourceEvent, raw: Any) -> None:
        found = self.list_name.match(str(event.fields.get("name") or ""))
        if found and event.change_type != "DELETE":
            segment = found.group("segment")
            changed = await self._link(f"segment-list:{segment}", event.record_id)
            if await self._link(_list_ref(event.record_id), segment) or changed:
                told = {f"segment-list:{segment}": event.record_id, _list_ref(event.record_id): segment}
                await self._to_merge(f"segment:{segment}", Linked(kind="linked", links=told))

    async def _campaign(self, event: SourceEvent, raw: Any) -> None:
        segment = event.fields.get(self.mapping.segment_campaign_field)
        if segment:
            changed = await self._link(f"segment-campaign:{segment}", event.record_id)
            if await self._link(_campaign_ref(event.record_id), str(segment)) or changed:
                told = {f"segment-campaign:{segment}": event.record_id, _campaign_ref(event.record_id): str(segment)}
                await self._to_merge(f"segment:{segment}", Linked(kind="linked", links=told))

    async def _list_membership(self, event: SourceEvent, raw: Any) -> None:
        pid = event.fields.get("prospectId")
        if pid in (None, ""):
            await self.ctx.quarantine("ingest: list membership without prospectId", raw)
            return
        links = self._known(f"prospect:{pid}", _list_ref(event.fields.get("listId")))
        who = links.get(f"prospect:{pid}")
        if who:
            links.update(self._known(f"who:{who}"))
        await self._to_merge(f"who:{who}" if who else f"prospect:{pid}", LinkedEvent(event=raw, links=links))

    async def _campaign_member(self, event: SourceEvent, raw: Any) -> None:
        if written_by_us(event, self.our_clients) is True:
            self.count("echoes")
            return
        fields = event.fields
        campaign, who = fields.get("CampaignId"), fields.get("ContactId") or fields.get("LeadId")
        if campaign and who:
            await self._link(f"member:{event.record_id}", f"{campaign} {who}")
        else:
            campaign, _, who = (self.people.get(f"member:{event.record_id}") or " ").partition(" ")
        if not who:
            self.count("unknown_members")
            return
        links = self._known(f"member:{event.record_id}", _campaign_ref(campaign))
        await self._to_merge(f"who:{who}", LinkedEvent(event=raw, links=links))

    async def _customer(self, event: SourceEvent, raw: Any) -> None:
        who = str(event.fields.get("external_id") or "")
        if not _PERSON.match(who):
            self.count("customers_without_person")
            return
        await self.ctx.send(self.merge_topic, f"who:{who}", EventMessage(event=raw).wire())

    async def _segment(self, event: SourceEvent, raw: Any) -> None:
        await self.ctx.send(self.merge_topic, f"segment:{event.record_id}", EventMessage(event=raw).wire())

    # -- merge -----------------------------------------------------------------------------------
    async def run_merge(self, stream: Any) -> None:
        await self.people.ready()
        await self.merge.run(stream)

    async def _merge(self, batch: BatchLike, event: EventT, key: str, message: Any) -> None:
        kind = key.split(":", 1)[0]
        if kind == "who":
            await self._person(batch, event, key, message)
        elif kind == "prospect":
            await self._held(batch, event, key, message)
        elif kind == "segment":
            await self._segment_row(batch, event, key, message)
        else:
            await self.ctx.quarantine(f"merge: key {key!r} is not who:, prospect: or segment:", message.wire())

    def _told(self, row: dict[str, Any], message: Any) -> tuple[dict[str, Any], Told]:
        """The links the row keeps with those the message carries, and the map to read them in
        first: this worker's copy may not have read them yet (docs/adr/0026, addendum)."""
        kept = remember(row.get("told", {}), getattr(message, "links", {}), self.people, _now_ms())
        return kept, Told(told_values(kept), self.people)

    def targets(self, who: str, audience: str, people: LinkMap) -> Targets:
        prospect = people.get(f"who:{who}")
        if audience.startswith("link:"):
            _, list_id, campaign = audience.split(":")
            return Targets(int(list_id), campaign, int(prospect) if prospect else None)
        segment = audience.removeprefix("segment:")
        list_id = people.get(f"segment-list:{segment}")
        return Targets(int(list_id) if list_id else None, people.get(f"segment-campaign:{segment}"),
                       int(prospect) if prospect else None)

    def changes(self, row: dict[str, Any], event: SourceEvent, people: LinkMap) -> list[Change]:
        """What one source event says about the person's audiences."""
        fields, stamp = event.fields, event.commit_timestamp
        if event.entity == "list_membership":
            list_id = int(fields.get("listId") or 0)
            segment = people.get(_list_ref(list_id))
            audience = self.mapping.audience_of_list(list_id) or (f"segment:{segment}" if segment else None)
            opted_out = bool(fields.get("optedOut"))
            member = event.change_type != "DELETE" and not fields.get("isDeleted") and not opted_out
            return [Change("pardot", audience, member, stamp, opted_out)] if audience else []
        if event.entity == "CampaignMember":
            campaign = fields.get("CampaignId") or (people.get(f"member:{event.record_id}") or "").partition(" ")[0]
            segment = people.get(_campaign_ref(campaign))
            audience = self.mapping.audience_of_campaign(campaign) or (f"segment:{segment}" if segment else None)
            return [Change("salesforce", audience, event.change_type != "DELETE", stamp)] if audience else []
        now = {f"segment:{s}" for s in (fields.get("segment_ids") or []) if isinstance(s, str)}
        if event.change_type == "DELETE":
            now = set()
        was = {a for a, state in row["audiences"].items() if a.startswith("segment:") and state["member"]}
        return [Change("tims", audience, audience in now, stamp) for audience in sorted(now | was)]

    async def _person(self, batch: BatchLike, event: EventT, key: str, message: Any) -> None:
        row = batch.get(self.table, key, event) or new_row(key)
        kept, people = self._told(row, message)
        if isinstance(message, Recheck):
            touched = list(row["audiences"])
        elif isinstance(message, EventMessage):
            source_event = SourceEvent.model_validate(message.event)
            touched = []
            for change in self.changes(row, source_event, people):
                if apply_change(row, change):
                    touched.append(change.audience)
                else:
                    self.count("stale")
        else:
            await self.ctx.quarantine(f"merge: {message.kind} sent to a person", message.wire())
            return
        waiting = set(row["waiting"])
        # After a recheck the person parks again under every segment it still waits for: the
        # segment's row let go of it when it sent the recheck (parking twice is harmless).
        parked = set() if isinstance(message, Recheck) else set(waiting)
        for audience in touched:
            outcome = reconcile(row, audience, self.targets(row["who"], audience, people), self.mapping, _now_ms())
            await self._publish(batch, outcome.commands)
            for segment_audience in outcome.wait_for:
                if segment_audience not in parked and segment_audience.startswith("segment:"):
                    await batch.send(self.merge_topic, segment_audience, Park(kind="park", who=row["who"]).wire())
                    parked.add(segment_audience)
                waiting.add(segment_audience)
            if not outcome.wait_for:
                waiting.discard(audience)
        row["waiting"] = sorted(waiting)
        batch.put(self.table, key, _with_told(row, kept), event)

    async def _publish(self, batch: BatchLike, commands: list[SinkCommand]) -> None:
        for command in commands:
            await batch.send(self.sink_topics[f"{command.system}.{command.object}"], command.partition_key,
                             command.model_dump(mode="json"))
            self.ctx.metrics.command_out(command.system, command.object, command.source_commit_timestamp)
        self.count("commands", len(commands))

    async def _held(self, batch: BatchLike, event: EventT, key: str, message: Any) -> None:
        """A prospect's list memberships, held until Pardot links it to a Lead or Contact."""
        row = batch.get(self.table, key, event) or {"held": []}
        kept, people = self._told(row, message)
        who = people.get(key)
        held = list(row["held"])
        if isinstance(message, EventMessage):
            if len(held) >= HELD_LIMIT and not who:
                await self.ctx.quarantine(f"merge: {key} is not synced with Salesforce and already holds "
                                          f"{HELD_LIMIT} list memberships back", message.event)
                return
            held.append(message.event)
        if who:
            for raw in held:
                refs = (key, f"who:{who}", _list_ref((raw.get("fields") or {}).get("listId")))
                links = {ref: value for ref in refs if (value := people.get(ref)) is not None}
                await batch.send(self.merge_topic, f"who:{who}", LinkedEvent(event=raw, links=links).wire())
            self.count("released", len(held))
            held = []
        batch.put(self.table, key, _with_told({"held": held}, kept), event)

    async def _segment_row(self, batch: BatchLike, event: EventT, key: str, message: Any) -> None:
        row = batch.get(self.table, key, event) or {"version": 0, "waiting": []}
        kept, people = self._told(row, message)
        segment = key.removeprefix("segment:")
        list_id, campaign = people.get(f"segment-list:{segment}"), people.get(f"segment-campaign:{segment}")
        waiting = list(row["waiting"])
        if isinstance(message, EventMessage):
            await self._publish_segment(batch, row, SourceEvent.model_validate(message.event))
        elif isinstance(message, Park) and message.who not in waiting:
            if len(waiting) >= self.mapping.waiting_limit:
                await self.ctx.quarantine(f"merge: more than {self.mapping.waiting_limit} people wait for {key}",
                                          message.wire())
            else:
                waiting.append(message.who)
        if list_id and campaign and waiting:
            released = Recheck(kind="recheck", links={
                f"segment-list:{segment}": list_id, _list_ref(list_id): segment,
                f"segment-campaign:{segment}": campaign, _campaign_ref(campaign): segment}).wire()
            for who in waiting:
                await batch.send(self.merge_topic, f"who:{who}", released)
            self.count("released", len(waiting))
            waiting = []
        batch.put(self.table, key, _with_told({**row, "waiting": waiting}, kept), event)

    async def _publish_segment(self, batch: BatchLike, row: dict[str, Any], event: SourceEvent) -> None:
        """A TIMS segment as a Campaign and a Pardot list, each written when the segment changes."""
        version = event.fields.get("version")
        if not self.mapping.publish_segments or type(version) is not int or version <= row["version"]:
            self.count("stale")
            return
        row["version"] = version
        name, description = event.fields.get("name"), event.fields.get("description")
        active = event.change_type != "DELETE"
        campaign = SinkCommand(system="salesforce", object="Campaign", external_id_field=self.mapping.segment_campaign_field,
                               external_id=event.record_id, version=version, record_key=f"segment:{event.record_id}",
                               fields={"IsActive": active, **({"Name": name, "Description": description} if active else {})},
                               source_commit_timestamp=event.commit_timestamp)
        commands = [campaign]
        if active:
            commands.append(SinkCommand(
                system="pardot", object="list", external_id_field="name",
                external_id=segment_list_name(self.mapping, event.record_id), version=version,
                record_key=f"segment:{event.record_id}", fields={"title": name, "description": description},
                source_commit_timestamp=event.commit_timestamp))
        await self._publish(batch, commands)


def install(ctx: FlowContext) -> Lists:
    """Build the flow on ``ctx.app``: its mapping (validated now), topics, tables and agents."""
    flow = Lists(ctx, load_mapping(ctx.mappings_dir(DEFAULT_MAPPING_DIR)))
    # ingest keeps no table: it runs outside Faust's per-message path (docs/adr/0028)
    ctx.direct("ingest", flow.source_topic, flow.ingest_one, before=flow.people.ready)
    for name, topic, body in (("merge", flow.merge_topic, flow.run_merge),):
        ctx.app.agent(topic, name=f"topologies.{FLOW_NAME}.agents.{name}", concurrency=1)(agent_named(body, name))
    return flow
