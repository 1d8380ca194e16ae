"""SinkEngine with a scripted writer: folding, version guard, retries, order, dead letters."""

from __future__ import annotations

import random

import pytest

from connectors.envelope import SinkCommand
from connectors.errors import AuthExpiredError, FatalError, RetryableError
from connectors.retry import RetryPolicy
from connectors.sink import WriteOutcome
from stream_app.sinks.engine import Applied, MemoryGuard, Received, SinkEngine, MessagePosition, plan_batch

from .fakes import FakeWriter, command


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def engine(writer: FakeWriter, *, attempts: int = 4, links: bool = False) -> tuple[SinkEngine, Sleeps]:
    sleeps = Sleeps()
    policy = RetryPolicy(max_attempts=attempts, base_delay=0.1, max_delay=5.0, rng=random.Random(7))
    return SinkEngine(writer, policy, publish_links=links, sleep=sleeps, clock=lambda: 1_700_000_000.0), sleeps


def received(*commands) -> list[Received]:
    return [Received(c, MessagePosition("sink.salesforce.Contact", 0, offset)) for offset, c in enumerate(commands)]


def latest(guard: MemoryGuard) -> dict[str, int]:
    """The newest version applied per record (what the guard held before it kept fields)."""
    return {key: applied.latest for key, applied in guard.versions.items()}


def locked(c, attempt: int) -> WriteOutcome:
    return WriteOutcome(c, ok=False, retryable=True, error_code="UNABLE_TO_LOCK_ROW", error="locked")


async def test_versions_of_one_record_fold_into_one_write_with_every_field() -> None:
    writer = FakeWriter()
    sink, _ = engine(writer)
    guard = MemoryGuard()
    batch = received(command("A", 1, LastName="a1", Phone="1"), command("B", 1, LastName="b1"),
                     command("A", 2, LastName="a2"), command("A", 3, Email="a@x.example"), command("B", 2, Title="t"))

    result = await sink.run(batch, guard)

    assert len(writer.calls) == 1 and [c.external_id for c in writer.calls[0]] == ["A", "B"]
    a, b = writer.calls[0]
    assert (a.version, a.fields) == (3, {"LastName": "a2", "Phone": "1", "Email": "a@x.example"})
    assert (b.version, b.fields) == (2, {"LastName": "b1", "Title": "t"})
    assert latest(guard) == {"salesforce:Contact:A": 3, "salesforce:Contact:B": 2}
    assert [len(w.sources) for w, _ in result.written] == [3, 2]
    assert sink.stats.folded == 3 and sink.stats.written == 2 and sink.stats.calls == 1


async def test_older_or_equal_versions_change_nothing() -> None:
    writer = FakeWriter()
    sink, _ = engine(writer)
    guard = MemoryGuard({"salesforce:Contact:A": 5})

    result = await sink.run(received(command("A", 3, LastName="old"), command("A", 5, LastName="same")), guard)

    assert writer.calls == [] and len(result.stale) == 2 and latest(guard)["salesforce:Contact:A"] == 5
    await sink.run(received(command("A", 6, LastName="new"), command("A", 4, LastName="late")), guard)
    assert [c.fields for c in writer.calls[0]] == [{"LastName": "new"}]
    assert latest(guard)["salesforce:Contact:A"] == 6 and sink.stats.stale == 3


async def test_a_late_command_lands_the_fields_no_newer_write_has_set() -> None:
    writer = FakeWriter()
    sink, _ = engine(writer)
    guard = MemoryGuard()
    await sink.run(received(command("A", 6, Description="v6")), guard)

    # v4 comes back from the DLQ after v6 landed: its Description is older, its Phone is not.
    result = await sink.run(received(command("A", 4, Description="v4", Phone="555")), guard)

    [written] = writer.calls[1]
    assert written.fields == {"Phone": "555"} and written.version == 4 and result.stale == []
    assert guard.versions["salesforce:Contact:A"].fields == {"Description": 6, "Phone": 4}
    assert sink.stats.trimmed == 1 and sink.stats.stale == 0
    await sink.run(received(command("A", 5, Description="v5", Phone="555")), guard)
    assert [c.fields for c in writer.calls[2]] == [{"Phone": "555"}], "Phone at v5 is newer than v4"
    await sink.run(received(command("A", 5, Description="v5", Phone="555")), guard)
    assert len(writer.calls) == 3 and sink.stats.stale == 1, "every field applied: the command is stale"


async def test_an_older_command_later_in_the_batch_adds_only_what_the_newer_lacks() -> None:
    plan = plan_batch(received(command("A", 5, LastName="five"), command("A", 3, LastName="three", Phone="3")),
                      lambda key: None)

    [[write]] = plan.waves
    assert (write.command.version, write.command.fields) == (5, {"LastName": "five", "Phone": "3"})
    assert write.versions == {"LastName": 5, "Phone": 3} and write.command.field_versions == {"Phone": 3}
    assert plan.folded == 1 and plan.trimmed == 1 and plan.stale == []


async def test_a_dead_letter_of_folded_commands_is_replayed_field_by_field() -> None:
    writer = FakeWriter(script=lambda c, n: WriteOutcome(c, ok=False, error_code="INVALID_FIELD", error="bad")
                        if len(writer.calls) == 1 else None)
    sink, _ = engine(writer)
    guard = MemoryGuard()
    [dead] = (await sink.run(received(command("A", 3, Phone="p3"), command("A", 5, LastName="l5")), guard)).dead_letters
    assert dead["command"]["field_versions"] == {"Phone": 3} and dead["command"]["version"] == 5

    await sink.run(received(command("A", 4, Phone="p4")), guard)
    replayed = SinkCommand.model_validate(dead["command"])
    await sink.run(received(replayed), guard)

    assert writer.calls[2][0].fields == {"LastName": "l5"}, "Phone at v3 is older than the v4 that landed"
    assert guard.versions["salesforce:Contact:A"].fields == {"Phone": 4, "LastName": 5}


async def test_a_delete_is_guarded_by_the_record_and_guards_every_field() -> None:
    writer = FakeWriter()
    sink, _ = engine(writer)
    guard = MemoryGuard()
    await sink.run(received(command("A", 2, LastName="x", Phone="1")), guard)

    result = await sink.run(received(command("A", 1, operation="delete"), command("A", 3, operation="delete"),
                                     command("A", 2, Title="late")), guard)

    assert [[(c.operation, c.version) for c in call] for call in writer.calls[1:]] == [[("delete", 3)]]
    assert len(result.stale) == 2 and latest(guard) == {"salesforce:Contact:A": 3}
    await sink.run(received(command("A", 4, LastName="back")), guard)
    assert writer.calls[-1][0].fields == {"LastName": "back"}


async def test_a_version_stored_for_the_whole_record_still_guards_every_field() -> None:
    writer = FakeWriter()
    sink, _ = engine(writer)
    guard = MemoryGuard({"salesforce:Contact:A": 5})  # a table value written before per-field versions

    result = await sink.run(received(command("A", 4, Phone="old"), command("A", 6, Phone="new")), guard)

    assert [c.fields for c in writer.calls[0]] == [{"Phone": "new"}] and len(result.stale) == 1
    assert guard.versions["salesforce:Contact:A"] == Applied(5, {"Phone": 6})
    assert Applied.from_stored(Applied(5, {"Phone": 6}).to_json()) == Applied(5, {"Phone": 6})


async def test_an_operation_change_starts_a_new_wave_in_order() -> None:
    plan = plan_batch(received(command("A", 1, LastName="x"), command("B", 1, LastName="y"),
                               command("A", 2, operation="delete"), command("A", 3, LastName="z")),
                      lambda key: None)
    assert [[(w.command.external_id, w.command.operation, w.command.version) for w in wave] for wave in plan.waves] == [
        [("A", "upsert", 1), ("B", "upsert", 1)], [("A", "delete", 2)], [("A", "upsert", 3)]]


async def test_a_retried_record_is_not_overtaken_by_its_next_write() -> None:
    writer = FakeWriter(script=lambda c, n: locked(c, n) if c.external_id == "A" and c.version == 1 and n <= 2 else None)
    sink, sleeps = engine(writer)
    guard = MemoryGuard()

    await sink.run(received(command("A", 1, LastName="x"), command("B", 1, LastName="y"),
                            command("A", 2, operation="delete")), guard)

    assert [[(c.external_id, c.operation) for c in call] for call in writer.calls] == [
        [("A", "upsert"), ("B", "upsert")], [("A", "upsert")], [("A", "upsert")], [("A", "delete")]]
    assert latest(guard) == {"salesforce:Contact:A": 2, "salesforce:Contact:B": 1}
    assert sink.stats.retries == 2 and len(sleeps.delays) == 2
    assert all(0 <= d <= 0.1 * 2 ** i for i, d in enumerate(sleeps.delays))


async def test_a_poison_record_is_dead_lettered_and_its_batch_mates_land() -> None:
    def script(c, attempt):
        if c.external_id == "P":
            return WriteOutcome(c, ok=False, error_code="FIELD_CUSTOM_VALIDATION_EXCEPTION", error="no poison")
        return None

    writer = FakeWriter(script=script)
    sink, sleeps = engine(writer)
    guard = MemoryGuard()
    batch = received(command("A", 1, LastName="a"), command("P", 4, LastName="POISON"), command("B", 1, LastName="b"))

    result = await sink.run(batch, guard)

    assert set(writer.landed) == {"salesforce:Contact:A", "salesforce:Contact:B"}
    assert "salesforce:Contact:P" not in guard.versions and sleeps.delays == []
    [entry] = result.dead_letters
    assert entry["reason"] == "rejected" and entry["error_code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert entry["attempts"] == 1 and entry["first_attempt_at"] == entry["last_attempt_at"] == 1_700_000_000_000
    assert entry["command"]["fields"] == {"LastName": "POISON"} and entry["command"]["version"] == 4
    assert entry["partition_key"] == "salesforce:Contact:P"
    assert entry["sources"] == [{"topic": "sink.salesforce.Contact", "partition": 0, "offset": 1}]


async def test_retries_run_out_into_the_dlq() -> None:
    writer = FakeWriter(script=locked)
    sink, sleeps = engine(writer, attempts=3)

    result = await sink.run(received(command("A", 1, LastName="a")), MemoryGuard())

    [entry] = result.dead_letters
    assert entry["reason"] == "retries_exhausted" and entry["attempts"] == 3
    assert entry["error_code"] == "UNABLE_TO_LOCK_ROW" and len(writer.calls) == 3 and len(sleeps.delays) == 2


async def test_a_failed_call_is_retried_honouring_retry_after() -> None:
    writer = FakeWriter()
    writer.raises = [RetryableError("503", code="SERVER_UNAVAILABLE", retry_after=2.5)]
    sink, sleeps = engine(writer)
    guard = MemoryGuard()

    await sink.run(received(command("A", 1, LastName="a"), command("B", 1, LastName="b")), guard)

    assert sleeps.delays == [2.5] and len(writer.calls) == 2 and len(guard.versions) == 2


async def test_a_call_the_target_refuses_sends_its_commands_to_the_dlq() -> None:
    writer = FakeWriter()
    writer.raises = [FatalError("no such object", code="NOT_FOUND", status=404)]
    sink, _ = engine(writer)

    result = await sink.run(received(command("A", 1, LastName="a"), command("B", 1, LastName="b")), MemoryGuard())

    assert [(d["reason"], d["error_code"]) for d in result.dead_letters] == [("rejected", "NOT_FOUND")] * 2


async def test_refused_credentials_wait_without_spending_attempts() -> None:
    writer = FakeWriter()
    writer.raises = [AuthExpiredError("login refused", code="invalid_client")] * 5
    sink, sleeps = engine(writer, attempts=2)
    guard = MemoryGuard()

    result = await sink.run(received(command("A", 1, LastName="a")), guard)

    assert result.dead_letters == [] and latest(guard) == {"salesforce:Contact:A": 1}
    assert sink.stats.auth_waits == 5 and len(sleeps.delays) == 5
    assert result.written[0][0].attempts == 1


async def test_a_writer_that_miscounts_its_outcomes_is_a_failed_call() -> None:
    class Short(FakeWriter):
        async def write(self, commands):
            return (await super().write(commands))[:1] if len(self.calls) == 0 else await super().write(commands)

    writer = Short()
    sink, _ = engine(writer)
    guard = MemoryGuard()
    await sink.run(received(command("A", 1, LastName="a"), command("B", 1, LastName="b")), guard)
    assert len(writer.calls) == 2 and len(guard.versions) == 2


async def test_large_waves_are_chunked_to_the_writer_limit() -> None:
    writer = FakeWriter(max_batch=200)
    sink, _ = engine(writer)
    await sink.run(received(*[command(f"R{i}", 1, LastName="x") for i in range(450)]), MemoryGuard())
    assert [len(call) for call in writer.calls] == [200, 200, 50]


@pytest.mark.parametrize("links", [True, False])
async def test_links_carry_the_target_id(links: bool) -> None:
    writer = FakeWriter()
    sink, _ = engine(writer, links=links)
    result = await sink.run(received(command("A", 7, LastName="a")), MemoryGuard())
    if links:
        assert result.links == [{
            "system": "salesforce", "object": "Contact", "record_key": "ck-A",
            "external_id_field": "TIMS_Customer_ID__c", "external_id": "A", "salesforce_id": "id-A",
            "target_id": "id-A", "created": True, "version": 7}]
    else:
        assert result.links == []
