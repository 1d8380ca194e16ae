"""How fast the ops console draws its pages with 100,000 dead letters and 1,000,000 customers.

Fills a fresh topic prefix on the broker (KAFKA_BOOTSTRAP_SERVERS, default 127.0.0.1:9092) with
dead letters on ``dlq.salesforce`` and customers in the customer sync's table changelogs (the
golden records and four identity entries each: email, Salesforce Contact, Pardot prospect, TIMS
customer), starts ``stream-app console`` on it, logs in and times each page over HTTP: the first
draw and then the median and worst of several draws, after the start-up (``ready_seconds``: from
the console's start until it has read every topic once and found a customer; ``ready_rss_mb`` its
memory then). Prints one JSON line; deletes its topics at the end. Goal (issue 17): under 300 ms
per page.

    .venv/bin/python bench/console_bench.py [--dead-letters 100000] [--customers 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.kafka_admin import KafkaAdmin, ensure_topics  # noqa: E402
from tests.support.console import PASSWORD, ConsoleProcess  # noqa: E402

DRAWS = 7


def dead_letters(count: int) -> Iterator[tuple[bytes, bytes]]:
    codes = ["FIELD_CUSTOM_VALIDATION_EXCEPTION", "UNABLE_TO_LOCK_ROW", "DUPLICATE_VALUE", "INVALID_FIELD"]
    objects = ["Contact", "Account", "Task", "Campaign"]
    for i in range(count):
        command = {"system": "salesforce", "object": objects[i % 4], "operation": "upsert", "external_id_field": "Id",
                   "external_id": f"003B{i:014d}", "fields": {"Email": f"person{i}@example.com", "Phone": "+14155550134"},
                   "version": i, "record_key": f"k{i}", "idempotency_key": f"i{i}"}
        value = {"reason": "rejected", "error_code": codes[i % 4], "error": f"record {i} refused", "attempts": 1,
                 "system": "salesforce", "object": objects[i % 4], "partition_key": f"salesforce:Contact:{i}",
                 "command": command}
        yield f"salesforce:Contact:{i}".encode(), json.dumps(value).encode()


def person(i: int) -> tuple[str, dict[str, Any], dict[str, str]]:
    key = str(uuid.UUID(int=i + 1))
    now = 1_764_000_000_000 + i
    ids = {"salesforce_contact": f"003C{i:014d}", "pardot_prospect": str(100_000_000 + i), "tims_customer": f"T{i:09d}"}
    record = {"key": key, "version": 3, "links": ids, "seen": [f"sf:tx{i}:1:{ids['salesforce_contact']}"],
              "fields": {"email": {"v": f"person{i}@example.com", "src": "salesforce", "ts": now},
                         "first_name": {"v": "Ada", "src": "salesforce", "ts": now},
                         "last_name": {"v": f"Lovelace{i}", "src": "salesforce", "ts": now},
                         "phone": {"v": "+14155550134", "src": "salesforce", "ts": now},
                         "payment_terms": {"v": "NET30", "src": "tims", "ts": now}}}
    index = {f"email:person{i}@example.com": key, f"salesforce:Contact:{ids['salesforce_contact']}": key,
             f"pardot:prospect:{ids['pardot_prospect']}": key, f"tims:customer:{ids['tims_customer']}": key}
    return key, record, index


def worker_partition(key: str, partitions: int) -> int:
    """The partition a worker keeps customer ``key``'s golden record on: the one the merge topic,
    keyed by the customer key as text, gives it (Kafka's default partitioner)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


async def produce(bootstrap: str, topic: str, records: Iterator[tuple[bytes, bytes]],
                  partition_of: Callable[[bytes], int] | None = None,
                  report: Callable[[str, int], None] | None = None) -> int:
    """Send ``records`` (key, value) to ``topic``, to ``partition_of(key)`` when given (else the
    default partitioner's); ``report(topic, sent so far)`` after each 20,000 acked."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, max_batch_size=1 << 20, acks=1)
    await producer.start()
    count, pending = 0, []
    try:
        for key, value in records:
            partition = None if partition_of is None else partition_of(key)
            pending.append(await producer.send(topic, value, key=key, partition=partition))
            count += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
                if report is not None:
                    report(topic, count)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count


async def fill(bootstrap: str, prefix: str, group: str, letters: int, customers: int, partitions: int = 4,
               report: Callable[[str, int], None] | None = None) -> dict[str, float]:
    """Dead letters, then the customers as the customer sync's workers write them: each golden
    record on the ``customer_master`` changelog partition its worker keeps it on, and its
    identity entries on the identity index's one partition."""
    master, identity = f"{group}-customer_master-changelog", f"{group}-customer_sync_identity-changelog"
    await ensure_topics(bootstrap, [f"{prefix}dlq.salesforce"], partitions=partitions)
    await ensure_topics(bootstrap, [master], partitions=partitions, compacted=True)
    await ensure_topics(bootstrap, [identity], partitions=1, compacted=True)
    started = time.monotonic()
    await produce(bootstrap, f"{prefix}dlq.salesforce", dead_letters(letters), report=report)

    def masters() -> Iterator[tuple[bytes, bytes]]:
        for i in range(customers):
            key, record, _ = person(i)
            yield json.dumps(key).encode(), json.dumps(record).encode()

    def entries() -> Iterator[tuple[bytes, bytes]]:
        for i in range(customers):
            for entry, key in person(i)[2].items():
                yield entry.encode(), key.encode()

    await produce(bootstrap, master, masters(), partition_of=lambda key: worker_partition(json.loads(key), partitions),
                  report=report)
    await produce(bootstrap, identity, entries(), report=report)
    return {"fill_seconds": round(time.monotonic() - started, 1)}


def log_in(client: httpx.Client) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
    answer = client.post("/login", data={"csrf_token": token, "username": "olga", "password": PASSWORD})
    assert answer.status_code == 303, answer.text


def timed_draw(client: httpx.Client, path: str, expect: str) -> float:
    """One draw of a page, in ms."""
    started = time.perf_counter()
    answer = client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    assert answer.status_code == 200 and expect in answer.text, (path, answer.status_code, answer.text[:500])
    return elapsed


def timed(client: httpx.Client, path: str, expect: str) -> dict[str, float]:
    first = timed_draw(client, path, expect)
    draws = [timed_draw(client, path, expect) for _ in range(DRAWS)]
    return {"first_ms": round(first, 1), "median_ms": round(statistics.median(draws), 1), "max_ms": round(max(draws), 1)}


def rss_mb(pid: int, field: str = "VmRSS") -> float | None:
    """The resident memory of a process (Linux /proc), in MB; ``field="VmHWM"``: its peak so far."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(rf"{field}:\s+(\d+) kB", status)
    return round(int(found.group(1)) / 1024, 1) if found else None


async def delete_topics(bootstrap: str, token: str) -> None:
    async with KafkaAdmin(bootstrap) as kafka:
        mine = [t for t in await kafka.list_topics() if token in t]
        if mine:
            await (await kafka._admin_client()).delete_topics(mine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dead-letters", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    token = uuid.uuid4().hex[:8]
    prefix, app_id = f"bench-console-{token}.", f"bench-console-{token}"
    result: dict[str, Any] = {"dead_letters": args.dead_letters, "customers": args.customers}
    try:
        result.update(asyncio.run(fill(bootstrap, prefix, app_id, args.dead_letters, args.customers)))
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "CONNECT_APP_ID": app_id, "CONNECT_TOPIC_PREFIX": prefix,
               "CONNECT_FLOWS": "customer_sync"}
        last = args.customers - 1
        _, _, index = person(last)
        tims_id = next(entry for entry in index if entry.startswith("tims:")).rpartition(":")[2]
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as folder, ConsoleProcess(env, Path(folder) / "console.log") as console:
            with httpx.Client(base_url=console.url, timeout=600) as client:
                log_in(client)
                # start-up: until a customer is found, the console has read every topic once
                timed_draw(client, f"/customers?q=person{last}@example.com", tims_id)
                result["ready_seconds"] = round(time.monotonic() - started, 1)
                result["ready_rss_mb"] = rss_mb(console.proc.pid) if console.proc else None
                pages = {
                    "letters": ("/letters", "salesforce:"),
                    "letters_filtered": ("/letters?kind=dlq&object=Account&error=lock", "UNABLE_TO_LOCK_ROW"),
                    "letters_last_page": (f"/letters?page={max(1, args.dead_letters // 100)}", "salesforce:"),
                    "letter": ("/letters/salesforce:0:5", "Content"),
                    "customer_by_email": (f"/customers?q=person{last}@example.com", tims_id),
                    "customer_by_tims_id": (f"/customers?q={tims_id}", tims_id),
                    "customer_not_found": ("/customers?q=NO-SUCH-ID", "Nobody found"),
                    "conflicts": ("/conflicts", "Conflicts"),
                    "flows": ("/flows", "customer_sync"),
                    "mappings": ("/mappings", "customer_master"),
                    "mapping_edit": ("/mappings/customer_sync/customer_master/edit", "customer_master.yaml"),
                }
                result["pages"] = {name: timed(client, path, expect) for name, (path, expect) in pages.items()}
            result["console_rss_mb"] = rss_mb(console.proc.pid) if console.proc else None
    finally:
        asyncio.run(delete_topics(bootstrap, token))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
