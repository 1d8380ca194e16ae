"""The customer sync's matching stage without a broker: what ``ingest`` sends it, and what it
sends on for each decision (docs/adr/0036). The stage's batch keeps its rows in a dict here."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from connectors.envelope import SourceEvent
from quality.matching import default_model
from tests.unit.topologies.test_merge_batches import Harness
from topologies.customer_sync.identity import mint_key
from topologies.customer_sync.matching import profile_of
from topologies.customer_sync.matching_stage import MatchStage
from topologies.customer_sync.messages import MatchCandidate, MatchProfile

ADA_KEY = mint_key("ada@example.com")


def tims(record_id: str, **fields: Any) -> dict[str, Any]:
    return SourceEvent(event_id=f"ev-{record_id}", source="tims", entity="customer", record_id=record_id,
                       change_type="CREATE", fields=fields, full_state=True, commit_timestamp=1_000).model_dump(mode="json")


def message(key: str, value: Any) -> SimpleNamespace:
    return SimpleNamespace(key=key.encode(), value=value)


class DictBatch:
    """A batch of the direct table stage (``BatchLike``) over a dict, sending through the harness."""

    def __init__(self, outputs: Any) -> None:
        self.outputs = outputs
        self.rows: dict[str, Any] = {}
        self.notes: dict[Any, Any] = {}

    def get(self, table: Any, key: str, event: Any) -> Any:
        return self.rows.get(key)

    def put(self, table: Any, key: str, value: Any, event: Any) -> None:
        self.rows[key] = value

    def forget(self, table: Any, key: str) -> None:
        self.rows.pop(key, None)

    async def send(self, topic: Any, key: str, value: Any) -> None:
        await self.outputs.send(topic, key, value)


class Matcher:
    """The stage and its batch: ``await matcher.match_one(message)`` handles one message."""

    def __init__(self, stage: MatchStage, batch: DictBatch) -> None:
        self.stage, self.batch = stage, batch
        self.blocks = stage.blocks

    async def match_one(self, message: Any) -> None:
        await self.stage.match_one(self.batch, message)


def stage() -> tuple[Harness, Matcher]:
    harness = Harness(size=1)
    matcher = Matcher(MatchStage(harness.flow, default_model()), DictBatch(harness.outputs))
    matcher.stage.rows.bind(matcher.batch, None)
    matcher.blocks.add(ADA_KEY, profile_of({"first_name": "Ada", "last_name": "Lovelace", "phone": "+14155550100",
                                            "street": "12 Main Street", "postal_code": "62701",
                                            "email": "ada@example.com"}), golden=True)
    matcher.stage.rows.keep()
    return harness, matcher


async def test_ingest_sends_only_a_would_be_new_customer_to_matching() -> None:
    harness, _ = stage()
    index = harness.context.replicated("identity")
    harness.flow.identity = index
    index.values["email:known@example.com"] = "k-known"
    await harness.flow.ingest_one(message("C1", tims("C1", name="Kay Known", email="known@example.com")))
    await harness.flow.ingest_one(message("C2", tims("C2", name="Nu Person", email="Nu@Example.com")))
    await harness.flow.ingest_one(message("C3", tims("C3", name="No Email")))
    assert [key for key, _ in harness.outputs.on("customer_sync.merge")] == ["k-known"]
    [(key, value)] = harness.outputs.on("customer_sync.matching")
    assert key == "match" and MatchCandidate.model_validate(value).email == "nu@example.com"
    assert [key for key, _ in harness.outputs.on("customer_sync.identify")] == ["tims:customer:C3"]


async def test_a_link_goes_to_the_customer_found_and_indexes_the_email() -> None:
    harness, matcher = stage()
    event = tims("C9", name="Ada Lovelase", email="ada@lovelace-welding.com", phone="415-555-0100",
                 billing_address={"street": "12 Main St", "postal_code": "62701"})
    await matcher.match_one(message("match", MatchCandidate(event=event, email="ada@lovelace-welding.com").wire()))
    assert [key for key, _ in harness.outputs.on("customer_sync.merge")] == [ADA_KEY]
    assert harness.outputs.on("customer_sync_identity") == [("email:ada@lovelace-welding.com", ADA_KEY.encode())]
    assert harness.counters["match_link"] == 1 and len(matcher.blocks.profiles(ADA_KEY)) == 2
    # the same address again (a redone match, or the record's next event): no second decision
    await matcher.match_one(message("match", MatchCandidate(event=event, email="ada@lovelace-welding.com").wire()))
    assert harness.counters["match_known"] == 1 and harness.outputs.on("audit.match_review") == []


async def test_a_borderline_pair_is_a_new_customer_and_a_review_with_its_accept_and_undo() -> None:
    harness, matcher = stage()
    event = tims("C20", name="Ada Lovelace", email="ada@elsewhere.example", billing_address={"postal_code": "62701"})
    await matcher.match_one(message("match", MatchCandidate(event=event, email="ada@elsewhere.example").wire()))
    new_key = mint_key("ada@elsewhere.example")
    assert [key for key, _ in harness.outputs.on("customer_sync.merge")] == [new_key]
    [(rid, review)] = harness.outputs.on("audit.match_review")
    assert (review["customer_key"], review["candidate_key"], review["status"]) == (new_key, ADA_KEY, "open")
    assert review["accept"] == [{"topic": "customer_sync.merge", "key": new_key,
                                 "value": {"kind": "absorb", "into": ADA_KEY, "merge_id": rid, "by": "unknown"}}]
    assert review["undo"][0]["key"] == ADA_KEY and review["undo"][0]["value"]["kind"] == "unmerge"
    assert "elsewhere" not in str({k: v for k, v in review.items() if k != "reference"})
    assert harness.counters["match_review"] == 1 and harness.counters["customers_minted"] == 1


async def test_profiles_follow_the_golden_record_and_bad_messages_are_quarantined() -> None:
    harness, matcher = stage()
    await matcher.match_one(message("match", MatchProfile(kind="profile", customer_key="k2", fields={
        "first_name": "Grace", "last_name": "Hopper", "city": "Arlington", "email": None}).wire()))
    assert matcher.blocks.profiles("k2") == [{"first_name": "Grace", "last_name": "Hopper", "city": "Arlington"}]
    await matcher.match_one(message("match", {"kind": "candidate", "email": "x@example.com"}))
    await matcher.match_one(message("match", MatchCandidate(event={"nope": 1}, email="x@example.com").wire()))
    assert harness.counters["quarantined"] == 2 and harness.outputs.on("customer_sync.merge") == []


async def test_a_record_that_raises_is_quarantined_and_leaves_the_index_as_it_was() -> None:
    harness, matcher = stage()
    before = dict(matcher.batch.rows)

    async def broken_review(*args: Any) -> None:  # after the record was filed in the index
        raise RuntimeError("bug in review")

    matcher.stage._review = broken_review  # type: ignore[method-assign]
    event = tims("C20", name="Ada Lovelace", email="ada@elsewhere.example", billing_address={"postal_code": "62701"})
    await matcher.match_one(message("match", MatchCandidate(event=event, email="ada@elsewhere.example").wire()))
    assert harness.counters["quarantined"] == 1 and harness.outputs.on("customer_sync.merge") == []
    assert matcher.batch.rows == before  # nothing of the failed record filed
    # the next record is decided as if the failed one never came
    other = tims("C21", name="Grace Hopper", email="grace@example.com")
    await matcher.match_one(message("match", MatchCandidate(event=other, email="grace@example.com").wire()))
    assert [key for key, _ in harness.outputs.on("customer_sync.merge")] == [mint_key("grace@example.com")]
    assert matcher.blocks.owner_of("grace@example.com") == mint_key("grace@example.com")


async def test_the_merge_stage_marks_the_duplicate_repoints_it_and_forwards_its_late_events() -> None:
    from tests.unit.topologies.test_merge_batches import CREATE, NET60, until

    harness = Harness(size=1)
    harness.flow.identity = harness.context.replicated("identity")
    absorb = {"kind": "absorb", "into": "k-ada", "merge_id": "r1", "by": "alice"}
    async with harness.agent.test_context() as agent:
        events = [await agent.put(m, key=b"k-dup", wait=False) for m in (CREATE, absorb, NET60)]
        await until(lambda: all(e.message.acked for e in events))
    assert harness.table["k-dup"]["merged_into"]["into"] == "k-ada"
    repointed = [key for key, value in harness.outputs.on("customer_sync_identity") if value == b"k-ada"]
    assert sorted(repointed) == ["email:ada@example.com", "salesforce:Contact:003A", "tims:customer:C1"]
    to_survivor = [value for key, value in harness.outputs.on("customer_sync.merge") if key == "k-ada"]
    assert [v["kind"] for v in to_survivor] == ["absorbed", "event"]  # the record, then the late event
    assert to_survivor[0]["record"]["key"] == "k-dup" and "merged_into" not in to_survivor[0]["record"]
    assert harness.counters["merged_forwarded"] == 1
