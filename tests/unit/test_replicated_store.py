"""The replicated map's local stores (stream_app/replicated.py): what a restarted worker keeps,
and when it reads the topic again from its start."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import TopicPartition

from stream_app.replicated import DiskEntries, MemoryEntries, ReplicatedMap

TP = TopicPartition("app-customer_sync_identity-changelog", 0)


def test_a_disk_store_keeps_entries_and_the_offset_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tables" / "replicated" / TP.topic
    store = DiskEntries(path)
    store.apply([(b"email:a@x.example", b"c1"), (b"tims:customer:1", b"c1"), (None, b"ignored")], next_offset=2)
    store.put("salesforce:Lead:00Q1", "c2")  # this worker's own write, before the reader gets to it
    store.apply([(b"tims:customer:1", None)], next_offset=3)
    assert (store.get("email:a@x.example"), store.get("tims:customer:1"), store.get("salesforce:Lead:00Q1")) == (
        "c1", None, "c2")
    store.close()

    again = DiskEntries(path)
    assert again.next_offset() == 3 and len(again) == 2 and again.get("email:a@x.example") == "c1"
    again.clear()
    assert again.next_offset() is None and len(again) == 0 and again.get("email:a@x.example") is None
    again.close()


def test_a_memory_store_reads_from_the_start_every_time() -> None:
    store = MemoryEntries()
    store.apply([(b"k", b"v"), (b"gone", b"x"), (b"gone", None)], next_offset=3)
    assert store.next_offset() is None and store.get("k") == "v" and store.get("gone") is None and len(store) == 1


def reader(entries: MemoryEntries | DiskEntries) -> ReplicatedMap:
    replicated = ReplicatedMap.__new__(ReplicatedMap)
    replicated.name, replicated._store = "customer_sync_identity", entries
    return replicated


def test_a_restarted_reader_goes_on_after_what_it_kept_unless_the_topic_changed(tmp_path: Path) -> None:
    store = DiskEntries(tmp_path / "db")
    assert reader(store)._since({TP: 0}, {TP: 10}) == {TP: 0}, "nothing kept: from the start"
    store.apply([(b"k", b"v")], next_offset=7)
    assert reader(store)._since({TP: 0}, {TP: 10}) == {TP: 7}
    assert reader(store)._since({TP: 0}, {TP: 7}) == {TP: 7}, "kept everything: nothing to read"
    # the topic was deleted and created again (fewer entries than the store read): start over
    assert reader(store)._since({TP: 0}, {TP: 4}) == {TP: 0}
    assert store.next_offset() is None and store.get("k") is None
    store.close()


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_any_is_false_only_while_surely_empty(kind: str, tmp_path: Path) -> None:
    entries = MemoryEntries() if kind == "memory" else DiskEntries(tmp_path / "store")
    assert not entries.any()
    entries.apply([(b"email:abc", None)], 1)  # a delete of nothing adds nothing
    assert not entries.any()
    entries.apply([(b"key:c1", b"e1")], 2)
    assert entries.any()
    entries.close()
    if kind == "disk":  # opened again: found on disk
        again = DiskEntries(tmp_path / "store")
        assert again.any()
        again.clear()
        assert not again.any()
        again.close()
