"""From a batch of sink commands to confirmed writes, without Kafka (the agents wrap this).

A batch goes through three steps:

1. **plan** — per target record (``SinkCommand.partition_key``), drop the fields the version
   guard says are already applied at the same or a newer version (a command left with no
   field is stale) and fold consecutive upserts into one (each field from the newest command
   that carries it: the same end state as applying them in turn, also when commands carry only
   changed fields). A delete, or an upsert with no fields, is guarded by the record's newest
   version. An operation change (upsert → delete) starts a new write. The i-th write of every
   record forms wave i, so a record's writes never change order.
2. **write** each wave in chunks of ``writer.max_batch``. Retryable outcomes are retried
   inside the batch, with the shared :class:`~connectors.retry.RetryPolicy` backoff, until
   they land or run out of attempts: the batch (and its partitions) wait, so a later command
   for the same record can never overtake a retried one.
3. **account** — a confirmed write advances the guard; a refused one, or one out of
   attempts, becomes a dead letter; a write the target confirmed with an id can become a
   link (TIMS customer ids the topology must record).

The version guard is only advanced after the target confirmed the write, so an older command
(retried, replayed or taken back from the DLQ) never overwrites newer data; it keeps a
version per top-level field (:class:`Applied`), so the fields such a command alone carries
still land (docs/adr/0010).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable, Iterator, Protocol, Sequence

from pydantic import ValidationError

from connectors.envelope import SinkCommand
from connectors.errors import AuthExpiredError, FatalError
from connectors.retry import RetryPolicy
from connectors.sink import WriteOutcome, Writer

__all__ = [
    "MessagePosition", "Received", "Applied", "PlannedWrite", "Plan", "plan_batch", "VersionGuard", "MemoryGuard",
    "SinkStats", "SinkBatchResult", "SinkEngine", "MalformedCommand", "parse_command", "dead_letter",
    "link_entry",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MessagePosition:
    """Where a command was read from (kept in dead letters for tracing and replay)."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Received:
    command: SinkCommand
    source: MessagePosition | None = None


@dataclass
class Applied:
    """What a sink has applied to one target record, field by field.

    ``floor`` is a version every field is at least at (a delete, or a value stored before
    versions were kept per field); ``fields`` holds the newer version of each written field.
    The guard is per top-level field: a command that arrives late (retried, replayed, taken
    back from the DLQ) still lands the fields no newer write has set.
    """

    floor: int = -1
    fields: dict[str, int] = field(default_factory=dict)

    def of(self, name: str) -> int:
        return max(self.floor, self.fields.get(name, -1))

    @property
    def latest(self) -> int:
        return max([self.floor, *self.fields.values()])

    def copy(self) -> "Applied":
        return Applied(self.floor, dict(self.fields))

    def to_json(self) -> dict[str, Any]:
        return {"floor": self.floor, "fields": dict(self.fields)}

    @classmethod
    def from_stored(cls, value: Any) -> "Applied | None":
        """Read a table value: ``None``, a bare int (one version for the whole record, as
        stored before per-field versions) or ``{"floor": n, "fields": {...}}``."""
        if value is None:
            return None
        if isinstance(value, int):
            return cls(floor=value)
        if isinstance(value, Applied):
            return value.copy()
        return cls(int(value.get("floor", -1)), {str(k): int(v) for k, v in value.get("fields", {}).items()})


@dataclass
class PlannedWrite:
    """One write of one record: the newest command, with the older ones folded into it."""

    command: SinkCommand
    #: the version each written field carries (folded commands keep their own)
    versions: dict[str, int] = field(default_factory=dict)
    sources: list[MessagePosition] = field(default_factory=list)
    #: idempotency keys of the older commands whose fields this write carries
    folded: list[str] = field(default_factory=list)
    attempts: int = 0
    first_attempt_at: float | None = None
    last_attempt_at: float | None = None
    error_code: str | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        return self.command.partition_key

    def begin_attempt(self, now: float) -> None:
        self.attempts += 1
        if self.first_attempt_at is None:
            self.first_attempt_at = now
        self.last_attempt_at = now

    def applied_after(self, before: Applied | None) -> Applied:
        """The guard's value for this record once this write has landed."""
        state = before.copy() if before is not None else Applied()
        if self.command.operation == "delete":
            floor = max(state.floor, self.command.version)
            return Applied(floor, {k: v for k, v in state.fields.items() if v > floor})
        for name, version in self.versions.items():
            state.fields[name] = max(state.fields.get(name, -1), version)
        return state


@dataclass
class Plan:
    waves: list[list[PlannedWrite]]
    stale: list[Received]
    folded: int
    #: commands written only in part: some of their fields were already applied at a newer version
    trimmed: int = 0


def _with_fields(command: SinkCommand, fields: dict[str, Any], versions: dict[str, int]) -> SinkCommand:
    mixed = {name: v for name, v in versions.items() if v != command.version}
    return command.model_copy(update={"fields": fields, "field_versions": mixed or None})


def plan_batch(batch: Sequence[Received], applied: Callable[[str], Applied | None]) -> Plan:
    """Group a batch into waves of writes; see the module docstring for the rules."""
    per_key: dict[str, list[PlannedWrite]] = {}
    state: dict[str, Applied] = {}
    stale: list[Received] = []
    folded = trimmed = 0
    for item in batch:
        command = item.command
        key = command.partition_key
        if key not in state:
            state[key] = Applied.from_stored(applied(key)) or Applied()
        known = state[key]
        if command.operation == "upsert" and command.fields:
            fresh = {n: v for n, v in command.fields.items() if command.version_of(n) > known.of(n)}
            if not fresh:
                stale.append(item)
                continue
            trimmed += len(fresh) < len(command.fields)
            versions = {n: command.version_of(n) for n in fresh}
            known.fields.update(versions)
        else:  # a delete, or an upsert that carries no field: one version for the record
            if command.version <= known.latest:
                stale.append(item)
                continue
            fresh, versions = {}, {}
            if command.operation == "delete":
                state[key] = Applied(command.version)
        writes = per_key.setdefault(key, [])
        last = writes[-1] if writes else None
        if last is not None and last.command.operation == command.operation:
            newer, older = (command, last.command) if command.version >= last.command.version else (last.command, command)
            last.folded.append(older.idempotency_key)
            last.versions = {**last.versions, **versions}
            fields = {**last.command.fields, **fresh} if command.operation == "upsert" else {}
            last.command = _with_fields(newer, fields, last.versions)
            folded += 1
        else:
            last = PlannedWrite(_with_fields(command, fresh, versions) if fresh else command, versions)
            writes.append(last)
        if item.source is not None:
            last.sources.append(item.source)
    depth = max((len(w) for w in per_key.values()), default=0)
    waves = [[writes[i] for writes in per_key.values() if len(writes) > i] for i in range(depth)]
    return Plan(waves, stale, folded, trimmed)


class VersionGuard(Protocol):
    """What a sink applied per record; the agents back it with a Faust table."""

    def applied(self, key: str) -> Applied | None: ...

    def advance(self, key: str, applied: Applied) -> None: ...


class MemoryGuard:
    """A VersionGuard in a dict (unit tests, tools); ints are read as whole-record versions."""

    def __init__(self, versions: dict[str, int | Applied] | None = None) -> None:
        self.versions: dict[str, Applied] = {
            k: a for k, v in (versions or {}).items() if (a := Applied.from_stored(v)) is not None}

    def applied(self, key: str) -> Applied | None:
        return self.versions.get(key)

    def advance(self, key: str, applied: Applied) -> None:
        self.versions[key] = applied


@dataclass
class SinkStats:
    """Counters of one sink (the metrics layer reads them)."""

    batches: int = 0
    received: int = 0
    stale: int = 0
    folded: int = 0
    written: int = 0
    created: int = 0
    #: writer calls (one sObject Collections request per object and external-id field each)
    calls: int = 0
    #: records sent again after a retryable failure
    retries: int = 0
    #: rounds spent waiting for credentials that the target refused
    auth_waits: int = 0
    dead_lettered: int = 0
    quarantined: int = 0
    links: int = 0
    #: commands written in part: fields a newer write had already set were left out
    trimmed: int = 0
    #: messages the sink took from its topic, and what became of each (the agent counts them):
    #: processed (written, or left out as stale, or folded into a newer command that was
    #: written), ``quarantined`` above (unreadable) or dead-lettered (its write, or the write it
    #: was folded into, went to the DLQ). messages = processed + quarantined + dead-lettered
    #: once a batch is done; ``dead_lettered`` above counts writes, which can fold several.
    messages: int = 0
    messages_processed: int = 0
    messages_dead_lettered: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class SinkBatchResult:
    written: list[tuple[PlannedWrite, WriteOutcome]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    stale: list[Received] = field(default_factory=list)


def _epoch_ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def dead_letter(write: PlannedWrite, *, exhausted: bool, now: float) -> dict[str, Any]:
    """The DLQ entry for a write that did not land: enough to understand it and replay it."""
    command = write.command
    return {
        "reason": "retries_exhausted" if exhausted else "rejected",
        "error_code": write.error_code,
        "error": write.error,
        "attempts": write.attempts,
        "first_attempt_at": _epoch_ms(write.first_attempt_at),
        "last_attempt_at": _epoch_ms(write.last_attempt_at),
        "dead_lettered_at": _epoch_ms(now),
        "system": command.system,
        "object": command.object,
        "partition_key": command.partition_key,
        "command": command.model_dump(mode="json"),
        "folded": list(write.folded),
        "sources": [asdict(s) for s in write.sources],
    }


def link_entry(write: PlannedWrite, outcome: WriteOutcome) -> dict[str, Any]:
    """The target's id for a record we wrote (``links.<system>``), for the topology to record."""
    command = write.command
    return {
        "system": command.system,
        "object": command.object,
        "record_key": command.record_key,
        "external_id_field": command.external_id_field,
        "external_id": command.external_id,
        f"{command.system}_id": outcome.target_id,
        "target_id": outcome.target_id,
        "created": outcome.created,
        "version": command.version,
    }


def _chunks(items: list[PlannedWrite], size: int) -> Iterator[list[PlannedWrite]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + size]


class SinkEngine:
    """Runs batches through one writer; never raises for a record's or a call's failure."""

    def __init__(
        self,
        writer: Writer,
        policy: RetryPolicy,
        *,
        publish_links: bool = False,
        stats: SinkStats | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.writer = writer
        self.policy = policy
        self.publish_links = publish_links
        self.stats = stats if stats is not None else SinkStats()
        #: the target refused our credentials on the last call (readiness reads it, stream_app/health.py)
        self.credentials_refused = False
        self._clock = clock
        self._sleep = sleep

    async def run(self, batch: Sequence[Received], guard: VersionGuard) -> SinkBatchResult:
        result = SinkBatchResult()
        plan = plan_batch(batch, guard.applied)
        self.stats.batches += 1
        self.stats.received += len(batch)
        self.stats.stale += len(plan.stale)
        self.stats.folded += plan.folded
        self.stats.trimmed += plan.trimmed
        result.stale = plan.stale
        for wave in plan.waves:
            await self._write_wave(wave, guard, result)
        return result

    async def _write_wave(self, wave: list[PlannedWrite], guard: VersionGuard, result: SinkBatchResult) -> None:
        pending = wave
        rounds = 0
        while pending:
            retry: list[PlannedWrite] = []
            hints: list[float] = []
            for chunk in _chunks(pending, self.writer.max_batch):
                again, hint = await self._attempt(chunk, guard, result)
                retry.extend(again)
                if hint is not None:
                    hints.append(hint)
            if not retry:
                return
            rounds += 1
            delay = self.policy.delay(rounds, max(hints) if hints else None)
            log.info("sink %s: %d record(s) to retry in %.2fs (round %d)",
                     self.writer.system, len(retry), delay, rounds)
            await self._sleep(delay)
            pending = retry

    async def _attempt(self, chunk: list[PlannedWrite], guard: VersionGuard,
                       result: SinkBatchResult) -> tuple[list[PlannedWrite], float | None]:
        """One writer call; returns the writes to retry and the server's Retry-After, if any."""
        now = self._clock()
        for write in chunk:
            write.begin_attempt(now)
        self.stats.calls += 1
        try:
            outcomes = await self.writer.write([w.command for w in chunk])
            self.credentials_refused = False
            if len(outcomes) != len(chunk):
                raise RuntimeError(f"writer returned {len(outcomes)} outcomes for {len(chunk)} commands")
        except AuthExpiredError as exc:
            # Our credentials, not the commands: wait for them without spending attempts.
            log.error("sink %s: the target refuses our credentials (%s); waiting", self.writer.system, exc)
            self.stats.auth_waits += 1
            self.credentials_refused = True
            for write in chunk:
                write.attempts -= 1
            return chunk, None
        except FatalError as exc:
            for write in chunk:
                self._give_up(write, exc.code or "FATAL", str(exc), exhausted=False, result=result)
            return [], None
        except Exception as exc:  # noqa: BLE001 - a failed call is an outcome for each command in it
            code = getattr(exc, "code", None) or type(exc).__name__
            again = [w for w in chunk if self._failed(w, str(code), str(exc), True, result)]
            return again, getattr(exc, "retry_after", None)
        again = []
        for write, outcome in zip(chunk, outcomes):
            if outcome.ok:
                self._landed(write, outcome, guard, result)
            elif self._failed(write, outcome.error_code or "UNKNOWN", outcome.error or "", outcome.retryable, result):
                again.append(write)
        return again, None

    def _landed(self, write: PlannedWrite, outcome: WriteOutcome, guard: VersionGuard, result: SinkBatchResult) -> None:
        guard.advance(write.key, write.applied_after(guard.applied(write.key)))
        result.written.append((write, outcome))
        self.stats.written += 1
        if outcome.created:
            self.stats.created += 1
        if self.publish_links and outcome.target_id:
            result.links.append(link_entry(write, outcome))
            self.stats.links += 1

    def _failed(self, write: PlannedWrite, code: str, message: str, retryable: bool, result: SinkBatchResult) -> bool:
        """Record a failure; True when the write should be tried again."""
        write.error_code, write.error = code, message
        if retryable and write.attempts < self.policy.max_attempts:
            self.stats.retries += 1
            return True
        self._give_up(write, code, message, exhausted=retryable, result=result)
        return False

    def _give_up(self, write: PlannedWrite, code: str, message: str, *, exhausted: bool, result: SinkBatchResult) -> None:
        write.error_code, write.error = code, message
        result.dead_letters.append(dead_letter(write, exhausted=exhausted, now=self._clock()))
        self.stats.dead_lettered += 1
        log.warning("sink %s: %s to the DLQ after %d attempt(s): %s",
                    self.writer.system, write.command.object, write.attempts, code)


class MalformedCommand(ValueError):
    """A sink-topic message that is not a usable command; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_command(raw: Any, key: bytes | str | None, system: str, sobject: str) -> SinkCommand:
    """Read one message of ``sink.<system>.<object>``; MalformedCommand says what is wrong.

    Beyond the envelope's own validation: the command must be for this topic's system and
    object, its Kafka key must be its ``partition_key`` (else its record's commands could
    spread over partitions and lose their order), and ``fields`` must not name another value
    for the external-id field (the upsert would silently target another record).
    """
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            raise MalformedCommand("not UTF-8 text") from None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise MalformedCommand(f"not JSON: {exc.msg} at position {exc.pos}") from None
        except (ValueError, RecursionError) as exc:  # an integer too long to convert, nesting too deep
            raise MalformedCommand(f"not JSON we read: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(raw, dict):
        raise MalformedCommand(f"expected a JSON object, got {type(raw).__name__}")
    try:
        command = SinkCommand.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'command'}: {e['msg']}" for e in exc.errors()
        )
        raise MalformedCommand(f"not a SinkCommand: {problems}") from None
    if (command.system, command.object) != (system, sobject):
        raise MalformedCommand(
            f"command for {command.system}.{command.object} on the topic of {system}.{sobject}")
    key_text = key.decode(errors="replace") if isinstance(key, (bytes, bytearray)) else key
    if key_text != command.partition_key:
        raise MalformedCommand(f"Kafka key {key_text!r} is not the command's partition_key {command.partition_key!r}")
    named = next((k for k in command.fields if k.lower() == command.external_id_field.lower()), None)
    if named is not None and str(command.fields[named]) != command.external_id:
        raise MalformedCommand(f"fields.{named} differs from external_id")
    return command
