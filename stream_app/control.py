"""``control.flows``: what operators tell the running workers (docs/adr/0037).

Three commands, written by the console, read by every worker (each reads the whole topic, with
no consumer group, so a command reaches all of them):

- ``pause`` / ``resume`` a flow: each of its stages stops at its boundary before the next
  message (:class:`FlowGates`, checked by ``FlowRuntime``); nothing is lost or skipped, the
  messages wait in Kafka. The topic is compacted by key ``pause:<flow>``, so a worker that
  starts later reads the last word and starts the flow paused.
- ``reload`` a flow's mappings: the flow object its install returned is asked to
  ``reload_mappings()`` (every flow with mapping files has it; a flow without it takes the
  files at its next start).

After acting, a worker writes a ``done`` record (who, what, whether it worked, the reason) that
the console shows. Commands older than the worker's start only set the pause state: a reload
is what install already did.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from connectors.kafka_admin import ensure_topics
from connectors.kafka_security import client_options

__all__ = ["CONTROL_FLOWS", "ACTIONS", "FlowGates", "ControlWriter", "ControlReader", "command", "latest_by_key"]

log = logging.getLogger(__name__)

#: the topic's name, without the environment prefix
CONTROL_FLOWS = "control.flows"
ACTIONS = ("pause", "resume", "reload")
#: seconds before a worker reads the control topic again after a failure
RETRY_DELAY = 5.0


class FlowGates:
    """One open/closed gate per flow; a closed gate holds every stage of its flow."""

    def __init__(self) -> None:
        self._gates: dict[str, asyncio.Event] = {}

    def gate(self, flow: str) -> asyncio.Event:
        if flow not in self._gates:
            self._gates[flow] = asyncio.Event()
            self._gates[flow].set()
        return self._gates[flow]

    def paused(self, flow: str) -> bool:
        return not self.gate(flow).is_set()

    def set_paused(self, flow: str, paused: bool) -> None:
        gate = self.gate(flow)
        if paused:
            gate.clear()
        else:
            gate.set()


def command(action: str, flow: str, who: str, **detail: Any) -> tuple[str, dict[str, Any]]:
    """(key, value) of a command; pause and resume share a key, so compaction keeps the last."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    key = f"pause:{flow}" if action in ("pause", "resume") else f"reload:{flow}"
    return key, {"kind": "command", "action": action, "flow": flow, "who": who, "at_ms": int(time.time() * 1000),
                 **detail}


def latest_by_key(values: Mapping[str, dict[str, Any]], flow: str) -> dict[str, Any]:
    """What the console shows of one flow: ``paused`` and the last ``done`` records."""
    pause = values.get(f"pause:{flow}")
    done = [value for key, value in values.items() if key.startswith(f"done:{flow}:")]
    return {"paused": bool(pause and pause.get("action") == "pause"), "pause": pause,
            "done": sorted(done, key=lambda value: value.get("at_ms", 0), reverse=True)}


class ControlWriter:
    """The console's producer on the control topic (acks from all replicas, awaited)."""

    def __init__(self, bootstrap: str, topic: str, replication: int = 1) -> None:
        self.bootstrap, self.topic, self.replication = bootstrap, topic, replication
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        await ensure_topics(self.bootstrap, [self.topic], partitions=1, replication=self.replication, compacted=True)
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
                                          **client_options())
        await self._producer.start()

    async def send(self, key: str, value: dict[str, Any]) -> None:
        assert self._producer is not None, "start() first"
        await self._producer.send_and_wait(self.topic, json.dumps(value).encode(), key=key.encode())

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()


@dataclass
class ControlReader:
    """A worker's task: applies the commands on ``topic`` to ``gates`` and ``reloaders``
    (flow → a callable that reloads its mappings and says what it loaded)."""

    bootstrap: str
    topic: str
    gates: FlowGates
    reloaders: Mapping[str, Callable[[], str]]
    worker: str = ""
    replication: int = 1

    def __post_init__(self) -> None:
        self.worker = self.worker or socket.gethostname()
        self._writer = ControlWriter(self.bootstrap, self.topic, self.replication)

    async def run(self) -> None:
        """Read until the worker stops; a failure (the broker away) starts the reading again."""
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - pause state stays as it was meanwhile
                log.warning("control: reading %s failed (%s: %s); again in %.0f s", self.topic,
                            type(exc).__name__, exc, RETRY_DELAY)
                await asyncio.sleep(RETRY_DELAY)

    async def _read(self) -> None:
        await self._writer.start()
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", client_id=f"connect-control-{self.worker}",
                                    **client_options())
        await consumer.start()
        try:
            partition = TopicPartition(self.topic, 0)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            started = (await consumer.end_offsets([partition]))[partition]
            log.info("control: reading %s (%d commands before this start set the pause state)", self.topic, started)
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for record in batch.get(partition, []):
                    await self._apply(record.value, live=record.offset >= started)
        finally:
            await consumer.stop()
            await self._writer.stop()

    async def _apply(self, raw: bytes | None, *, live: bool) -> None:
        try:
            value = json.loads(raw or b"null")
        except ValueError:
            log.warning("control: a record on %s is not JSON; skipped", self.topic)
            return
        if not isinstance(value, dict) or value.get("kind") != "command":
            return
        action, flow = value.get("action"), str(value.get("flow", ""))
        if action in ("pause", "resume"):
            self.gates.set_paused(flow, action == "pause")
            if live:
                log.warning("control: flow %s %s by %s", flow, "paused" if action == "pause" else "resumed",
                            value.get("who"))
                await self._done(flow, action, True, "")
        elif action == "reload" and live:
            await self._done(flow, action, *self._reload(flow))

    def _reload(self, flow: str) -> tuple[bool, str]:
        reload = self.reloaders.get(flow)
        if reload is None:
            return False, f"flow {flow} does not reload its mappings while running; restart the workers"
        try:
            said = reload()
        except ValueError as exc:  # the files the console checked changed since, or a target is new
            log.error("control: flow %s kept its mappings: %s", flow, exc)
            return False, str(exc)
        log.warning("control: flow %s reloaded its mappings (%s)", flow, said)
        return True, said

    async def _done(self, flow: str, action: str, ok: bool, message: str) -> None:
        value = {"kind": "done", "action": action, "flow": flow, "worker": self.worker, "ok": ok,
                 "message": message[:2000], "at_ms": int(time.time() * 1000)}
        try:
            await self._writer.send(f"done:{flow}:{action}:{self.worker}", value)
        except Exception as exc:  # noqa: BLE001 - the action stands; only its report is missing
            log.warning("control: could not report %s of %s (%s)", action, flow, type(exc).__name__)
