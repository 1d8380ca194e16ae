"""The Salesforce sandbox (org, REST/OAuth, Pub/Sub) on its own event loop in a thread, and a
reader of several topics at once, for the source's integration tests.

The servers get their own loop so that a test can block (on a subprocess, on a writer thread)
without stalling them, and so that a source in the test's loop meets them over real sockets.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from aiokafka import AIOKafkaConsumer
from fastavro import parse_schema, schemaless_reader

from connectors.kafka_io import KafkaTarget, ensure_source_topics
from sandbox.run import Sandbox, start_sandbox
from sandbox.salesforce.eventbus import EventBus
from tests.support.worker import STREAM_APP

__all__ = ["SandboxThread", "SourceProcess", "bus_event_ids", "read_topics"]


class SandboxThread:
    def __init__(self, keepalive_seconds: float = 1.0) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sf-sandbox", daemon=True)
        self.thread.start()
        ports = {"salesforce-rest": 0, "salesforce-pubsub": 0, "pardot": 0, "tims": 0}
        self.sandbox: Sandbox = self.run(start_sandbox(ports=ports, keepalive_seconds=keepalive_seconds))

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def env(self, entities: str = "Lead,Contact,Account") -> dict[str, str]:
        return {**self.sandbox.worker_env(), "CONNECT_SALESFORCE_ENTITIES": entities}

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The same as :meth:`env`, as keyword arguments of ``load_settings``."""
        return {key.removeprefix("CONNECT_").lower(): value for key, value in self.env().items()
                if key.startswith("CONNECT_SALESFORCE_")} | overrides

    def stop(self) -> None:
        self.run(self.sandbox.stop())
        self.run(_cancel_leftovers())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _cancel_leftovers() -> None:
    """Server-side call handlers still parked after the servers stopped."""
    current = asyncio.current_task()
    leftovers = [t for t in asyncio.all_tasks() if t is not current]
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


def bus_event_ids(bus: EventBus, change_types: Iterable[str] = ("CREATE", "UPDATE", "DELETE", "UNDELETE")) -> set[str]:
    """The event id the source must publish for each record of each retained change event,
    read from the bus independently of the code under test."""
    wanted = set(change_types)
    ids: set[str] = set()
    for event in bus.events():
        if event.change_type not in wanted:
            continue
        schema = parse_schema(json.loads(bus.schema_json_by_id(event.schema_id) or "{}"))
        header = schemaless_reader(io.BytesIO(event.payload), schema)["ChangeEventHeader"]
        for record_id in header["recordIds"]:
            ids.add(f"sf:{header['transactionKey']}:{header['sequenceNumber']}:{record_id}")
    return ids


async def read_topics(
    bootstrap: str,
    topics: list[str],
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Every message of ``topics`` from the start, until ``until(values)`` holds (TimeoutError
    with what was read, otherwise). Topics nobody wrote to yet are created as the source would."""
    await ensure_source_topics(KafkaTarget(bootstrap), topics)
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
                                enable_auto_commit=False, metadata_max_age_ms=1000)
    await consumer.start()
    values: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(values):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topics}: condition not met after {timeout}s; read {len(values)} messages")
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                values.extend(json.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return values


class SourceProcess:
    """``stream-app source salesforce`` as a subprocess, the way an operator runs it."""

    READY = "subscribed to "

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self, channels: int, timeout: float = 60.0) -> "SourceProcess":
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([STREAM_APP, "--loglevel", "info", "source", "salesforce"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.log_text().count(self.READY) < channels:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"source not subscribed (exit {self.proc.poll()}):\n{self.log_text()[-4000:]}")
            time.sleep(0.1)
        return self

    def log_text(self) -> str:
        with open(self.log_path, "rb") as fh:
            fh.seek(self._offset)
            return fh.read().decode(errors="replace")

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode
