"""The identity index of N customers on one worker: memory, time to ready, restart, lookups.

The customer sync's identity index (a replicated map, stream_app/replicated.py, docs/adr/0019,
0028) holds three entries per customer (its email, its TIMS and its Salesforce reference). This
bench writes them for ``--customers`` customers into a fresh index topic, then, each in a process
of its own so that the resident memory is the reader's:
1. the memory store (``CONNECT_STORE=memory``): seconds until ready, RSS, lookups/s;
2. the disk store (the default, RocksDB via rocksdict), cold: the same figures;
3. the disk store again on the same data directory (a restarted worker): seconds until ready.

Usage: .venv/bin/python bench/replicated_bench.py [--customers 1000000]
Needs a broker (KAFKA_BOOTSTRAP_SERVERS or the local one). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.kafka_admin import delete_topics, ensure_topics  # noqa: E402

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
NAME = "customer_sync_identity"


def entries(customer: int) -> list[tuple[bytes, bytes]]:
    key = uuid.UUID(int=customer).hex.encode()
    return [(f"email:person{customer}@bench.example".encode(), key),
            (f"tims:customer:C{customer:010d}".encode(), key),
            (f"salesforce:Contact:003{customer:015d}".encode(), key)]


async def fill(topic: str, customers: int) -> float:
    await ensure_topics(BOOTSTRAP, [topic], partitions=1, compacted=True)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=20, max_batch_size=512 * 1024,
                                compression_type=None, acks=1)
    await producer.start()
    started = time.monotonic()
    try:
        pending = []
        for customer in range(customers):
            for key, value in entries(customer):
                pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 30_000:
                await asyncio.gather(*pending)
                pending.clear()
                print(f"\r  written {customer + 1:,}/{customers:,} customers", end="", file=sys.stderr)
        await asyncio.gather(*pending)
        print(file=sys.stderr)
    finally:
        await producer.stop()
    return time.monotonic() - started


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def read(app_id: str, store: str, data_dir: str, customers: int) -> dict[str, Any]:
    """In the child process: build the map as a worker does, read the topic until ready."""
    from stream_app.app import create_app
    from stream_app.replicated import ReplicatedMap
    from stream_app.settings import load_settings

    settings = load_settings(kafka_bootstrap_servers=BOOTSTRAP, app_id=app_id, store=store, data_dir=data_dir)
    app = create_app(settings, flows=False, sinks=False, metrics=False)
    before = rss_mb()
    started = time.monotonic()
    index = ReplicatedMap(app, NAME)
    reader = asyncio.create_task(index._read())
    await index.ready()
    ready_s = time.monotonic() - started
    probes = [entries(random.randrange(customers))[random.randrange(3)][0].decode() for _ in range(100_000)]
    lookup_started = time.monotonic()
    found = sum(1 for key in probes if index.get(key) is not None)
    lookups = len(probes) / (time.monotonic() - lookup_started)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    if hasattr(index._entries, "close"):
        index._entries.close()
    return {"store": store, "ready_s": round(ready_s, 1), "rss_mb": round(rss_mb()), "rss_start_mb": round(before),
            "lookups_per_s": round(lookups), "found": found, "probes": len(probes)}


def child(app_id: str, store: str, data_dir: str, customers: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", app_id, store, data_dir, str(customers)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        app_id, store, data_dir, customers = args.child
        print(json.dumps(await read(app_id, store, data_dir, int(customers))))
        return
    app_id = f"bench-{uuid.uuid4().hex[:8]}"
    topic = f"{app_id}-{NAME}-changelog"
    print(f"writing {args.customers:,} customers' identity entries ({3 * args.customers:,} messages) to {topic}")
    written = await fill(topic, args.customers)
    print(f"  in {written:.1f}s")
    summary: dict[str, Any] = {"customers": args.customers, "entries": 3 * args.customers}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for label, store, data_dir in (("memory", "memory://", f"{tmp}/memory"),
                                           ("disk_cold", "rocksdb://", f"{tmp}/disk"),
                                           ("disk_restart", "rocksdb://", f"{tmp}/disk")):
                figures = child(app_id, store, data_dir, args.customers)
                assert figures["found"] == figures["probes"], figures
                print(f"{label}: ready after {figures['ready_s']}s, RSS {figures['rss_mb']} MB "
                      f"(at start {figures['rss_start_mb']} MB), {figures['lookups_per_s']:,} lookups/s")
                summary[label] = figures
    finally:
        await delete_topics(BOOTSTRAP, [topic])
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
