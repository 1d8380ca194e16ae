"""The customer sync's matching in the stream: the ``matching`` agent and the merge stage's merges
(docs/adr/0036).

Only a would-be new customer comes here: ``ingest`` sends an event whose references and email
the identity index does not know to ``customer_sync.matching`` instead of minting its key. Every
such event carries the one key ``MATCH_KEY``, so one partition (one worker) decides them in
order, alone writing the blocking index (``match_index``): no lost update, and two new records
of one person arriving together see each other. Known customers never pass here.

The stage runs outside Faust as a direct table stage that keeps ``match_index`` itself
(docs/adr/0038): it is the one stage every new customer of every worker passes, so its cost per
record bounds how fast new customers arrive across the deployment. A batch's decisions see one
another through the batch's rows; its sends are acked before the index rows are written, and a
batch interrupted before that is redone whole (a redone record finds the key it was filed
under: ``owner_of`` its email). A record that makes the matcher raise is quarantined and leaves
the index as it was (:class:`BatchRows` keeps its writes apart until it is done).

    ingest ──(email unknown)──► matching ──link───► merge (key: the customer it matched)
                                     │  ──review──► merge (key: a new customer) + audit.match_review
                                     │  ──new─────► merge (key: uuid5 of the email, as before)
    merge ──(name, address, phone changed)──► matching (the golden profile)

``stream-app identity review accept <id>`` sends the review's ``accept`` message (merge the new
customer into the candidate); ``reject`` on an accepted review sends its ``undo`` (unmerge).
The merges themselves run in ``merge`` on both records' partitions (``Merges``), each audited
on ``audit.merges``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from faust.types import EventT
from pydantic import ValidationError

from connectors.envelope import SourceEvent
from quality.matching import Model, person_from
from topologies.customer_sync.cleansing import Uncleanable
from topologies.customer_sync.golden import Outcome
from topologies.customer_sync.golden_merge import MergeReport, absorb, merged_into, restore, unmerge
from topologies.customer_sync.identity import crossrefs, mint_key, source_ref
from topologies.customer_sync.matching import MATCH_FIELDS, BlockingTable, Match, decide, profile_of, review_id
from topologies.customer_sync.messages import (
    MATCH, MATCH_KEY, MatchCandidate, MatchForget, MatchProfile, MergeAbsorb, MergeAbsorbed, MergeEvent, MergeRestore,
    MergeUnmerge,
)
from topologies.flow import BatchLike
from topologies.stage import read_message

if TYPE_CHECKING:
    from topologies.customer_sync.agents import CustomerSync

__all__ = ["MatchStage", "Merges", "BatchRows", "REVIEW_TOPIC", "MERGES_TOPIC", "MATCH_TABLE"]

log = logging.getLogger(__name__)
REVIEW_TOPIC = "audit.match_review"
MERGES_TOPIC = "audit.merges"
MATCH_TABLE = "match_index"
#: the merge stage's topic, as the review's messages name it (the command adds the prefix)
MERGE_STAGE = "customer_sync.merge"


def _now_ms() -> int:
    return int(time.time() * 1000)


_MISSING = object()


class BatchRows(MutableMapping[str, Any]):
    """A table as one record of a batch sees it (the mapping under :class:`BlockingTable`): reads
    through the batch's rows, writes kept apart until :meth:`keep` hands them to the batch, or
    :meth:`drop` forgets them (the record raised half-way). Only keyed access: no iteration."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self._batch: BatchLike | None = None
        self._event: Any = None
        self._pending: dict[str, Any] = {}

    def bind(self, batch: BatchLike, event: Any) -> None:
        self._batch, self._event, self._pending = batch, event, {}

    def keep(self) -> None:
        assert self._batch is not None
        for key, value in self._pending.items():
            self._batch.put(self.table, key, value, self._event)
        self._pending = {}

    def drop(self) -> None:
        self._pending = {}

    def _read(self, key: str) -> Any:
        value = self._pending.get(key, _MISSING)
        if value is _MISSING:
            assert self._batch is not None, "BatchRows read outside a batch"
            value = self._batch.get(self.table, key, self._event)
        return value

    def __getitem__(self, key: str) -> Any:
        value = self._read(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        value = self._read(key)
        return default if value is None else value

    def __setitem__(self, key: str, value: Any) -> None:
        self._pending[key] = value

    def __delitem__(self, key: str) -> None:
        if self._read(key) is None:
            raise KeyError(key)
        self._pending[key] = None  # a tombstone in the changelog

    def __iter__(self) -> Iterator[str]:
        raise TypeError("BatchRows has keyed access only")

    def __len__(self) -> int:
        raise TypeError("BatchRows has keyed access only")


class MatchStage:
    """The ``matching`` stage: link, review or new for each would-be new customer."""

    def __init__(self, flow: "CustomerSync", model: Model) -> None:
        self.flow = flow
        self.ctx = flow.ctx
        self.model = model
        self.table = self.ctx.direct_table(MATCH_TABLE)
        self.rows = BatchRows(self.table)
        self.blocks = BlockingTable(self.rows)
        self.review_topic = self.ctx.topic(REVIEW_TOPIC)

    async def match_one(self, batch: BatchLike, message: EventT) -> None:
        """One message of a batch; whatever makes it raise quarantines it (the stage boundary)."""
        self.rows.bind(batch, message)
        try:
            await self._match(batch, message)
        except Exception as exc:  # noqa: BLE001 - a bug on one record must not stall the batch
            self.rows.drop()
            log.exception("customer_sync matching: a record raised; quarantined")
            await self.ctx.quarantine(f"matching raised {type(exc).__name__}: {exc}", message.value)
        else:
            self.rows.keep()

    async def _match(self, batch: BatchLike, message: EventT) -> None:
        read = await read_message(self.ctx, "matching", MATCH, message)
        if read is None:
            return
        body = read[1]
        if isinstance(body, MatchProfile):
            self.blocks.add(body.customer_key, profile_of(body.fields), golden=True)
            return
        if isinstance(body, MatchForget):
            self.blocks.forget(body.customer_key)
            return
        try:
            event = SourceEvent.model_validate(body.event)
        except ValidationError as exc:
            await self.ctx.quarantine(f"matching: not a source event ({exc.error_count()} errors)", body.event)
            return
        key = await self._decide(batch, event, body)
        await batch.send(self.flow.merge_topic, key, MergeEvent(event=body.event).wire())

    def _canonical(self, event: SourceEvent) -> dict[str, Any]:
        target = f"{event.source}.{event.entity}"
        if target not in self.flow.mappings.inbound:
            return {}
        try:
            return self.flow.mappings.to_canonical(target, event.fields)
        except Uncleanable:
            return {}  # merge quarantines it; matching has nothing reliable to go on

    async def _decide(self, batch: BatchLike, event: SourceEvent, body: MatchCandidate) -> str:
        """The customer the event goes to; the blocking index learns the record."""
        email = body.email
        owner = self.flow.known_customer([source_ref(event), *crossrefs(event)], email) or self.blocks.owner_of(email)
        if owner is not None:  # the index caught up, or a record of this address was decided before
            self.flow.count("match_known")
            return owner
        profile = profile_of(self._canonical(event)) | {"email": email}
        person = person_from(source_ref(event), profile)
        match = decide(self.model, person, self.blocks.candidates(person))
        self.flow.count(f"match_{match.decision}")
        key = match.candidate if match.decision == "link" and match.candidate else mint_key(email)
        if key != match.candidate:
            self.flow.count("customers_minted")
        self.blocks.add(key, profile, golden=match.decision != "link")
        if match.decision == "link":
            if self.flow.identity.get(f"email:{email}") is None:
                await batch.send(*self.flow.identity.entry(f"email:{email}", key))
        elif match.decision == "review" and match.candidate:
            await self._review(batch, event, key, match)
        return key

    async def _review(self, batch: BatchLike, event: SourceEvent, key: str, match: Match) -> None:
        """A borderline pair: the record becomes a customer of its own, and a reviewer decides."""
        assert match.candidate is not None
        rid = review_id(key, match.candidate)
        record = {
            "review_id": rid, "status": "open", "at": _now_ms(), "flow": "customer_sync",
            "score": round(match.score, 6), "model": f"{self.model.version} ({self.model.fingerprint})",
            "levels": match.levels, "customer_key": key, "candidate_key": match.candidate,
            "reference": source_ref(event),
            # what ``stream-app identity review`` sends (the app names no flow): merge the new
            # customer into the candidate; undo it
            "accept": [{"topic": MERGE_STAGE, "key": key,
                        "value": MergeAbsorb(kind="absorb", into=match.candidate, merge_id=rid).wire()}],
            "undo": [{"topic": MERGE_STAGE, "key": match.candidate,
                      "value": MergeUnmerge(kind="unmerge", merge_id=rid).wire()}],
        }
        await batch.send(self.review_topic, rid, record)


class Merges:
    """The merge stage's part in merging customers: runs in ``merge`` on the batch (BatchLike)."""

    def __init__(self, flow: "CustomerSync") -> None:
        self.flow = flow
        self.merges_topic = flow.ctx.topic(MERGES_TOPIC)

    async def forward(self, batch: BatchLike, record: dict[str, Any] | None, message: Any) -> bool:
        """An event for a record merged into another goes to the survivor; True when forwarded."""
        survivor = merged_into(record)
        if survivor is None:
            return False
        self.flow.count("merged_forwarded")
        await batch.send(self.flow.merge_topic, survivor, message.wire())
        return True

    async def profile(self, batch: BatchLike, key: str, record: dict[str, Any], changed: list[str],
                      fresh: bool = False) -> None:
        """Tell the blocking index when a field the matcher reads changed. Not for a new record
        with an email: it came through matching, which filed the profile of this same event."""
        if fresh and (record["fields"].get("email") or {}).get("v"):
            return
        if any(name in MATCH_FIELDS for name in changed):
            fields = {name: (slot or {}).get("v") for name, slot in record["fields"].items() if name in MATCH_FIELDS}
            await batch.send(self.flow.match_topic, MATCH_KEY,
                             MatchProfile(kind="profile", customer_key=key, fields=fields).wire())

    async def forget(self, batch: BatchLike, key: str) -> None:
        """An erased customer leaves the blocking index too (it holds names, emails, phones)."""
        await batch.send(self.flow.match_topic, MATCH_KEY, MatchForget(kind="forget", customer_key=key).wire())

    async def handle(self, batch: BatchLike, event: EventT, key: str, message: Any) -> None:
        record = batch.get(self.flow.customer_master, key, event)
        if isinstance(message, MergeAbsorb):
            await self._absorb(batch, event, key, record, message)
        elif isinstance(message, MergeAbsorbed):
            await self._absorbed(batch, event, key, record, message)
        elif isinstance(message, MergeUnmerge):
            await self._unmerge(batch, event, key, record, message)
        elif isinstance(message, MergeRestore):
            await self._restore(batch, event, key, record, message)

    async def _repoint(self, batch: BatchLike, entries: list[str], key: str) -> None:
        for entry in entries:
            await batch.send(*self.flow.identity.entry(entry, key))

    async def _absorb(self, batch: BatchLike, event: EventT, key: str, record: dict[str, Any] | None,
                      message: MergeAbsorb) -> None:
        """The duplicate's side: mark it merged, send the survivor its record, repoint its entries."""
        if record is None or merged_into(record) is not None or message.into == key:
            await self._audit(batch, MergeReport("merge refused", message.merge_id, message.into, key, by=message.by),
                              "no such customer, or already merged" if message.into != key else "a customer with itself")
            return
        snapshot = {name: value for name, value in record.items() if name != "merged_into"}
        record["merged_into"] = {"into": message.into, "merge_id": message.merge_id, "at": _now_ms()}
        email = (record["fields"].get("email") or {}).get("v")
        await self._repoint(batch, [*record["refs"], *([f"email:{email}"] if email else [])], message.into)
        await batch.send(self.flow.merge_topic, message.into, MergeAbsorbed(
            kind="absorbed", source=key, record=snapshot, merge_id=message.merge_id, by=message.by).wire())
        await self.flow.tell_links(batch, record)
        batch.put(self.flow.customer_master, key, record, event)

    async def _absorbed(self, batch: BatchLike, event: EventT, key: str, record: dict[str, Any] | None,
                        message: MergeAbsorbed) -> None:
        """The survivor's side: fold the duplicate in by the conflict policy; audit."""
        if record is None:
            await self._audit(batch, MergeReport("merge refused", message.merge_id, key, message.source, by=message.by),
                              "the survivor has no golden record")
            return
        if await self.forward(batch, record, message):
            return
        outcome, report = absorb(record, message.record, self.flow.policy, self.flow.mappings,
                                 message.merge_id, message.by)
        await self._publish(batch, key, outcome)
        await self.profile(batch, key, record, report.fields)
        await self._audit(batch, report)
        self.flow.count("customers_merged")
        await self.flow.tell_links(batch, record)
        batch.put(self.flow.customer_master, key, record, event)

    async def _unmerge(self, batch: BatchLike, event: EventT, key: str, record: dict[str, Any] | None,
                       message: MergeUnmerge) -> None:
        done = unmerge(record, message.merge_id, self.flow.mappings, message.by) if record else None
        if done is None:
            await self._audit(batch, MergeReport("unmerge refused", message.merge_id, key, "", by=message.by),
                              "the survivor holds no such merge")
            return
        outcome, report, entry = done
        assert record is not None
        await self._publish(batch, key, outcome)
        await self._repoint(batch, [*entry["refs"], *([f"email:{entry['email']}"] if entry.get("email") else [])],
                            report.duplicate)
        await batch.send(self.flow.merge_topic, report.duplicate, MergeRestore(
            kind="restore", merge_id=message.merge_id, version=record["version"], by=message.by).wire())
        await self._audit(batch, report)
        self.flow.count("customers_unmerged")
        await self.flow.tell_links(batch, record)
        batch.put(self.flow.customer_master, key, record, event)

    async def _restore(self, batch: BatchLike, event: EventT, key: str, record: dict[str, Any] | None,
                       message: MergeRestore) -> None:
        if record is None:
            return
        outcome = restore(record, message.merge_id, message.version, self.flow.mappings)
        await self._publish(batch, key, outcome)
        await self.flow.tell_links(batch, record)
        batch.put(self.flow.customer_master, key, record, event)

    async def _publish(self, batch: BatchLike, key: str, outcome: Outcome) -> None:
        for command in outcome.commands:
            await batch.send(self.flow.sink_topics[f"{command.system}.{command.object}"], command.partition_key,
                             command.model_dump(mode="json"))

    async def _audit(self, batch: BatchLike, report: MergeReport, refused: str | None = None) -> None:
        entry = report.audit(_now_ms()) | ({"reason": refused} if refused else {})
        if refused:
            log.warning("customer_sync: %s %s: %s", report.action, report.merge_id, refused)
        await batch.send(self.merges_topic, report.merge_id, entry)
