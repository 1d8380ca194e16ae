"""Flows in the app: which ones run, and the context each one is installed with.

The app names no flow: it iterates ``topologies.registry`` (the shipped flows and those installed
packages declare by entry point), keeps the ones ``CONNECT_FLOWS`` selects (empty: all), and
installs each through a :class:`FlowRuntime`, the app side of ``topologies.flow.FlowContext``.
"""

from __future__ import annotations

import contextvars
import logging
import socket
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

from aiokafka import TopicPartition

from connectors import kafka_admin

from stream_app import metrics
from stream_app.batching import run_batches
from stream_app.codecs import KEEP_BYTES, SafeJson, Undecodable, bounded, encode
from stream_app.control import CONTROL_FLOWS, ControlReader, FlowGates
from stream_app.direct import DirectStage, collect_send, direct_group
from stream_app.direct_table import DirectTable, DirectTableStage
from stream_app.replicated import ReplicatedMap
from stream_app.settings import Settings, SettingsError, env_name
from topologies.flow import Flow
from topologies.registry import all_flows

if TYPE_CHECKING:
    from stream_app.app import ConnectApp

__all__ = ["FlowRuntime", "BoundMetrics", "enabled_flows", "install_flows", "mapping_tools", "flow_mappings_dir",
           "replicated_topic", "input_topics", "internal_topics", "direct_groups", "AppGroups"]

log = logging.getLogger(__name__)
#: quarantine entries written by the current task (each agent is a task of its own)
_QUARANTINED_HERE: contextvars.ContextVar[int] = contextvars.ContextVar("quarantined_here", default=0)


#: where the message the current task handles came from (quarantine entries name it)
_ORIGIN: contextvars.ContextVar[tuple[str, Any] | None] = contextvars.ContextVar("message_origin", default=None)


def origin_of(stage: str, event: Any) -> dict[str, Any] | None:
    """``{stage, topic, partition, offset, key}`` of a stage's input message (a Faust event or a
    direct stage's), so that a quarantine entry says where to find or send it again."""
    message = getattr(event, "message", event)
    topic, partition, offset = (getattr(message, name, None) for name in ("topic", "partition", "offset"))
    if not isinstance(topic, str) or not isinstance(partition, int) or not isinstance(offset, int):
        return None
    key = getattr(event, "key", None)
    if isinstance(key, (bytes, bytearray)):
        key = bytes(key).decode(errors="replace")
    return {"stage": stage, "topic": topic, "partition": partition, "offset": offset,
            "key": key if isinstance(key, str) else None}


class BoundMetrics:
    """The flow counters of ``stream_app.metrics`` with one flow's name bound."""

    def __init__(self, flow: str) -> None:
        self.flow = flow

    def event_in(self, source: str, entity: str) -> None:
        metrics.observe_event_in(self.flow, source, entity)

    def command_out(self, system: str, sobject: str, source_commit_ms: int | None) -> None:
        metrics.observe_command_out(self.flow, system, sobject, source_commit_ms)

    def duplicate(self, source: str) -> None:
        metrics.observe_duplicate(self.flow, source)

    def echo_fields(self, source: str, count: int) -> None:
        metrics.observe_echo_fields(self.flow, source, count)

    def conflict(self, owner: str | None, rule: str) -> None:
        metrics.observe_conflict(self.flow, owner, rule)

    def waiting(self, reference: str, count: int, oldest_seconds: float) -> None:
        metrics.observe_waiting(self.flow, reference, count, oldest_seconds)

    def anomaly(self, rule: str, held: bool) -> None:
        metrics.observe_anomaly(self.flow, rule, held)


class FlowRuntime:
    """One flow's view of the app (implements ``topologies.flow.FlowContext``)."""

    def __init__(self, app: "ConnectApp", flow: Flow) -> None:
        self.app = app
        self.flow = flow
        self.settings: Settings = app.settings
        self.metrics = BoundMetrics(flow.name)
        #: in-process counts (quarantined, ...), read by tests and /flows pages
        self.counters: Counter[str] = Counter()
        self._quarantine_topic = self.topic(flow.quarantine_topic)
        #: this flow's direct stages, by stage name (docs/adr/0028)
        self.direct_stages: dict[str, DirectStage] = {}
        #: closed while an operator has the flow paused (``stream_app.control``, docs/adr/0037)
        self.gate = flow_gates(app).gate(flow.name)

    def topic(self, *names: str, **options: Any) -> Any:
        return self.app.owned.topic(*names, **options)

    def table(self, name: str, **options: Any) -> Any:
        return self.app.Table(name, **options)

    def replicated(self, name: str, *, lasting: bool = False) -> ReplicatedMap:
        return ReplicatedMap(self.app, f"{self.flow.name}_{name}",
                             topic_name=replicated_topic(self.settings, self.flow.name, name, lasting=lasting,
                                                         group=self.app.conf.id))

    def mappings_dir(self, shipped: Path) -> Path:
        return flow_mappings_dir(self.settings, self.flow.name, shipped)

    async def send(self, topic: Any, key: str, value: Any) -> Any:
        """Publish; returns the future of the broker's ack. Faust flushes the producer before it
        commits offsets, so a send nobody awaits is still never lost: the event is redone.

        The value is encoded here, once, and measured against the topic's limit: a message too
        large raises :class:`~connectors.kafka_limits.OversizeMessage` before anything is
        produced, and the stage boundary quarantines the input that led to it (docs/adr/0020)."""
        key_bytes, data = key.encode(), encode(value)
        name = topic.get_topic_name()
        await self.app.limits.check(name, key_bytes, data)
        # Straight to the producer: Faust's Topic.send adds a message object, a channel and
        # callbacks per send that nothing here uses (docs/adr/0028); the partition is the
        # producer's default for the key, as with Topic.send.
        return collect_send(await self.app.producer.send(name, key_bytes, data, None, None, None))

    async def quarantine(self, reason: str, raw: Any) -> None:
        """Set ``raw`` aside on ``quarantine.<flow>`` with the reason, bounded in size (well
        within the topic's limit). When even that write fails, the entry goes to a local file and
        the log: never to silence."""
        self.counters["quarantined"] += 1
        _QUARANTINED_HERE.set(_QUARANTINED_HERE.get() + 1)
        metrics.observe_quarantined(self.flow.name)
        taken = _ORIGIN.get()  # (stage, message): made into a dict only here, for the rare entry
        origin = origin_of(*taken) if taken is not None else None

        def entry(keep: int) -> dict[str, Any]:
            made = {"flow": self.flow.name, "reason": reason[:2000], "raw": bounded(raw, keep)}
            return {**made, "origin": origin} if origin else made

        try:
            room = await self.app.limits.limit(self._quarantine_topic.get_topic_name())
            await self.send(self._quarantine_topic, self.flow.name, entry(min(KEEP_BYTES, room // 2)))
        except Exception as exc:  # noqa: BLE001 - the fallback below keeps the entry
            self._quarantine_locally(entry(KEEP_BYTES), exc)

    def _quarantine_locally(self, entry: dict[str, Any], exc: Exception) -> None:
        path = Path(self.settings.data_dir) / f"quarantine.{self.flow.name}.jsonl"
        log.error("flow %s: quarantine write failed (%s: %s); entry kept in %s",
                  self.flow.name, type(exc).__name__, exc, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as file:
            file.write(SafeJson()._dumps(entry) + b"\n")

    async def each(self, stage: str, stream: Any, handle: Callable[[Any], Awaitable[None]]) -> None:
        """The stage boundary: ``handle`` each event; an unreadable value, or one that makes
        ``handle`` raise, is quarantined with the stage and the reason, and the stage goes on.
        Every message is counted in, then processed or quarantined (``connect_flow_stage_messages``)."""
        guarded = self._counted(stage, self._guarded(stage, handle))
        async for event in stream.events():
            await guarded(event)

    def direct(self, stage: str, topic: Any, handle: Callable[[Any], Awaitable[None]], *,
               before: Callable[[], Awaitable[None]] | None = None) -> DirectStage:
        names = self._declared(stage, topic)
        runner = DirectStage(self.app, self.flow.name, stage, names, self._counted(stage, self._guarded(stage, handle)),
                             before=before)
        self.app.task(runner.run)
        self.direct_stages[stage] = runner
        self.app.direct_stages.append(runner)
        return runner

    def direct_table(self, name: str) -> DirectTable:
        return DirectTable(self.app, name)

    def direct_batches(self, stage: str, topic: Any, handle: Callable[[Any, Any], Awaitable[None]], *,
                       tables: list[DirectTable], before: Callable[[], Awaitable[None]] | None = None) -> DirectStage:
        names = self._declared(stage, topic)
        runner = DirectTableStage(self.app, self.flow.name, stage, names, self._counted(stage, handle), tables,
                                  self.send, before=before)
        runner.gate = self.gate
        self.app.task(runner.run)
        self.direct_stages[stage] = runner
        self.app.direct_stages.append(runner)
        return runner

    def _declared(self, stage: str, topic: Any) -> list[str]:
        """The full names of the topics ``stage`` reads, checked against ``Flow.direct_stages``."""
        declared = dict(self.flow.direct_stages)
        if stage not in declared:
            raise ValueError(f"flow {self.flow.name}: direct stage {stage!r} is not in Flow.direct_stages")
        names = [self.settings.topic(name) for name in declared[stage]]
        if sorted(names) != sorted(topic.topics):
            raise ValueError(f"flow {self.flow.name}: direct stage {stage!r} reads {list(topic.topics)}, "
                             f"Flow.direct_stages says {names}")
        return names

    def _guarded(self, stage: str, handle: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        async def guarded(event: Any) -> None:
            value = event.value
            if isinstance(value, Undecodable):
                await self.quarantine(f"{stage}: not JSON: {value.error}", value)
                return
            try:
                await handle(event)
            except Exception as exc:  # noqa: BLE001 - one message must not stop the stage
                log.exception("flow %s, stage %s: a message raised; quarantined", self.flow.name, stage)
                await self.quarantine(f"{stage} raised {type(exc).__name__}: {exc}", value)
        return guarded

    def _counted(self, stage: str, handle: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """``handle`` with the stage's counts: a message is quarantined when ``quarantine`` ran
        while it was handled (counted per task: stages run concurrently)."""
        taken, processed, quarantined = metrics.stage_counters(self.flow.name, stage)
        gate = self.gate

        async def counted(*args: Any) -> None:
            if not gate.is_set():  # paused: the message waits here, unhandled and uncommitted
                await gate.wait()
            taken.inc()
            before = _QUARANTINED_HERE.get()
            token = _ORIGIN.set((stage, args[-1]) if args else None)
            try:
                await handle(*args)
            finally:
                _ORIGIN.reset(token)
            (quarantined if _QUARANTINED_HERE.get() > before else processed).inc()
        return counted

    async def run_batches(self, stream: Any, handle: Callable[[Any, Any], Awaitable[None]],
                          stage: str = "merge") -> None:
        await run_batches(stream, self._counted(stage, handle), self.send, size=self.settings.flow_batch_size,
                          linger=self.settings.flow_linger)


def replicated_topic(settings: Settings, flow: str, name: str, *, lasting: bool, group: str | None = None) -> str:
    """The topic of a flow's replicated map: a changelog of the app's group (a new app version or
    ``rebuild --wipe`` starts it empty), or, ``lasting``, ``<prefix>state.<flow>.<name>``, which
    outlives both (the people erased must stay erased)."""
    if lasting:
        return settings.topic(f"state.{flow}.{name}")
    if group is None:
        raise ValueError(f"{flow}_{name}: a map of the app's group needs the group's id")
    return f"{group}-{flow}_{name}-changelog"


def flow_mappings_dir(settings: Settings, flow: str, shipped: Path) -> Path:
    """``<CONNECT_MAPPINGS_DIR>/<flow>`` when that folder exists, else the flow's shipped mappings."""
    if settings.mappings_dir is not None and (Path(settings.mappings_dir) / flow).is_dir():
        return Path(settings.mappings_dir) / flow
    return shipped


def enabled_flows(settings: Settings) -> list[Flow]:
    """The registered flows ``CONNECT_FLOWS`` selects (empty: every one that runs by default)."""
    flows = all_flows()
    wanted = [name.strip() for name in settings.flows.split(",") if name.strip()]
    if not wanted:
        return [flow for flow in flows if flow.by_default]
    known = {flow.name: flow for flow in flows}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise SettingsError(f"invalid settings:\n  {env_name('flows')}: no flow named {', '.join(unknown)} "
                            f"(registered: {', '.join(known) or 'none'})")
    return [known[name] for name in dict.fromkeys(wanted)]


def flow_gates(app: Any) -> FlowGates:
    """The app's pause gates, one per flow (made on first use)."""
    gates = getattr(app, "flow_gates", None)
    if gates is None:
        gates = app.flow_gates = FlowGates()
    return gates  # type: ignore[no-any-return]


def install_flows(app: "ConnectApp") -> dict[str, Any]:
    """Install the enabled flows on ``app``; returns ``{"flow:<name>": what install returned}``.
    A worker task reads ``control.flows`` (pause, resume, reload mappings; docs/adr/0037)."""
    installed: dict[str, Any] = {}
    app.direct_groups = direct_groups(app.settings, app.conf.id)
    app.direct_stages = []
    reloaders: dict[str, Callable[[], str]] = {}
    for flow in enabled_flows(app.settings):
        runtime = FlowRuntime(app, flow)
        app.owned.keep_history((*flow.source_topics, *flow.link_topics))  # a rebuild reads them
        metrics.declare_flow(flow.name, flow.sources)
        installed[f"flow:{flow.name}"] = flow.install(runtime)
        if callable(getattr(installed[f"flow:{flow.name}"], "reload_mappings", None)):
            reloaders[flow.name] = installed[f"flow:{flow.name}"].reload_mappings
    settings = app.settings
    control = ControlReader(settings.kafka_bootstrap_servers, settings.topic(CONTROL_FLOWS), flow_gates(app),
                            reloaders, worker=f"{socket.gethostname()}:{settings.web_port}",
                            replication=settings.topic_replication_factor)
    app.task(control.run)
    return installed


def mapping_tools(settings: Settings) -> list[tuple[str, Any, Path]]:
    """``(flow name, its mapping tool, the folder its mappings are read from)`` of each enabled
    flow that has mapping files."""
    tools = []
    for flow in enabled_flows(settings):
        if flow.mapping_tool is not None and flow.mappings is not None:
            tools.append((flow.name, flow.mapping_tool, flow_mappings_dir(settings, flow.name, flow.mappings)))
    return tools


def input_topics(settings: Settings) -> list[str]:
    """What a rebuild reads from the start: the enabled flows' source and link topics."""
    names = [name for flow in enabled_flows(settings) for name in (*flow.source_topics, *flow.link_topics)]
    return [settings.topic(name) for name in dict.fromkeys(names)]


def direct_groups(settings: Settings, group: str) -> dict[str, list[str]]:
    """The consumer groups of the enabled flows' direct stages (docs/adr/0028), each with the
    topics it reads, for the app whose Faust group is ``group``."""
    return {direct_group(group, flow.name, stage): [settings.topic(name) for name in topics]
            for flow in enabled_flows(settings) for stage, topics in flow.direct_stages}


@dataclass(frozen=True)
class AppGroups:
    """The consumer groups of one app version: Faust's (``group``) and one per direct stage, with
    the topics each reads. A topic a direct stage reads is read by direct stages only (Faust
    agents read the rest), so its offsets are those of its direct stages' groups: rebuild, replay
    and the lag metric read and move them there."""

    group: str
    #: direct stage group → the topics it reads
    direct: Mapping[str, list[str]]

    @classmethod
    def of(cls, settings: Settings, group: str) -> "AppGroups":
        return cls(group, direct_groups(settings, group))

    def all(self) -> list[str]:
        return [self.group, *self.direct]

    def readers(self, topic: str) -> list[str]:
        """The groups whose offsets say how far ``topic`` is read."""
        return [name for name, topics in self.direct.items() if topic in topics] or [self.group]

    def split(self, offsets: Mapping[TopicPartition, int]) -> dict[str, dict[TopicPartition, int]]:
        """``offsets`` by the group(s) that read each topic."""
        out: dict[str, dict[TopicPartition, int]] = {}
        for tp, offset in offsets.items():
            for name in self.readers(tp.topic):
                out.setdefault(name, {})[tp] = offset
        return out

    async def committed(self, bootstrap: str) -> dict[TopicPartition, int]:
        """Each partition's committed offset in the group(s) that read it (the lowest, when several
        direct stages read a topic and committed there)."""
        faust = await kafka_admin.committed_offsets(bootstrap, self.group)
        direct_topics = {topic for topics in self.direct.values() for topic in topics}
        result = {tp: offset for tp, offset in faust.items() if tp.topic not in direct_topics}
        for name, topics in self.direct.items():
            for tp, offset in (await kafka_admin.committed_offsets(bootstrap, name)).items():
                if tp.topic in topics:
                    result[tp] = min(offset, result.get(tp, offset))
        return result

    async def lag(self, bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
        """End offset minus committed offset per partition of ``topics``, each in the group(s)
        that read it (the largest, where several read a topic)."""
        by_group: dict[str, list[str]] = {}
        for topic in topics:
            for name in self.readers(topic):
                by_group.setdefault(name, []).append(topic)
        result: dict[TopicPartition, int] = {}
        for name, names in by_group.items():
            for tp, lag in (await kafka_admin.lag(bootstrap, name, names)).items():
                result[tp] = max(lag, result.get(tp, 0))
        return result

    async def commit(self, bootstrap: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Set committed offsets in the group(s) that read each topic (refused while a group has
        live members)."""
        for name, part in self.split(offsets).items():
            await kafka_admin.commit_offsets(bootstrap, name, part)

    async def live(self, bootstrap: str) -> list[str]:
        """The groups that have live members now."""
        return [name for name in self.all() if await kafka_admin.live_members(bootstrap, name)]


def internal_topics(settings: Settings) -> list[str]:
    """The enabled flows' stage topics, which a rebuild derives again."""
    names = [name for flow in enabled_flows(settings) for name in flow.internal_topics]
    return [settings.topic(name) for name in dict.fromkeys(names)]
