"""Customer-sync benchmark: the topology against raw aiokafka on the same broker, same run.

Prints:
1. baseline: raw aiokafka consume→produce (one consumer, one producer, JSON in and out), msgs/s;
2. topology throughput: source events in → sink commands out through a real worker, events/s,
   and the ratio to the baseline; then the sustained rate: until every stage has caught up (the
   links each merge sends back to identify included), and the worker's CPU time per event
   meanwhile (Linux; steadier than the rates when other processes share the CPUs). First for new
   customers (first sightings), then for a change of each of them (known records, the common path);
3. end-to-end latency at a fixed offered rate, once the worker has caught up with part 2: source
   commit time → sink command on Kafka, p50/p99; first for new customers, then for changes of
   known ones (at most ``--events`` of them: each customer changes once);
4. Salesforce API calls per 1,000 records: TIMS customers linked to Contacts that exist in the
   sandbox org (started in this process) go through a worker whose Salesforce sink writes their
   TIMS id, payment terms and city onto the Contacts; the org counts the calls our client made.

Usage: .venv/bin/python bench/topology_bench.py [--events 5000] [--rate 200] [--seconds 20]
           [--sf-records 1000] [--parts 1,2,3,4]
Needs a broker (KAFKA_BOOTSTRAP_SERVERS or the local one: `stream-app kafka up`). The workers
inherit the environment, so e.g. CONNECT_FLOW_BATCH_SIZE / CONNECT_FLOW_LINGER apply to them.
The last line is one JSON object with the figures (baseline_msgs_per_s, events_per_s, ratio,
cpu_ms_per_event, known_events_per_s, known_cpu_ms_per_event, p50_ms, p99_ms, known_p50_ms,
known_p99_ms, sf_calls_per_1000). Progress lines go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors import kafka_admin  # noqa: E402
from connectors.kafka_admin import ensure_topics  # noqa: E402

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
PARTITIONS = 4
#: the topics the customer sync's worker reads in this bench (links.tims stays empty here), by the
#: group that reads them: the Faust group (``""``), or a direct stage's (docs/adr/0028)
FLOW_TOPICS = {".customer_sync.ingest": ["src.tims.customer"], ".customer_sync.merge": ["customer_sync.merge"],
               ".customer_sync.matching": ["customer_sync.matching"],
               ".customer_sync.identify": ["customer_sync.identify"]}


def customer_event(i: int, run: str) -> tuple[bytes, bytes]:
    """A TIMS customer linked to a Salesforce Contact: each one makes one Contact write."""
    record_id = f"C{run[:5]}{i:010d}"
    value = {"event_id": f"bench:{run}:{i}", "source": "tims", "entity": "customer", "record_id": record_id,
             "change_type": "CREATE", "commit_timestamp": int(time.time() * 1000),
             "fields": {"customer_id": record_id, "external_id": f"003{run[:5]}{i:010d}", "name": f"Bench Person{i}",
                        "email": f"person{i}.{run}@bench.example", "payment_terms": "NET30",
                        "billing_address": {"city": "Leeds"}, "modified_by": "tims-ui"}}
    return record_id.encode(), json.dumps(value).encode()


def customer_update(i: int, run: str, terms: str = "NET60") -> tuple[bytes, bytes]:
    """A later change of the same TIMS customer (new payment terms): the path of a known record."""
    key, raw = customer_event(i, run)
    value = json.loads(raw)
    value.update(event_id=f"bench:{run}:{i}:{terms}", change_type="UPDATE", commit_timestamp=int(time.time() * 1000))
    value["fields"]["payment_terms"] = terms
    return key, json.dumps(value).encode()


async def produce(topic: str, messages: list[tuple[bytes, bytes]], rate: float | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5, acks=1)
    await producer.start()
    try:
        started = time.monotonic()
        pending = []
        for i, (key, value) in enumerate(messages):
            if rate:
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                key, value = _stamped_now(value)
            pending.append(await producer.send(topic, value, key=key))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _stamped_now(value: bytes) -> tuple[bytes, bytes]:
    """The same event, committed "now" (the latency run measures from this instant)."""
    event = json.loads(value)
    event["commit_timestamp"] = int(time.time() * 1000)
    return event["record_id"].encode(), json.dumps(event).encode()


async def consume(topic: str, count: int, timeout: float, on_value=None) -> float:
    """Seconds until ``count`` messages were read from ``topic`` (from its start)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=None, auto_offset_reset="earliest",
                                metadata_max_age_ms=1000)
    await consumer.start()
    seen = 0
    started = time.monotonic()
    try:
        while seen < count:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{topic}: {seen}/{count} after {timeout}s")
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                seen += len(records)
                if on_value:
                    for record in records:
                        on_value(record)
        return time.monotonic() - started
    finally:
        await consumer.stop()


async def baseline(events: int) -> float:
    run = uuid.uuid4().hex[:8]
    source, sink = f"bench-{run}.in", f"bench-{run}.out"
    await ensure_topics(BOOTSTRAP, [source, sink], partitions=PARTITIONS)
    await produce(source, [customer_event(i, run) for i in range(events)])

    consumer = AIOKafkaConsumer(source, bootstrap_servers=BOOTSTRAP, group_id=f"bench-{run}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5, acks="all")
    await consumer.start()
    await producer.start()
    done = 0
    started = time.monotonic()
    try:
        while done < events:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            futures = []
            for records in batch.values():
                for record in records:
                    value = json.loads(record.value)
                    value["forwarded"] = True
                    futures.append(await producer.send(sink, json.dumps(value).encode(), key=record.key))
            await asyncio.gather(*futures)
            await consumer.commit()
            done += len(futures)
        return events / (time.monotonic() - started)
    finally:
        await consumer.stop()
        await producer.stop()
        await forget(run)


async def caught_up(group: str, prefix: str, timeout: float) -> None:
    """Return once ``group`` has committed everything on the flow's topics (read from outside:
    nothing joins the group, so the worker is not rebalanced)."""
    groups = {f"{group}{suffix}": [TopicPartition(f"{prefix}{name}", p) for name in names for p in range(PARTITIONS)]
              for suffix, names in FLOW_TOPICS.items()}
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    ends = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
    await admin.start()
    await ends.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            lag = 0
            for name, tps in groups.items():
                end = await ends.end_offsets(tps)
                committed = await admin.list_consumer_group_offsets(name, partitions=tps)
                lag += sum(end[tp] - max(committed[tp].offset, 0) if tp in committed else end[tp] for tp in tps)
            if lag == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{group}: {lag} message(s) behind after {timeout}s")
            await asyncio.sleep(0.2)
    finally:
        await ends.stop()
        await admin.close()


async def forget(run: str) -> None:
    """Delete every topic named with the run's token (its prefix, its groups' changelogs): a
    broker kept across many runs otherwise collects thousands of partitions and takes minutes to
    start."""
    names = [t for t in await kafka_admin.list_topics(BOOTSTRAP) if run in t]
    if names:
        await kafka_admin.delete_topics(BOOTSTRAP, names)


async def produced(run: str) -> int:
    """Messages the worker has produced so far in this run: every topic of the run (its prefix and
    its group's changelogs and index), less the source events the bench wrote itself."""
    names = [t for t in await kafka_admin.list_topics(BOOTSTRAP)
             if (t.startswith(f"bench-{run}.") or t.startswith(f"bench-{run}-")) and ".src." not in t]
    return sum((await kafka_admin.end_offsets(BOOTSTRAP, names)).values())


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU process ``pid`` has used so far (None where /proc is not there, or the
    process is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        exe = shutil.which("stream-app") or str(Path(sys.executable).with_name("stream-app"))
        self.log = log
        self.proc = subprocess.Popen([exe, "worker", "--loglevel", "info"], env={**os.environ, **env},
                                     stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "[^Worker]: Ready" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text()[-3000:])
            time.sleep(0.3)
        raise TimeoutError("worker not ready")

    def cpu_seconds(self) -> float | None:
        """User + system CPU the worker has used so far (None where /proc is not there)."""
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def worker_env(run: str, data: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "CONNECT_APP_ID": f"bench-{run}", "CONNECT_TOPIC_PREFIX": f"bench-{run}.",
            "CONNECT_DATA_DIR": data, "CONNECT_TOPIC_PARTITIONS": str(PARTITIONS), "CONNECT_WEB_PORT": str(_free_port()),
            "CONNECT_LOG_LEVEL": "warning", **(extra or {})}


async def topology(events: int, rate: float, seconds: float, workdir: Path) -> dict[str, Any]:
    """New customers: events/s until the last sink command, events/s until every stage caught up,
    the worker's CPU ms per event until then; then the same customers changed once more (known
    records: the common path), the same figures; then the latencies of a paced run."""
    run = uuid.uuid4().hex[:8]
    prefix = f"bench-{run}."
    worker = Worker(worker_env(run, str(workdir / "data")), workdir / "worker.log")
    try:
        worker.wait_ready()
        await asyncio.sleep(2)
        progress(f"new customers: {events} events")
        messages = [customer_event(i, run) for i in range(events)]
        cpu_started = worker.cpu_seconds()
        produce_started = time.monotonic()
        await produce(f"{prefix}src.tims.customer", messages)
        await consume(f"{prefix}sink.salesforce.Contact", events, timeout=600)
        throughput = events / (time.monotonic() - produce_started)
        await caught_up(f"bench-{run}", prefix, timeout=600)
        sustained = events / (time.monotonic() - produce_started)
        cpu_done = worker.cpu_seconds()
        cpu_ms = None if cpu_started is None or cpu_done is None else (cpu_done - cpu_started) * 1000 / events
        figures: dict[str, Any] = {"throughput": throughput, "sustained": sustained, "cpu_ms": cpu_ms}
        after_new = await produced(run)
        figures["messages_per_event"] = after_new / events

        progress(f"known customers changed: {events} events")
        updates = [customer_update(i, run) for i in range(events)]
        cpu_started, produce_started = worker.cpu_seconds(), time.monotonic()
        await produce(f"{prefix}src.tims.customer", updates)
        await consume(f"{prefix}sink.salesforce.Contact", 2 * events, timeout=600)
        figures["known_throughput"] = events / (time.monotonic() - produce_started)
        await caught_up(f"bench-{run}", prefix, timeout=600)
        figures["known_sustained"] = events / (time.monotonic() - produce_started)
        cpu_done = worker.cpu_seconds()
        figures["known_cpu_ms"] = (None if cpu_started is None or cpu_done is None
                                   else (cpu_done - cpu_started) * 1000 / events)
        figures["known_messages_per_event"] = (await produced(run) - after_new) / events

        progress("latency, new customers at the offered rate")
        paced = [customer_event(events + i, run) for i in range(int(rate * seconds))]
        figures["latencies"] = await paced_latencies(prefix, paced, 2 * events, rate)
        await caught_up(f"bench-{run}", prefix, timeout=600)
        progress("latency, known customers changed at the offered rate")
        # each customer changes once (a second identical change would make no command)
        changes = [customer_update(i, run, terms="NET90") for i in range(min(events, int(rate * seconds)))]
        figures["known_latencies"] = await paced_latencies(prefix, changes, 2 * events + len(paced), rate)
        return figures
    finally:
        worker.stop()
        await forget(run)


async def paced_latencies(prefix: str, paced: list[tuple[bytes, bytes]], seen: int, rate: float) -> list[float]:
    """Source commit → sink command on Kafka, in seconds, for ``paced`` offered at ``rate``: the
    sink topic's first ``seen`` commands came before them."""
    latencies: list[float] = []
    position = 0

    def record_latency(record) -> None:  # type: ignore[no-untyped-def]
        nonlocal position
        position += 1
        stamp = json.loads(record.value).get("source_commit_timestamp")
        if stamp and position > seen:
            latencies.append((record.timestamp - stamp) / 1000)

    reader = asyncio.create_task(consume(f"{prefix}sink.salesforce.Contact", seen + len(paced), timeout=600,
                                         on_value=record_latency))
    await produce(f"{prefix}src.tims.customer", paced, rate=rate)
    await reader
    return latencies


def progress(line: str) -> None:
    """Where the bench is (stderr: stdout keeps the figures)."""
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


SALESFORCE_CLIENT = "pardot-tims-connect"


def _our_calls(org) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Salesforce API calls our client made so far, by kind (the org's own count)."""
    by_client_kind = org.snapshot(with_records=False)["api"]["by_client_kind"]
    return {key.split(" ", 1)[1]: n for key, n in by_client_kind.items() if key.split(" ", 1)[0] == SALESFORCE_CLIENT}


async def salesforce_calls(records: int, workdir: Path) -> tuple[dict[str, int], float]:
    """Part 4: (our Salesforce API calls by kind, seconds) to write ``records`` TIMS customers'
    ids onto the Contacts they are linked to, through the topology and the Salesforce sink."""
    from sandbox.run import start_sandbox  # only this part needs the sandbox

    sandbox = await start_sandbox(ports={"salesforce-rest": 0, "salesforce-pubsub": 0, "pardot": 0, "tims": 0},
                                  keepalive_seconds=5)
    run = uuid.uuid4().hex[:8]
    worker = None
    try:
        org = sandbox.org
        contacts = []
        for i in range(records):
            account = org.create("Account", {"Name": f"Bench Gases {i}"})
            contacts.append(org.create("Contact", {"LastName": f"Person{i}", "AccountId": account,
                                                   "Email": f"person{i}.{run}@bench.example"}))
        messages = []
        for i, contact in enumerate(contacts):
            key, value = customer_event(i, run)
            event = json.loads(value)
            event["fields"]["external_id"] = contact
            messages.append((key, json.dumps(event).encode()))
        worker = Worker(worker_env(run, str(workdir / "data-sf"), {
            **sandbox.worker_env(), "CONNECT_SINK_OBJECTS": "salesforce.Contact,salesforce.Account"}),
            workdir / "worker-sf.log")
        await asyncio.to_thread(worker.wait_ready)  # the sandbox answers on this loop meanwhile
        await asyncio.sleep(2)
        before = _our_calls(org)
        started = time.monotonic()
        await produce(f"bench-{run}.src.tims.customer", messages)

        def written() -> int:
            return sum(1 for c in contacts if (org.get("Contact", c) or {}).get("TIMS_Customer_ID__c"))

        deadline = started + 600
        while written() < records:
            if time.monotonic() > deadline or worker.proc.poll() is not None:
                raise TimeoutError(f"{written()}/{records} Contacts written; see {worker.log}")
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started
        settled = _our_calls(org)
        await asyncio.sleep(3)  # nothing trails behind the last write
        after = _our_calls(org)
        if after != settled:
            print(f"  (calls after the last Contact was written: {after} vs {settled})")
        return {kind: after.get(kind, 0) - before.get(kind, 0) for kind in after
                if after.get(kind, 0) != before.get(kind, 0)}, elapsed
    finally:
        if worker is not None:
            await asyncio.to_thread(worker.stop)
        await sandbox.stop()
        await forget(run)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=200.0, help="offered rate for the latency run, events/s")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sf-records", type=int, default=1000, help="records for the API-calls part")
    parser.add_argument("--parts", default="1,2,3,4", help="which parts to run (2 and 3 run together)")
    args = parser.parse_args()
    parts = {int(p) for p in args.parts.split(",") if p.strip()}
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        if 1 in parts:
            base = await baseline(args.events)
            summary["baseline_msgs_per_s"] = round(base)
            print(f"baseline raw aiokafka consume→produce: {base:,.0f} msgs/s ({args.events} messages)")
        if parts & {2, 3}:
            from stream_app.settings import load_settings  # what the worker will read

            flow = load_settings()
            print(f"flow batches: up to {flow.flow_batch_size} events, linger {flow.flow_linger}s")
            figures = await topology(args.events, args.rate, args.seconds, Path(tmp))
            ratio = f" = {figures['throughput'] / base:.3f} × baseline" if base else ""
            print(f"topology, new customers (ingest→merge→sink command): {figures['throughput']:,.0f} events/s{ratio}")
            print(f"  sustained, until every stage caught up (up to one commit interval late): "
                  f"{figures['sustained']:,.0f} events/s{_cpu(figures['cpu_ms'])}; "
                  f"{figures['messages_per_event']:.1f} messages produced per event")
            ratio = f" = {figures['known_throughput'] / base:.3f} × baseline" if base else ""
            print(f"topology, the same customers changed (known records): {figures['known_throughput']:,.0f} "
                  f"events/s{ratio}; sustained {figures['known_sustained']:,.0f} events/s{_cpu(figures['known_cpu_ms'])}; "
                  f"{figures['known_messages_per_event']:.1f} messages produced per event")
            summary.update(events_per_s=round(figures["throughput"]), known_events_per_s=round(figures["known_throughput"]),
                           cpu_ms_per_event=_round(figures["cpu_ms"]), known_cpu_ms_per_event=_round(figures["known_cpu_ms"]),
                           messages_per_event=_round(figures["messages_per_event"]),
                           known_messages_per_event=_round(figures["known_messages_per_event"]))
            if base:
                summary["ratio"] = round(figures["throughput"] / base, 4)
            for label, name, key in (("new customers", "latencies", ""), ("known customers changed", "known_latencies", "known_")):
                if figures[name]:
                    ordered = sorted(figures[name])
                    p50 = statistics.median(ordered)
                    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
                    summary.update({f"{key}p50_ms": round(p50 * 1000), f"{key}p99_ms": round(p99 * 1000)})
                    print(f"latency, {label}, at {args.rate:.0f} events/s offered for {args.seconds:.0f}s: "
                          f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms ({len(ordered)} samples)", flush=True)
        if 4 in parts:
            calls, elapsed = await salesforce_calls(args.sf_records, Path(tmp))
            total = sum(calls.values())
            summary["sf_calls_per_1000"] = round(total * 1000 / args.sf_records, 1)
            print(f"Salesforce API calls per 1,000 records: {total * 1000 / args.sf_records:.1f} "
                  f"({total} calls by {SALESFORCE_CLIENT} for {args.sf_records} Contacts written through the sink "
                  f"in {elapsed:.1f}s: {calls})")

    print(json.dumps(summary))


def _cpu(ms: float | None) -> str:
    return f", worker CPU {ms:.2f} ms per event" if ms is not None else ""


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


if __name__ == "__main__":
    asyncio.run(main())
