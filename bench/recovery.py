"""How fast the customer sync's workers get their tables back at N customers (issue 21).

Fills a fresh app on the broker (KAFKA_BOOTSTRAP_SERVERS, default 127.0.0.1:9092) with N
customers as workers write them (``console_bench.fill``: the golden records on the
``customer_master`` changelog, four identity entries each on the identity index's topic), then
runs real workers (``stream-app worker``, the customer sync only) on it and prints:

1. fill: seconds to write the changelog and the index;
2. cold recovery: one worker with an empty data dir;
3. warm restart: that worker stopped (SIGTERM) and started again on the same data dir;
4. failover: two workers, each with its own data dir, both processing; one is killed (SIGKILL)
   and the other takes its partitions over; with ``CONNECT_TABLE_STANDBY_REPLICAS=1``, then 0.

For 2 and 3, from the process start: ``ready`` when ``/readyz`` answers 200, and ``processing``
when, besides, every partition of ``customer_sync.merge`` has had a record handled. A direct table
stage reads a partition's changelog only before that partition's first record (docs/adr/0038), so
``/readyz`` does not wait for ``customer_master``: before each start the bench sends one record per
partition (an event the customer's golden record has seen already: read, deduplicated, nothing
written) and waits for the stage's group to commit past them. For 4, from the kill: until the
survivor has handled such a record on every partition and answers ``/readyz`` 200; the broker
gives the dead worker's partitions away only after the session timeout
(``CONNECT_BROKER_SESSION_TIMEOUT``), which is printed beside it. RSS is read from /proc at each
moment, with the peak so far; the changelog records each worker read are taken from its log.

    .venv/bin/python bench/recovery.py [--customers 1000000] [--partitions 4] [--parts 2,3,4] [--keep]

Progress lines go to stderr; the last line on stdout is one JSON object with the figures. Every
wait has a time limit (``--timeout``); the bench stops its workers and deletes its topics on the
way out, also after an error or Ctrl-C. The workers inherit the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.kafka_admin import KafkaAdmin, ensure_topics  # noqa: E402
from stream_app.settings import load_settings  # noqa: E402
from topologies.customer_sync.messages import MergeEvent  # noqa: E402

from console_bench import delete_topics, fill, person, produce, rss_mb, worker_partition  # noqa: E402
from topology_bench import Worker, progress, worker_env  # noqa: E402

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
#: a partition of customer_master recovered (stream_app/direct_table.py's log line)
RECOVERED = re.compile(r"customer_master\[(\d+)\]: ready, (\d+) rows \((\d+) changelog records read\)")
#: the identity index read (stream_app/replicated.py's log line)
INDEX_READY = re.compile(r"customer_sync_identity: (\d+) entries; ready")
#: a worker whose CPU use stays under this share of one core for IDLE_WINDOW seconds is idle
IDLE_SHARE, IDLE_WINDOW = 0.15, 3.0


class BenchFailed(Exception):
    """Something the bench waits for did not happen: the message says what."""


def probes(customers: int, partitions: int) -> Iterator[tuple[bytes, bytes]]:
    """One record per partition of ``customer_sync.merge``: an event a known customer's golden
    record has seen already (``person``'s first ``seen`` id), keyed as ``ingest`` keys it. The
    merge stage recovers the partition, reads the record and drops the event as a duplicate."""
    found: dict[int, tuple[bytes, bytes]] = {}
    for i in range(customers):
        key, record, _ = person(i)
        partition = worker_partition(key, partitions)
        if partition in found:
            continue
        email = record["fields"]["email"]
        event = {"event_id": record["seen"][0], "source": "salesforce", "entity": "Contact",
                 "record_id": record["links"]["salesforce_contact"], "change_type": "UPDATE",
                 "fields": {"Email": email["v"]}, "commit_timestamp": email["ts"]}
        found[partition] = (key.encode(), json.dumps(MergeEvent(event=event).wire()).encode())
        if len(found) == partitions:
            return iter(found[p] for p in range(partitions))
    raise BenchFailed(f"{customers} customers do not cover the {partitions} partitions: use more customers")


@dataclass
class Started:
    """A worker the bench started, with what it needs to watch it."""

    name: str
    worker: Worker
    port: int
    started: float

    @property
    def pid(self) -> int:
        return self.worker.proc.pid

    def alive(self) -> None:
        if self.worker.proc.poll() is not None:
            raise BenchFailed(f"worker {self.name} exited with {self.worker.proc.returncode} (the end of its log "
                              "follows)")

    def log(self) -> str:
        return self.worker.log.read_text(errors="replace") if self.worker.log.exists() else ""

    def recovered(self, since: int = 0) -> dict[int, int]:
        """Changelog records read per customer_master partition, in the log from ``since`` on (a
        partition recovered again after a rebalance counts each time)."""
        read: dict[int, int] = {}
        for found in RECOVERED.finditer(self.log()[since:]):
            read[int(found[1])] = read.get(int(found[1]), 0) + int(found[3])
        return dict(sorted(read.items()))

    def index_entries(self) -> int | None:
        found = INDEX_READY.findall(self.log())
        return int(found[-1]) if found else None

    def memory(self) -> tuple[float | None, float | None]:
        """(RSS, peak RSS) in MB."""
        return rss_mb(self.pid), rss_mb(self.pid, "VmHWM")


class Bench:
    """The fresh app, its workers and the waits; every worker started is stopped by :meth:`stop_all`."""

    def __init__(self, customers: int, partitions: int, timeout: float, workdir: Path) -> None:
        self.customers, self.partitions, self.timeout, self.workdir = customers, partitions, timeout, workdir
        self.token = uuid.uuid4().hex[:8]
        self.run = f"recovery-{self.token}"  # worker_env names the app bench-<run> and the prefix bench-<run>.
        self.app_id, self.prefix = f"bench-{self.run}", f"bench-{self.run}."
        self.merge_topic = f"{self.prefix}customer_sync.merge"
        self.merge_group = f"{self.app_id}.customer_sync.merge"
        self.workers: list[Started] = []
        self.http: httpx.AsyncClient | None = None  # set by run(), in its loop

    # -- the data ----------------------------------------------------------------------------------
    async def fill(self) -> float:
        started = time.monotonic()

        def report(topic: str, count: int) -> None:
            if count % 100_000 == 0:
                progress(f"fill: {count:,} records on {topic} ({time.monotonic() - started:.0f} s)")

        progress(f"fill: {self.customers:,} customers on {self.partitions} partitions, app {self.app_id}")
        figures = await fill(BOOTSTRAP, self.prefix, self.app_id, 0, self.customers, self.partitions, report)
        await ensure_topics(BOOTSTRAP, [self.merge_topic], partitions=self.partitions)
        progress(f"fill: done in {figures['fill_seconds']} s")
        return figures["fill_seconds"]

    async def send_probes(self) -> None:
        await produce(BOOTSTRAP, self.merge_topic, probes(self.customers, self.partitions),
                      partition_of=lambda key: worker_partition(key.decode(), self.partitions))

    # -- workers -----------------------------------------------------------------------------------
    def start(self, name: str, data: Path, extra: dict[str, str] | None = None) -> Started:
        env = worker_env(self.run, str(data), {"CONNECT_TOPIC_PARTITIONS": str(self.partitions),
                                               "CONNECT_FLOWS": "customer_sync", "CONNECT_LOG_LEVEL": "info",
                                               **(extra or {})})
        started = time.monotonic()
        one = Started(name, Worker(env, self.workdir / f"{name}.log"), int(env["CONNECT_WEB_PORT"]), started)
        self.workers.append(one)
        progress(f"worker {name} started (pid {one.pid}, data dir {data})")
        return one

    def stop(self, one: Started) -> float:
        """SIGTERM (then SIGKILL after 60 s: topology_bench's Worker.stop); seconds until it exited."""
        started = time.monotonic()
        one.worker.stop()
        return time.monotonic() - started

    def kill(self, one: Started) -> None:
        if one.worker.proc.poll() is None:
            os.killpg(one.pid, signal.SIGKILL)
            one.worker.proc.wait(30)

    def stop_all(self, show_logs: bool = False) -> None:
        """Stop every worker still running; ``show_logs``: print the end of each one's log (the
        folder holding them is deleted on the way out)."""
        for one in self.workers:
            try:
                self.stop(one)
            except Exception as exc:  # noqa: BLE001 - the others are stopped all the same
                print(f"worker {one.name} (pid {one.pid}) not stopped: {exc}", file=sys.stderr)
            if show_logs:
                lines = one.log().splitlines()[-40:]
                print(f"--- the end of worker {one.name}'s log ---", *lines, sep="\n", file=sys.stderr)

    # -- waits ---------------------------------------------------------------------------------------
    def deadline(self) -> float:
        return time.monotonic() + self.timeout

    async def is_ready(self, one: Started) -> bool:
        assert self.http is not None
        try:
            return (await self.http.get(f"http://127.0.0.1:{one.port}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def until_ready(self, one: Started, deadline: float) -> float:
        """Monotonic time at which ``/readyz`` first answered 200."""
        while not await self.is_ready(one):
            one.alive()
            if time.monotonic() > deadline:
                raise BenchFailed(f"worker {one.name}: /readyz not 200 after {self.timeout:.0f} s")
            await asyncio.sleep(0.1)
        return time.monotonic()

    async def until_processed(self, alive: list[Started], deadline: float) -> dict[str, float | None]:
        """Wait until the merge stage's group has committed every record on its topic (the probes).
        Returns when that happened (monotonic) and when the group was down to ``len(alive)``
        members (after a kill: when the broker gave the dead worker's partitions away)."""
        settled: float | None = None
        async with KafkaAdmin(BOOTSTRAP) as kafka:
            ends = await kafka.end_offsets([self.merge_topic])
            while True:
                committed = await kafka.committed_offsets(self.merge_group)
                behind = sum(end - committed.get(tp, 0) for tp, end in ends.items() if committed.get(tp, 0) < end)
                if settled is None and await kafka.live_members(self.merge_group) == len(alive):
                    settled = time.monotonic()
                if behind == 0:
                    return {"processed": time.monotonic(), "members_settled": settled}
                for one in alive:
                    one.alive()
                if time.monotonic() > deadline:
                    raise BenchFailed(f"{self.merge_group}: {behind} record(s) of {self.merge_topic} not handled after "
                                      f"{self.timeout:.0f} s (the end of the workers' logs follows)")
                await asyncio.sleep(0.2)

    async def until_members(self, count: int, deadline: float) -> None:
        """Until the merge stage's group has ``count`` members and a stable assignment."""
        async with KafkaAdmin(BOOTSTRAP) as kafka:
            client = await kafka._admin_client()  # as console_bench's delete_topics: no public describe
            while True:
                [response] = await client.describe_consumer_groups([self.merge_group])
                groups = [g for g in response.to_object()["groups"] if g["group"] == self.merge_group]
                if groups and groups[0]["state"] == "Stable" and len(groups[0]["members"]) == count:
                    return
                for one in self.workers[-count:]:
                    one.alive()
                if time.monotonic() > deadline:
                    raise BenchFailed(f"{self.merge_group}: not {count} members, stable, after {self.timeout:.0f} s")
                await asyncio.sleep(0.3)

    async def until_idle(self, workers: list[Started], deadline: float) -> None:
        """Until each worker uses under IDLE_SHARE of a core over IDLE_WINDOW seconds: the
        standby copies have caught up with the changelog (nothing else reports it)."""
        while True:
            before = [one.worker.cpu_seconds() for one in workers]
            await asyncio.sleep(IDLE_WINDOW)
            after = [one.worker.cpu_seconds() for one in workers]
            for one in workers:
                one.alive()
            if None in before or None in after:  # no /proc: a fixed pause instead
                return
            busiest = max((b - a) / IDLE_WINDOW for a, b in zip(before, after))  # type: ignore[operator]
            if busiest < IDLE_SHARE:
                return
            if time.monotonic() > deadline:
                raise BenchFailed(f"workers still busy ({busiest:.0%} of a core) after {self.timeout:.0f} s")

    # -- the parts -----------------------------------------------------------------------------------
    async def start_and_measure(self, name: str, data: Path) -> tuple[Started, dict[str, Any]]:
        """A worker started on ``data`` with a probe waiting on every partition: ready and
        processing times from its start, RSS at each, records it read."""
        await self.send_probes()
        one = self.start(name, data)
        deadline = self.deadline()
        ready = await self.until_ready(one, deadline)
        ready_rss, _ = one.memory()
        progress(f"worker {name}: /readyz 200 after {ready - one.started:.1f} s, RSS {ready_rss} MB")
        processed = (await self.until_processed([one], deadline))["processed"]
        assert processed is not None
        processing_rss, peak = one.memory()
        done = max(ready, processed)
        read = one.recovered()
        figures = {"ready_s": round(ready - one.started, 2), "rss_mb": ready_rss,
                   "processing_s": round(done - one.started, 2), "processing_rss_mb": processing_rss,
                   "peak_rss_mb": peak, "read_after_assignment": sum(read.values()),
                   "partitions_recovered": len(read), "index_entries": one.index_entries()}
        progress(f"worker {name}: every partition handled a record after {figures['processing_s']} s, RSS "
                 f"{processing_rss} MB (peak {peak} MB); customer_master changelog records read once its partitions "
                 f"were assigned {read} (with standbys, the standby reader may have read the rest before); identity "
                 f"index {figures['index_entries']} entries")
        if len(read) != self.partitions:
            raise BenchFailed(f"worker {name}: {len(read)} of {self.partitions} customer_master partitions reported "
                              f"recovered in its log")
        return one, figures

    async def failover(self, standbys: int) -> dict[str, Any]:
        """Two workers, both processing, standbys caught up; one killed: seconds until the other
        has handled a record on every partition and answers /readyz 200."""
        label = f"standby{standbys}"
        extra = {"CONNECT_TABLE_STANDBY_REPLICAS": str(standbys)}
        # started together and given records only once both hold their share: each recovers only
        # its own partitions (a partition a worker held before is on its disk, standby or not)
        first = self.start(f"{label}-a", self.workdir / f"{label}-a", extra)
        second = self.start(f"{label}-b", self.workdir / f"{label}-b", extra)
        deadline = self.deadline()
        for one in (first, second):
            await self.until_ready(one, deadline)
        await self.until_members(2, deadline)
        await self.send_probes()
        await self.until_processed([first, second], deadline)
        await self.until_idle([first, second], deadline)
        held = {"a": first.recovered(), "b": second.recovered()}
        progress(f"failover, standbys={standbys}: both processing and idle; customer_master partitions recovered "
                 f"(records read): {held}; killing {second.name}")
        seen = len(first.log())
        self.kill(second)
        killed = time.monotonic()
        await self.send_probes()
        deadline = self.deadline()
        waited = await self.until_processed([first], deadline)
        ready = await self.until_ready(first, deadline)
        processed, settled = waited["processed"], waited["members_settled"]
        assert processed is not None
        taken = first.recovered(since=seen)
        rss, peak = first.memory()
        figures = {"s": round(max(processed, ready) - killed, 2),
                   "members_settled_s": None if settled is None else round(settled - killed, 2),
                   "records": sum(taken.values()), "partitions_taken": sorted(taken), "rss_mb": rss,
                   "peak_rss_mb": peak}
        progress(f"failover, standbys={standbys}: {first.name} processing every partition {figures['s']} s after "
                 f"the kill (the broker dropped {second.name} after {figures['members_settled_s']} s); changelog "
                 f"records read for the partitions it took over: {taken}")
        if not taken:
            raise BenchFailed(f"{first.name} took no customer_master partition over")
        self.stop(first)
        for one in (first, second):
            shutil.rmtree(self.workdir / one.name, ignore_errors=True)
        return figures


async def run(args: argparse.Namespace, parts: set[int], bench: Bench) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5) as http:
        bench.http = http
        return await measure(args, parts, bench)


async def measure(args: argparse.Namespace, parts: set[int], bench: Bench) -> dict[str, Any]:
    result: dict[str, Any] = {"customers": args.customers, "partitions": args.partitions, "fill_s": None,
                              "cold_ready_s": None, "cold_rss_mb": None, "warm_ready_s": None, "warm_rss_mb": None,
                              "failover_standby_s": None, "failover_no_standby_s": None,
                              "session_timeout_s": load_settings().broker_session_timeout}
    result["fill_s"] = await bench.fill()
    if parts & {2, 3}:  # the warm restart needs the data dir the cold start filled
        one, cold = await bench.start_and_measure("cold", bench.workdir / "single")
        result.update({f"cold_{name}": value for name, value in cold.items()})
        # an empty data dir: the worker read the whole changelog (the fill wrote one record per
        # customer) and the whole index, by whichever reader
        rate = (args.customers + (cold["index_entries"] or 0)) / cold["processing_s"]
        result["cold_records_per_s"] = round(rate)
        progress(f"cold: {rate:,.0f} records recovered per second from the process start ({args.customers:,} "
                 f"customer_master changelog records and {cold['index_entries'] or 0:,} identity index entries)")
        if 3 in parts:
            result["stop_s"] = round(bench.stop(one), 2)
            progress(f"worker cold stopped (SIGTERM) in {result['stop_s']} s")
            one, warm = await bench.start_and_measure("warm", bench.workdir / "single")
            result.update({f"warm_{name}": value for name, value in warm.items()})
        bench.stop(one)
        shutil.rmtree(bench.workdir / "single", ignore_errors=True)
    if 4 in parts:
        for standbys, key in ((1, "failover_standby"), (0, "failover_no_standby")):
            figures = await bench.failover(standbys)
            result[f"{key}_s"] = figures.pop("s")
            result.update({f"{key}_{name}": value for name, value in figures.items()})
    return result


def _interrupted(signum: int, frame: Any) -> None:
    """SIGTERM as Ctrl-C: the way out stops the workers and deletes the topics."""
    raise KeyboardInterrupt


def guarded(name: str, work: Callable[[], Awaitable[dict[str, Any]]], stop: Callable[[bool], None], *, token: str,
            app: str, keep: bool) -> dict[str, Any]:
    """``work()``'s figures; on the way out, also after a failure, Ctrl-C or SIGTERM (exit 1 or
    130 then), ``stop(failed)`` stops what the bench started and the app's topics (those whose
    name holds ``token``) are deleted, unless ``keep``."""
    signal.signal(signal.SIGTERM, _interrupted)
    failed = True
    try:
        result = asyncio.run(work())
        failed = False
        return result
    except BenchFailed as exc:
        print(f"{name} failed: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{name} interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the way out is not cut short
        stop(failed)
        if keep:
            progress(f"kept the topics of app {app}")
        else:
            asyncio.run(delete_topics(BOOTSTRAP, token))
            progress(f"deleted the topics of app {app}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--parts", default="2,3,4", help="2 cold recovery, 3 warm restart (runs 2's cold start "
                        "first), 4 failover; the fill always runs")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds each wait may take (default 120 + 1 s per 1,000 customers)")
    parser.add_argument("--keep", action="store_true", help="keep the topics (and print their prefix)")
    args = parser.parse_args()
    if args.customers < 1 or args.partitions < 1:
        parser.error("--customers and --partitions must be at least 1")
    parts = {int(p) for p in args.parts.split(",") if p.strip().isdigit()}
    if not parts or not parts <= {2, 3, 4}:
        parser.error(f"--parts {args.parts!r}: a comma-separated choice among 2, 3, 4")
    timeout = args.timeout if args.timeout is not None else 120 + args.customers / 1000
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as folder:
        bench = Bench(args.customers, args.partitions, timeout, Path(folder))
        result = guarded("recovery bench", lambda: run(args, parts, bench),
                         lambda failed: bench.stop_all(show_logs=failed), token=bench.token,
                         app=f"{bench.app_id} (prefix {bench.prefix})", keep=args.keep)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
