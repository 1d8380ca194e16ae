"""The customer 360 and the conflict history, read from the flows' own topics.

A person is found and exported by each enabled flow's privacy tool (``Flow.privacy``, the same
as ``stream-app privacy export``), here over table changelogs the console keeps in memory (a
:class:`~.tail.TopicTail`), so a search does not read every changelog again. The app names no
flow: the tables are the ones the flows list in ``Flow.tables``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from stream_app.console.tail import TopicTail
from stream_app.flows import enabled_flows
from stream_app.rebuild import group_id
from stream_app.topics import AUDIT_CONFLICTS

if TYPE_CHECKING:
    from stream_app.settings import Settings

__all__ = ["People", "Conflicts", "record_url"]


def record_url(settings: "Settings", link: str, record_id: str) -> str | None:
    """Where an operator opens a linked record in its own system (``salesforce_contact`` →
    the Salesforce record page); None for a link of no known system."""
    system = link.partition("_")[0]
    safe = quote(str(record_id), safe="")
    base = (getattr(settings, f"{system}_login_url", None) or getattr(settings, f"{system}_base_url", None) or "")
    base = base.rstrip("/")
    if not base:
        return None
    return {"salesforce": f"{base}/{safe}", "pardot": f"{base}/prospect/read?id={safe}",
            "tims": f"{base}/customers/{safe}"}.get(system)


#: values up to this size are indexed back to their keys (references such as a customer key);
#: larger ones (whole records) are not worth the memory
SHORT_VALUE = 64


class IndexedTable(dict):  # type: ignore[type-arg]
    """A table as its changelog holds it (key bytes → value bytes) that also answers, without a
    scan, which keys hold a given short value (:meth:`keys_for`): an identity index's entries
    pointing at one customer. Tools that do not know it use it as a plain mapping.

    Every key holding one short value holds the same bytes object (the one in ``_back``): an
    identity index has four or more entries per customer, and a million customers' copies of
    their keys cost some 200 MB (bench/console_bench.py)."""

    def __init__(self) -> None:
        super().__init__()
        #: short value → (the one object of it the table holds, the keys holding it)
        self._back: dict[bytes, tuple[bytes, list[bytes]]] = {}

    def put(self, key: bytes, value: bytes | None) -> None:
        old = self.get(key)
        if old is not None and len(old) <= SHORT_VALUE:
            shared = self._back.get(old)
            if shared is not None and key in shared[1]:
                shared[1].remove(key)
                if not shared[1]:
                    del self._back[old]
        if value is None:
            self.pop(key, None)
            return
        if len(value) <= SHORT_VALUE:
            shared = self._back.get(value)
            if shared is None:
                shared = self._back[value] = (value, [])
            shared[1].append(key)
            value = shared[0]
        self[key] = value

    def keys_for(self, value: bytes) -> list[bytes] | None:
        """The keys holding ``value``; None when values that long are not indexed (scan instead)."""
        if len(value) > SHORT_VALUE:
            return None
        shared = self._back.get(value)
        return list(shared[1]) if shared is not None else []


class People:
    """The flows' tables (those of flows with a privacy tool), kept whole in memory."""

    def __init__(self, settings: "Settings") -> None:
        self.settings = settings
        group = group_id(settings)
        self.flows = [flow for flow in enabled_flows(settings) if flow.privacy is not None]
        self._changelogs = {f"{group}-{name}-changelog": name for flow in self.flows for name in flow.tables}
        self.tables = {name: IndexedTable() for name in self._changelogs.values()}
        self.tail = TopicTail(settings.kafka_bootstrap_servers, self._changelogs, self._keep, self._trim)

    def _keep(self, record: ConsumerRecord) -> None:
        self.tables[self._changelogs[record.topic]].put(record.key, record.value)

    def _trim(self, tp: TopicPartition, first: int) -> None:
        """Compaction removes only superseded values: what is kept stays right."""

    async def read_table(self, name: str) -> dict[bytes, bytes]:
        return self.tables.get(name) or IndexedTable()

    async def search(self, reference: str) -> dict[str, Any] | None:
        """``{flow: export}`` for the person ``reference`` names (email, key or record id)."""
        await self.tail.catch_up()
        found: dict[str, Any] = {}
        for flow in self.flows:
            finder = getattr(flow.privacy, "find", None)
            key = await finder(self.read_table, reference) if finder else None
            if key is None and finder is None and "@" in reference:
                person = await flow.privacy.export(self.read_table, email=reference, customer=None)
            else:
                person = await flow.privacy.export(self.read_table, email=None, customer=key) if key else None
            if person is not None:
                found[flow.name] = person
        return found or None


@dataclass
class Conflicts:
    """``audit.conflicts``: every conflict a flow resolved, with the rule that decided."""

    settings: "Settings"
    entries: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tail = TopicTail(self.settings.kafka_bootstrap_servers, [self.settings.topic(AUDIT_CONFLICTS)],
                              self._keep, self._trim)

    def _keep(self, record: ConsumerRecord) -> None:
        try:
            value = json.loads(record.value)
        except (TypeError, ValueError):
            return
        if isinstance(value, dict):
            self.entries.append({**value, "_partition": record.partition, "_offset": record.offset})

    def _trim(self, tp: TopicPartition, first: int) -> None:
        self.entries = [e for e in self.entries
                        if not (e["_partition"] == tp.partition and e["_offset"] < first)]

    async def select(self, customer: str = "", field_name: str = "") -> list[dict[str, Any]]:
        await self.tail.catch_up()
        return [entry for entry in self.entries
                if (not customer or entry.get("customer_key") == customer)
                and (not field_name or entry.get("field") == field_name)]

