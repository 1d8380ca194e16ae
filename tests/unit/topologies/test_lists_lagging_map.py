"""The lists flow across workers whose copies of the replicated ``people`` map differ for a moment:
a link that ``ingest`` learned on one worker and told ``merge`` about in a message must count on
the worker that runs ``merge``, even when that worker's copy has not read the link yet
(docs/adr/0026, addendum). Each test plays one place where ``merge`` decides by the map.

Worker ``a`` runs ``ingest`` and has read every link it wrote; ``b`` (and ``c``, when a second
lagging worker is needed) has read only what a test gives it, and never catches up."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, Callable

from connectors.envelope import SourceEvent
from tests.support.lagging_maps import Batch, Bus, Context, MapCopy
from topologies.lists import agents
from topologies.lists.membership import DEFAULT_MAPPING_DIR, ListsMapping, load_mapping
from topologies.told_links import KEEP_MS, Told, remember

CONTACT, PROSPECT = "003000000000001AAA", 1001
CAMPAIGN, CAMPAIGN2, LIST, LIST2 = "701000000000001AAA", "701000000000003AAA", 2001, 2003
SEGMENT, SEGMENT_LIST, SEGMENT_CAMPAIGN = "SEG000001", 2002, "701000000000002AAA"
MAPPING = ListsMapping.model_validate({**load_mapping(DEFAULT_MAPPING_DIR).model_dump(), "links": [
    {"pardot_list": LIST, "campaign": CAMPAIGN}, {"pardot_list": LIST2, "campaign": CAMPAIGN2}]})
MERGE = "lists.merge"


class Workers:
    """Workers ``a`` (every link it learns), ``b`` and ``c`` (only the links given); ``owner``
    names the worker that runs ``merge`` for a key (``b`` unless a test says otherwise)."""

    def __init__(self, b: dict[str, str] | None = None, owner: Callable[[str], str] = lambda key: "b") -> None:
        self.bus, self.owner, tables = Bus(), owner, {}
        self.on = {name: agents.Lists(Context(agents.FLOW_NAME, self.bus, tables, MapCopy(values, "lists_people")), MAPPING)
                   for name, values in (("a", {}), ("b", b or {}), ("c", {}))}
        self.table = self.on["a"].table

    async def ingest(self, value: dict[str, Any], on: str = "a") -> None:
        await self.on[on].ingest_one(SimpleNamespace(key=None, value=value))
        await self.deliver()

    async def deliver(self) -> None:
        """Every queued ``merge`` message to the worker that owns its key, until none is left."""
        for _ in range(1_000):
            pending = [item for item in self.bus.queue if item[0] == MERGE]
            if not pending:
                return
            self.bus.queue.remove(pending[0])
            _, key, value = pending[0]
            worker = self.on[self.owner(key)]
            await worker.merge.one(Batch(worker.ctx), SimpleNamespace(key=key.encode(), value=value))
        raise AssertionError("merge never went quiet")

    def writes(self, target: str) -> list[tuple[str, str]]:
        """``(operation, external id)`` of the commands sent to ``sink.<target>``, in order."""
        return [(value["operation"], value["external_id"]) for name, key, value in self.bus.queue
                if name == f"sink.{target}"]


_n = iter(range(1, 1_000_000))


def event(source: str, entity: str, record_id: Any, change: str = "UPDATE", **fields: Any) -> dict[str, Any]:
    """A source event committed now (the flow stamps its own writes with its clock)."""
    n = next(_n)
    return SourceEvent(event_id=f"e{n}", source=source, entity=entity, record_id=str(record_id),  # type: ignore[arg-type]
                       change_type=change, fields=fields, commit_timestamp=int(time.time() * 1000) + n
                       ).model_dump(mode="json")


def prospect_synced() -> dict[str, Any]:
    return event("pardot", "prospect", PROSPECT, salesforceContactId=CONTACT)


def on_list(list_id: int, membership: int, **fields: Any) -> dict[str, Any]:
    return event("pardot", "list_membership", membership, "CREATE", listId=list_id, prospectId=PROSPECT, **fields)


def member(record_id: str, campaign: str, change: str = "CREATE") -> dict[str, Any]:
    fields = {"CampaignId": campaign, "ContactId": CONTACT} if change != "DELETE" else {}
    return event("salesforce", "CampaignMember", record_id, change, **fields)


async def segment_published(workers: Workers) -> None:
    """The segment's Pardot list and Campaign come back from the sinks: ``ingest`` on ``a`` links them."""
    await workers.ingest(event("pardot", "list", SEGMENT_LIST, "CREATE", name=f"TIMS segment {SEGMENT}"))
    await workers.ingest(event("salesforce", "Campaign", SEGMENT_CAMPAIGN, "CREATE", TIMS_Segment_ID__c=SEGMENT))


def in_segment(*segments: str) -> dict[str, Any]:
    return event("tims", "customer", "C000001", external_id=CONTACT, segment_ids=list(segments))


def segments_on_a(key: str) -> str:
    """Segment rows on ``a`` (it has read the segment's links), people on ``b`` (it has not)."""
    return "a" if key.startswith("segment:") else "b"


def run(test: Callable[[], Any]) -> None:
    asyncio.run(test())


# -- a prospect's held list memberships ---------------------------------------------------------
def test_held_memberships_are_released_by_a_link_the_holding_worker_has_not_read() -> None:
    async def play() -> None:
        workers = Workers()
        await workers.ingest(on_list(LIST, 3001))
        assert workers.table[f"prospect:{PROSPECT}"]["held"], "not synced with Salesforce yet: held"
        await workers.ingest(prospect_synced())
        assert workers.writes("salesforce.CampaignMember") == [("upsert", f"{CAMPAIGN}:{CONTACT}")]
        assert workers.table[f"prospect:{PROSPECT}"]["held"] == [] and workers.bus.quarantined == []

    run(play)


def test_a_membership_held_after_the_link_was_told_is_released_at_once() -> None:
    async def play() -> None:
        workers = Workers()
        await workers.ingest(prospect_synced())
        # ingest on c has not read the prospect's link either: the membership goes to the prospect's row
        await workers.ingest(on_list(LIST, 3001), on="c")
        assert workers.writes("salesforce.CampaignMember") == [("upsert", f"{CAMPAIGN}:{CONTACT}")]

    run(play)


# -- a person's prospect ---------------------------------------------------------------------
def test_a_person_rechecked_for_its_prospect_writes_the_pardot_side_and_keeps_the_link() -> None:
    async def play() -> None:
        workers = Workers()
        await workers.ingest(member("00v000000000001AAA", CAMPAIGN))
        assert workers.writes("pardot.list_membership") == [], "no prospect yet: nothing to write in Pardot"
        await workers.ingest(prospect_synced())
        assert workers.writes("pardot.list_membership") == [("upsert", f"{LIST}:{PROSPECT}")]
        # the next event for the person, before b's map has the prospect: the row kept what it was told
        await workers.ingest(member("00v000000000002AAA", CAMPAIGN2))
        assert workers.writes("pardot.list_membership")[1:] == [("upsert", f"{LIST2}:{PROSPECT}")]

    run(play)


# -- a CampaignMember's Campaign and person (its delete names neither) ------------------------------
def test_a_campaign_member_deleted_is_removed_from_the_list_by_a_worker_without_the_member_link() -> None:
    async def play() -> None:
        workers = Workers(b={f"who:{CONTACT}": str(PROSPECT)})
        await workers.ingest(member("00v000000000001AAA", CAMPAIGN))
        await workers.ingest(member("00v000000000001AAA", CAMPAIGN, "DELETE"))
        assert workers.writes("pardot.list_membership") == [("upsert", f"{LIST}:{PROSPECT}"),
                                                            ("delete", f"{LIST}:{PROSPECT}")]

    run(play)


# -- a segment's list and Campaign -------------------------------------------------------------
def test_people_waiting_for_a_segment_are_released_by_links_the_segment_worker_has_not_read() -> None:
    async def play() -> None:
        workers = Workers(b={f"who:{CONTACT}": str(PROSPECT)})
        await workers.ingest(in_segment(SEGMENT))
        assert workers.table[f"segment:{SEGMENT}"]["waiting"] == [CONTACT]
        await segment_published(workers)
        assert workers.writes("salesforce.CampaignMember") == [("upsert", f"{SEGMENT_CAMPAIGN}:{CONTACT}")]
        assert workers.writes("pardot.list_membership") == [("upsert", f"{SEGMENT_LIST}:{PROSPECT}")]
        assert workers.table[f"who:{CONTACT}"]["waiting"] == [] and workers.bus.quarantined == []

    run(play)


def test_a_recheck_that_still_leaves_the_person_waiting_parks_it_again() -> None:
    async def play() -> None:
        workers = Workers(b={f"who:{CONTACT}": str(PROSPECT)}, owner=segments_on_a)
        await workers.ingest(in_segment(SEGMENT))
        # the segment row lets go of the person with a recheck of the version before links were
        # carried (in flight across an upgrade): b still finds no list or Campaign
        segment_row = workers.table[f"segment:{SEGMENT}"]
        assert segment_row["waiting"] == [CONTACT]
        workers.table[f"segment:{SEGMENT}"] = {**segment_row, "waiting": []}
        await segment_published(workers)
        workers.bus.queue.append((MERGE, f"who:{CONTACT}", {"kind": "recheck"}))
        await workers.deliver()
        assert workers.writes("salesforce.CampaignMember") == [("upsert", f"{SEGMENT_CAMPAIGN}:{CONTACT}")]
        assert workers.writes("pardot.list_membership") == [("upsert", f"{SEGMENT_LIST}:{PROSPECT}")]

    run(play)


def test_an_add_to_a_segments_list_in_pardot_is_written_back_over_by_a_worker_without_the_list_link() -> None:
    async def play() -> None:
        workers = Workers(b={f"who:{CONTACT}": str(PROSPECT)}, owner=segments_on_a)
        await segment_published(workers)
        await workers.ingest(prospect_synced())
        await workers.ingest(on_list(SEGMENT_LIST, 3001))
        # TIMS owns the segment and the person is not in it: the add is taken back
        assert workers.writes("pardot.list_membership") == [("delete", f"{SEGMENT_LIST}:{PROSPECT}")]

    run(play)


def test_an_add_to_a_segments_campaign_is_written_back_over_by_a_worker_without_the_campaign_link() -> None:
    async def play() -> None:
        workers = Workers(b={f"who:{CONTACT}": str(PROSPECT)}, owner=segments_on_a)
        await segment_published(workers)
        await workers.ingest(member("00v000000000001AAA", SEGMENT_CAMPAIGN))
        assert workers.writes("salesforce.CampaignMember") == [("delete", f"{SEGMENT_CAMPAIGN}:{CONTACT}")]

    run(play)


def test_an_opt_out_of_a_segments_list_is_kept_by_a_worker_that_was_told_the_list_by_a_recheck() -> None:
    async def play() -> None:
        workers = Workers(owner=segments_on_a)
        await workers.ingest(prospect_synced())
        await workers.ingest(in_segment(SEGMENT))
        await segment_published(workers)
        assert workers.writes("pardot.list_membership") == [("upsert", f"{SEGMENT_LIST}:{PROSPECT}")]
        # the prospect opts out in Pardot; the ingest that reads it (c) knows no link at all
        await workers.ingest(on_list(SEGMENT_LIST, 3001, optedOut=True), on="c")
        assert workers.table[f"who:{CONTACT}"]["audiences"][f"segment:{SEGMENT}"]["opted_out"] is True
        await workers.ingest(in_segment())
        # removed from the segment in TIMS: the CampaignMember goes, the opt-out stays on the list
        assert workers.writes("salesforce.CampaignMember")[-1] == ("delete", f"{SEGMENT_CAMPAIGN}:{CONTACT}")
        assert ("delete", f"{SEGMENT_LIST}:{PROSPECT}") not in workers.writes("pardot.list_membership")

    run(play)


# -- what a row keeps ---------------------------------------------------------------------------
def test_a_row_keeps_a_told_link_until_its_map_has_it_or_has_long_held_another() -> None:
    lagging = MapCopy()
    kept = remember({}, {"who:X": "1"}, lagging, 1_000)
    assert Told({ref: entry[0] for ref, entry in kept.items()}, lagging).get("who:X") == "1"
    assert remember(kept, {}, lagging, 1_000 + 10 * KEEP_MS) == kept, "the map has nothing yet: keep it"
    assert remember(kept, {}, MapCopy({"who:X": "1"}), 2_000) == {}, "the map caught up"
    assert remember(kept, {}, MapCopy({"who:X": "2"}), 2_000) == kept, "maybe the map is behind: keep it"
    assert remember(kept, {}, MapCopy({"who:X": "2"}), 1_000 + KEEP_MS) == {}, "the map moved on"
    assert remember(kept, {"who:X": "3"}, lagging, 5_000) == {"who:X": ["3", 5_000]}
