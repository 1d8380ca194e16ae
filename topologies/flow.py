"""The flow unit: a business flow is one package under ``topologies/`` exporting a :class:`Flow`.

A flow names its topics and tables and installs its agents into an app through a
:class:`FlowContext` that the app layer (``stream_app.flows``) provides. Flows import nothing
from the app layer: what they need from it (owned topics, tables, metrics, batched stages,
quarantine) comes in through the context, so a flow can be built by a test on a bare app, and
the app never names a flow (docs/adr/0015).

Lifecycle: the worker's app factory calls ``flow.install(context)`` once, before the worker
starts; install builds the flow's mappings, topics, tables and agents (nothing is built at
import). Topics are named without the environment prefix; the context adds it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

__all__ = ["Flow", "FlowContext", "FlowMetrics", "BatchLike", "MappingsTool", "ReplicatedMapLike", "PrivacyTool",
           "ReadTable"]


class FlowMetrics(Protocol):
    """The flow's counters (``stream_app.metrics``), with the flow's name already bound."""

    def event_in(self, source: str, entity: str) -> None: ...
    def command_out(self, system: str, sobject: str, source_commit_ms: int | None) -> None: ...
    def duplicate(self, source: str) -> None: ...
    def echo_fields(self, source: str, count: int) -> None: ...
    def conflict(self, owner: str | None, rule: str) -> None: ...
    def waiting(self, reference: str, count: int, oldest_seconds: float) -> None:
        """How many records wait for a kind of reference (``customer``, ``product``), and the oldest's age."""
    def anomaly(self, rule: str, held: bool) -> None:
        """An anomaly rule flagged a change (``held``: kept out until an operator releases it)."""


class BatchLike(Protocol):
    """A batch of a batched stage (``stream_app.batching.Batch``)."""

    notes: dict[Any, Any]

    def get(self, table: Any, key: str, event: Any) -> Any: ...
    def put(self, table: Any, key: str, value: Any, event: Any) -> None: ...
    def forget(self, table: Any, key: str) -> None: ...
    async def send(self, topic: Any, key: str, value: Any) -> None: ...


class ReplicatedMapLike(Protocol):
    """A text → text map every worker holds whole (``stream_app.replicated.ReplicatedMap``)."""

    def get(self, key: str) -> str | None: ...
    def any(self) -> bool: ...  # False only when it surely holds no entry
    def entry(self, key: str, value: str) -> tuple[Any, str, bytes]: ...
    async def ready(self) -> None: ...


class FlowContext(Protocol):
    """What the app gives a flow when it installs it."""

    #: the Faust app (agents, timers and pages are declared on it)
    app: Any
    #: the worker settings (``stream_app.settings.Settings``): read, never changed
    settings: Any
    metrics: FlowMetrics
    #: in-process counts of what the flow did (read by tests and the stats page)
    counters: Counter[str]

    def topic(self, *names: str, **options: Any) -> Any:
        """An owned topic (created at start-up), named without the environment prefix."""

    def table(self, name: str, **options: Any) -> Any:
        """A changelogged table of the app."""

    def replicated(self, name: str, *, lasting: bool = False) -> ReplicatedMapLike:
        """A map every worker holds whole, for lookups by keys the stage's partition does not own;
        written rarely (each entry is a message every worker reads), read on every event.
        ``lasting``: kept across app versions and rebuilds (``state.<flow>.<name>``), for what a
        rebuild must not forget (the people erased)."""

    def mappings_dir(self, shipped: Path) -> Path:
        """The folder of this flow's mapping files: ``<CONNECT_MAPPINGS_DIR>/<flow>`` when a
        site set one, else ``shipped``."""

    async def send(self, topic: Any, key: str, value: Any) -> Any:
        """Publish; returns the future of the broker's ack."""

    async def quarantine(self, reason: str, raw: Any) -> None:
        """Set a message aside on ``quarantine.<flow>`` with the reason (and count it); never raises."""

    async def each(self, stage: str, stream: Any, handle: Callable[[Any], Awaitable[None]]) -> None:
        """Run a stage one event at a time behind the stage boundary: a value that could not be
        decoded, or one that makes ``handle`` raise, is quarantined and the stage goes on."""

    async def run_batches(self, stream: Any, handle: Callable[[BatchLike, Any], Awaitable[None]],
                          stage: str = "merge") -> None:
        """Run a batched stage with the app's batch size and linger (docs/adr/0011); its messages
        are counted under ``stage``."""

    def direct(self, stage: str, topic: Any, handle: Callable[[Any], Awaitable[None]], *,
               before: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run a stage that keeps no table on its own consumer group, outside Faust's per-message
        path (docs/adr/0028), behind the same stage boundary as :meth:`each`; ``handle`` gets
        events with ``key``, ``value``, ``topic``, ``partition`` and ``offset``. The flow must
        name the stage and its topics in :attr:`Flow.direct_stages` (rebuild, replay and the
        lag metric move and read its group's offsets). ``before`` is awaited once first."""

    def direct_table(self, name: str) -> Any:
        """A table kept by a direct table stage (:meth:`direct_batches`), partitioned like the
        stage's topic; its changelog is ``<app id>-<name>-changelog``, as a Faust table's."""

    def direct_batches(self, stage: str, topic: Any, handle: Callable[[BatchLike, Any], Awaitable[None]], *,
                       tables: list[Any], before: Callable[[], Awaitable[None]] | None = None) -> Any:
        """Run a keyed stage that keeps ``tables`` (from :meth:`direct_table`) outside Faust
        (docs/adr/0038): ``handle(batch, event)`` as for :meth:`run_batches`, each partition's
        rows recovered from its changelog before its first event. One topic; declared in
        :attr:`Flow.direct_stages` like :meth:`direct`."""


class MappingsTool(Protocol):
    """What ``stream-app mappings check|preview`` asks of a flow that has mapping files."""

    def check(self, directory: Path) -> str: ...
    def preview(self, directory: Path, name: str, record_file: str) -> str: ...
    def names(self, directory: Path) -> list[str]: ...


#: ``read_table(name)``: one of the app's tables by name, as its changelog holds it (key → value bytes);
#: the mapping may also offer ``keys_for(value) -> list[bytes] | None``, the keys holding a short
#: value, so a tool need not scan (None: not indexed, scan)
ReadTable = Callable[[str], Awaitable[dict[bytes, bytes]]]


class PrivacyTool(Protocol):
    """What ``stream-app privacy`` asks of a flow that holds personal data."""

    async def export(self, read_table: ReadTable, *, email: str | None, customer: str | None) -> dict[str, Any] | None:
        """Everything the flow's tables hold about one person (None: the flow knows nobody by that
        email or key)."""

    async def erase_plan(self, read_table: ReadTable, *, email: str | None, customer: str | None,
                         policy_file: Path | None, erasure: str) -> Any:
        """What erasing the person takes (``topologies.customer_sync.privacy.ErasePlan``: sink
        commands, entries of the flow's lasting ``erased`` map, identity entries to forget,
        messages to its stages), or None when the flow knows nobody by that email or key."""

    async def find(self, read_table: ReadTable, reference: str) -> str | None:
        """The key of the person an email, a key or a record id in any system names (None: nobody);
        the console's customer search (docs/adr/0031)."""


@dataclass(frozen=True)
class Flow:
    """One business flow: what it reads and keeps, and how to install it."""

    name: str
    #: ``src.<system>.<entity>`` topics it consumes: a rebuild reads them from the start
    source_topics: tuple[str, ...]
    #: installs the flow's agents and tables; returns whatever the flow wants tests to reach
    install: Callable[[FlowContext], Any]
    #: other inputs a rebuild reads from the start (``links.<system>`` from the sinks)
    link_topics: tuple[str, ...] = ()
    #: the flow's stage topics: a rebuild derives their content again and starts them at the end
    internal_topics: tuple[str, ...] = ()
    #: its tables, by name (rebuild reports their sizes)
    tables: tuple[str, ...] = ()
    #: its direct stages (``FlowContext.direct``) and the topics each reads: ``((stage, topics), ...)``
    direct_stages: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: systems whose events it takes (its counters start at 0 for them)
    sources: tuple[str, ...] = ()
    #: the shipped mapping files' folder, when it has any
    mappings: Path | None = None
    mapping_tool: MappingsTool | None = field(default=None, compare=False)
    #: how ``stream-app privacy export`` reads a person out of its tables, when it holds personal data
    privacy: PrivacyTool | None = field(default=None, compare=False)
    #: how ``stream-app anomalies release`` lets a held change count: ``(customer, subject,
    #: operator)`` → ``(stage topic, key, message)``; None: the flow holds nothing back
    release: Callable[[str, str, str | None], tuple[str, str, dict[str, Any]]] | None = field(default=None, compare=False)
    #: runs when ``CONNECT_FLOWS`` is empty; a flow that needs fields or sinks a site must set up
    #: first (the engagement flows, docs/adr/0025) runs only when named
    by_default: bool = True

    @property
    def quarantine_topic(self) -> str:
        """Where its stages set aside what they cannot take (``FlowContext.quarantine``)."""
        return f"quarantine.{self.name}"
