"""Scale-out benchmark: 1, 2 and 4 workers on 8 partitions, and what a worker joining or leaving
costs.

The workload is the diagnostics round trip (stream_app/diagnostics.py): each ping on
``diag.ping`` is read, counted in a changelogged table and answered on ``diag.pong``, so it
measures what Faust and Kafka cost per message and how work spreads over workers; the customer
sync's own cost is bench/topology_bench.py's.

1. Throughput: for each worker count, a fresh app (own group, topics, state) whose workers are
   all ready (``/readyz``); then ``--pings`` pings at once, over every partition; pings per
   second from the first send to the last pong.
2. Rebalances: with two workers answering a steady ``--rate`` pings/s, a third joins, then one
   leaves (SIGTERM). For each: seconds until every worker is ready again (``/readyz`` 200, the
   newcomer included), and the longest ping→pong time during the 20 s after it (the pause
   users see), against the median before it.

Usage: .venv/bin/python bench/scaleout.py [--pings 20000] [--rate 100] [--workers 1,2,4]
Needs a broker (KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092). The last line printed is one
JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.worker import WorkerProcess, free_port  # noqa: E402

from topology_bench import forget  # noqa: E402

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
PARTITIONS = 8


_RUNS: list[str] = []  # each app's topics are deleted at the end


def app_env(workdir: Path) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    _RUNS.append(run)
    return {"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "CONNECT_APP_ID": f"bench-scale-{run}",
            "CONNECT_TOPIC_PREFIX": f"bs{run}.", "CONNECT_TOPIC_PARTITIONS": str(PARTITIONS),
            "CONNECT_BROKER_SESSION_TIMEOUT": "10", "CONNECT_BROKER_HEARTBEAT_INTERVAL": "1",
            "CONNECT_DATA_DIR": str(workdir / run)}


def ready(worker: WorkerProcess) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{worker.env['CONNECT_WEB_PORT']}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


async def all_ready(workers: list[WorkerProcess], timeout: float = 180) -> float:
    """Seconds until every worker answers /readyz with 200."""
    started = time.monotonic()
    while not all(ready(w) for w in workers):
        if time.monotonic() - started > timeout:
            raise TimeoutError("workers not ready")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def worker(env: dict[str, str], workdir: Path, name: str) -> WorkerProcess:
    """One worker with its own web port and state directory (RocksDB locks its files)."""
    data = Path(env["CONNECT_DATA_DIR"]) / name
    data.mkdir(parents=True, exist_ok=True)
    return WorkerProcess({**env, "CONNECT_WEB_PORT": str(free_port()), "CONNECT_DATA_DIR": str(data)},
                         workdir / f"{name}.log", name=name)


async def start(workers: list[WorkerProcess]) -> None:
    await asyncio.gather(*(asyncio.to_thread(w.start, 180) for w in workers))


def stop(workers: list[WorkerProcess]) -> None:
    for one in workers:
        if one.proc is not None:
            one.stop()


class Pongs:
    """Reads ``diag.pong`` in the background: how many, and each ping→pong time in seconds."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.count = 0
        self.latencies: list[tuple[float, float]] = []  # (ping sent at, seconds to its pong)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "Pongs":
        consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest",
                                    group_id=None, enable_auto_commit=False, metadata_max_age_ms=1000)
        await consumer.start()

        async def read() -> None:
            try:
                while True:
                    for records in (await consumer.getmany(timeout_ms=200)).values():
                        for record in records:
                            self.count += 1
                            sent = json.loads(record.value).get("sent_at")
                            if sent:
                                self.latencies.append((sent, record.timestamp / 1000 - sent))
            finally:
                await consumer.stop()

        self._task = asyncio.create_task(read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def wait_for(self, count: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.count < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.count} of {count} pongs")
            await asyncio.sleep(0.05)


async def throughput(workers: int, pings: int, workdir: Path) -> dict[str, Any]:
    env = app_env(workdir)
    prefix = env["CONNECT_TOPIC_PREFIX"]
    running = [worker(env, workdir, f"w{workers}-{i}") for i in range(workers)]
    try:
        await start(running)
        await all_ready(running)
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5)
        await producer.start()
        async with Pongs(f"{prefix}diag.pong") as pongs:
            began = time.monotonic()
            sends = [await producer.send(f"{prefix}diag.ping", json.dumps({"id": i}).encode(),
                                         key=f"k{i}".encode(), partition=i % PARTITIONS) for i in range(pings)]
            await asyncio.gather(*sends)
            await producer.stop()
            await pongs.wait_for(pings)
            seconds = time.monotonic() - began
        return {"workers": workers, "pings": pings, "seconds": round(seconds, 1), "pings_per_s": round(pings / seconds)}
    finally:
        stop(running)


async def steady(producer: AIOKafkaProducer, topic: str, rate: float, stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set():
        await producer.send(topic, json.dumps({"id": i, "sent_at": time.time()}).encode(), key=f"s{i}".encode(),
                            partition=i % PARTITIONS)
        i += 1
        await asyncio.sleep(1 / rate)


def pause(pongs: Pongs, since: float, window: float = 20.0) -> float:
    during = [latency for sent, latency in pongs.latencies if since <= sent <= since + window]
    return round(max(during, default=0.0), 2)


async def rebalances(rate: float, workdir: Path) -> dict[str, Any]:
    env = app_env(workdir)
    prefix = env["CONNECT_TOPIC_PREFIX"]
    running = [worker(env, workdir, f"r-{i}") for i in range(2)]
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    done = asyncio.Event()
    leaving: WorkerProcess | None = None
    try:
        await start(running)
        await all_ready(running)
        async with Pongs(f"{prefix}diag.pong") as pongs:
            sending = asyncio.create_task(steady(producer, f"{prefix}diag.ping", rate, done))
            await asyncio.sleep(10)
            before = statistics.median(latency for _, latency in pongs.latencies) if pongs.latencies else 0.0

            joined_at = time.time()
            began = time.monotonic()
            running.append(worker(env, workdir, "r-2"))
            await start(running[-1:])
            join_ready = time.monotonic() - began + await all_ready(running)
            await asyncio.sleep(max(0.0, joined_at + 20 - time.time()))

            left_at = time.time()
            leaving = running.pop(0)
            began = time.monotonic()
            await asyncio.to_thread(leaving.stop)
            await asyncio.sleep(2)  # the others notice within a heartbeat; then wait for their rebalance
            leave_ready = time.monotonic() - began + await all_ready(running)
            await asyncio.sleep(max(0.0, left_at + 20 - time.time()))
            done.set()
            await sending
        return {"steady_rate": rate, "median_latency_before_s": round(before, 3),
                "join": {"ready_after_s": round(join_ready, 1), "max_latency_s": pause(pongs, joined_at)},
                "leave": {"ready_after_s": round(leave_ready, 1), "max_latency_s": pause(pongs, left_at)}}
    finally:
        done.set()
        await producer.stop()
        stop(running + [leaving] if leaving is not None else running)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pings", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    figures: dict[str, Any] = {"partitions": PARTITIONS, "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
                               "date": time.strftime("%Y-%m-%d", time.gmtime()),
                               "load_average_at_start": round(os.getloadavg()[0], 1)}
    workdir = Path(tempfile.mkdtemp(prefix="scaleout-"))  # kept: the workers' logs are there
    print(f"worker logs and state: {workdir}", flush=True)
    figures["throughput"] = []
    try:
        for count in (int(n) for n in args.workers.split(",")):
            result = await throughput(count, args.pings, workdir)
            print(f"{count} worker(s): {result['pings_per_s']} pings/s", flush=True)
            figures["throughput"].append(result)
        figures["rebalance"] = await rebalances(args.rate, workdir)
    finally:
        for run in _RUNS:
            await forget(run)
    print(f"join: {figures['rebalance']['join']}, leave: {figures['rebalance']['leave']}", flush=True)
    figures["load_average_at_end"] = round(os.getloadavg()[0], 1)  # the CPUs may be shared: read with it
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
