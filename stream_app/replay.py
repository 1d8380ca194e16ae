"""Replay: move the app's consumer-group offsets back (or forward) so workers reprocess.

Workers must be stopped: Kafka only lets a group's offsets be changed from outside while the
group has no members, and we refuse before trying. ``plan`` computes, per partition, the current
committed offset, the new one and how many messages that reprocesses; ``apply`` commits the new
offsets. Replays are safe because every write downstream is an idempotent, version-guarded
upsert and events are deduped by id (README, "Replay").
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone

from aiokafka import TopicPartition

from connectors.kafka_admin import GroupNotEmptyError, KafkaAdmin, commit_offsets, list_topics
from connectors.kafka_admin import live_members as group_members  # the name stream_app/commands.py imports

__all__ = ["ReplayError", "PartitionPlan", "owned_topic", "resolve_topic", "plan", "apply", "group_members", "parse_time"]


class ReplayError(RuntimeError):
    """The replay cannot go ahead; the message says what to do."""


@dataclass(frozen=True)
class PartitionPlan:
    partition: int
    current: int | None  # committed offset, None when the group never committed here
    new: int
    end: int

    @property
    def to_reprocess(self) -> int:
        start = self.end if self.current is None else self.current
        return max(0, start - self.new)

    def line(self, topic: str) -> str:
        current = "none" if self.current is None else str(self.current)
        return (f"{topic}[{self.partition}]: committed {current} → {self.new} (end {self.end}); "
                f"{self.to_reprocess} messages to reprocess")


def parse_time(text: str) -> int:
    """ISO 8601 → epoch milliseconds (naive times are UTC)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReplayError(f"--from-time {text!r} is not ISO 8601 (e.g. 2026-11-26T10:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def owned_topic(topics: Collection[str], name: str, prefix: str) -> str:
    """Which existing topic ``name`` means for an app whose topics carry ``prefix``.

    The app's own topic wins: ``<prefix><name>`` when it exists, even when ``name`` exists too
    (another environment on the same cluster, the reason for the prefix). A name given with the
    prefix is taken as given, unless ``<prefix><name>`` exists as well: then it is refused, both
    candidates listed. A name without the prefix that only another environment has is refused.
    """
    ours, given = f"{prefix}{name}", name
    if ours in topics and given in topics and ours != given:
        if not name.startswith(prefix):
            return ours
        raise ReplayError(f"--topic {name!r} is ambiguous with CONNECT_TOPIC_PREFIX={prefix!r}: both {given!r} and "
                          f"{ours!r} exist: pass {name[len(prefix):]!r} for the first, {ours!r} for the second")
    if ours in topics:
        return ours
    if given in topics and (not prefix or name.startswith(prefix)):
        return given
    if given in topics:
        raise ReplayError(f"no topic {ours!r}: this app's topics carry CONNECT_TOPIC_PREFIX={prefix!r}, and {given!r} "
                          "belongs to another environment on this cluster")
    near = sorted(t for t in topics if name in t and (not prefix or t.startswith(prefix)))[:5]
    also = f" (nor {ours!r})" if ours != name else ""
    raise ReplayError(f"no topic {name!r}{also}" + (f"; did you mean {', '.join(near)}?" if near else ""))


async def resolve_topic(bootstrap: str, topic: str, prefix: str) -> str:
    """:func:`owned_topic` over the cluster's topics."""
    return owned_topic(await list_topics(bootstrap), topic, prefix)


async def plan(bootstrap: str, group: str, topic: str, partitions: list[int] | None,
               from_offset: int | None = None, from_time_ms: int | None = None) -> list[PartitionPlan]:
    if (from_offset is None) == (from_time_ms is None):
        raise ReplayError("give exactly one of --from-offset or --from-time")
    async with KafkaAdmin(bootstrap) as kafka:
        available = {tp.partition for tp in await kafka.partitions([topic])}
        chosen = sorted(available) if partitions is None else partitions
        missing = sorted(set(chosen) - available)
        if missing:
            raise ReplayError(f"{topic} has partitions {sorted(available)}; no partition {missing}")
        tps = [TopicPartition(topic, p) for p in chosen]
        starts, ends = await kafka.beginning_offsets([topic]), await kafka.end_offsets([topic])
        committed = await kafka.committed_offsets(group)
        if from_time_ms is not None:
            targets = await kafka.offsets_for_time([topic], from_time_ms)
        else:
            targets = {tp: min(max(from_offset or 0, starts[tp]), ends[tp]) for tp in tps}
    return [PartitionPlan(tp.partition, committed.get(tp), targets[tp], ends[tp]) for tp in tps]


async def apply(bootstrap: str, group: str, topic: str, plans: list[PartitionPlan]) -> None:
    try:
        await commit_offsets(bootstrap, group, {TopicPartition(topic, p.partition): p.new for p in plans})
    except GroupNotEmptyError as exc:
        raise ReplayError(f"{exc}: stop every worker first, then replay") from exc
