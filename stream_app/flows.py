"""Flows in the app: which ones run, and the context each one is installed with.

The app names no flow: it iterates ``topologies.registry`` (the shipped flows and those installed
packages declare by entry point), keeps the ones ``CONNECT_FLOWS`` selects (empty: all), and
installs each through a :class:`FlowRuntime`, the app side of ``topologies.flow.FlowContext``.
"""

from __future__ import annotations

import contextvars
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from stream_app import metrics
from stream_app.batching import run_batches
from stream_app.codecs import KEEP_BYTES, SafeJson, Undecodable, bounded, encode
from stream_app.replicated import ReplicatedMap
from stream_app.settings import Settings, SettingsError, env_name
from topologies.flow import Flow
from topologies.registry import all_flows

if TYPE_CHECKING:
    from stream_app.app import ConnectApp

__all__ = ["FlowRuntime", "BoundMetrics", "enabled_flows", "install_flows", "mapping_tools", "flow_mappings_dir", "input_topics", "internal_topics"]

log = logging.getLogger(__name__)
#: quarantine entries written by the current task (each agent is a task of its own)
_QUARANTINED_HERE: contextvars.ContextVar[int] = contextvars.ContextVar("quarantined_here", default=0)


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

    def topic(self, *names: str, **options: Any) -> Any:
        return self.app.owned.topic(*names, **options)

    def table(self, name: str, **options: Any) -> Any:
        return self.app.Table(name, **options)

    def replicated(self, name: str) -> ReplicatedMap:
        return ReplicatedMap(self.app, f"{self.flow.name}_{name}")

    def mappings_dir(self, shipped: Path) -> Path:
        return flow_mappings_dir(self.settings, self.flow.name, shipped)

    async def send(self, topic: Any, key: str, value: Any) -> Any:
        """Publish; returns the future of the broker's ack. Faust flushes the producer before it
        commits offsets, so a send nobody awaits is still never lost: the event is redone.

        The value is encoded here, once, and measured against the topic's limit: a message too
        large raises :class:`~connectors.kafka_limits.OversizeMessage` before anything is
        produced, and the stage boundary quarantines the input that led to it (docs/adr/0020)."""
        key_bytes, data = key.encode(), encode(value)
        await self.app.limits.check(topic.get_topic_name(), key_bytes, data)
        return await topic.send(key=key_bytes, value=data, value_serializer="raw")

    async def quarantine(self, reason: str, raw: Any) -> None:
        """Set ``raw`` aside on ``quarantine.<flow>`` with the reason, bounded in size (well
        within the topic's limit). When even that write fails, the entry goes to a local file and
        the log: never to silence."""
        self.counters["quarantined"] += 1
        _QUARANTINED_HERE.set(_QUARANTINED_HERE.get() + 1)
        metrics.observe_quarantined(self.flow.name)
        def entry(keep: int) -> dict[str, Any]:
            return {"flow": self.flow.name, "reason": reason[:2000], "raw": bounded(raw, keep)}

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

        async def counted(*args: Any) -> None:
            taken.inc()
            before = _QUARANTINED_HERE.get()
            await handle(*args)
            (quarantined if _QUARANTINED_HERE.get() > before else processed).inc()
        return counted

    async def run_batches(self, stream: Any, handle: Callable[[Any, Any], Awaitable[None]],
                          stage: str = "merge") -> None:
        await run_batches(stream, self._counted(stage, handle), self.send, size=self.settings.flow_batch_size,
                          linger=self.settings.flow_linger)


def flow_mappings_dir(settings: Settings, flow: str, shipped: Path) -> Path:
    """``<CONNECT_MAPPINGS_DIR>/<flow>`` when that folder exists, else the flow's shipped mappings."""
    if settings.mappings_dir is not None and (Path(settings.mappings_dir) / flow).is_dir():
        return Path(settings.mappings_dir) / flow
    return shipped


def enabled_flows(settings: Settings) -> list[Flow]:
    """The registered flows ``CONNECT_FLOWS`` selects (empty: every one)."""
    flows = all_flows()
    wanted = [name.strip() for name in settings.flows.split(",") if name.strip()]
    if not wanted:
        return flows
    known = {flow.name: flow for flow in flows}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise SettingsError(f"invalid settings:\n  {env_name('flows')}: no flow named {', '.join(unknown)} "
                            f"(registered: {', '.join(known) or 'none'})")
    return [known[name] for name in dict.fromkeys(wanted)]


def install_flows(app: "ConnectApp") -> dict[str, Any]:
    """Install the enabled flows on ``app``; returns ``{"flow:<name>": what install returned}``."""
    installed: dict[str, Any] = {}
    for flow in enabled_flows(app.settings):
        runtime = FlowRuntime(app, flow)
        app.owned.keep_history((*flow.source_topics, *flow.link_topics))  # a rebuild reads them
        metrics.declare_flow(flow.name, flow.sources)
        installed[f"flow:{flow.name}"] = flow.install(runtime)
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


def internal_topics(settings: Settings) -> list[str]:
    """The enabled flows' stage topics, which a rebuild derives again."""
    names = [name for flow in enabled_flows(settings) for name in flow.internal_topics]
    return [settings.topic(name) for name in dict.fromkeys(names)]
