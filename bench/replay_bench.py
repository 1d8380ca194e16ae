"""`stream-app rebuild` and an offset replay of N source events, timed (issue 12).

Goal: under 15 minutes each for 1,000,000 events. On a fresh app (its own app id and topic
prefix on the broker at KAFKA_BOOTSTRAP_SERVERS, default 127.0.0.1:9092; the customer sync only,
4 partitions):

0. a worker is started once and stopped, as on a deployment that has run before: it creates the
   app's topics (a rebuild reads the stage topics only when they exist when it starts);
1. fill: N TIMS customer events (``topology_bench.customer_event``: each a TIMS customer linked
   to a Salesforce Contact) written straight onto ``src.tims.customer``; with ``--customers M``
   below N, the events go round the M customers and the later rounds are changes of them
   (``customer_update``, new payment terms each round);
2. rebuild: ``stream-app rebuild`` run as an operator runs it (the group holds no state yet, so
   the rebuild starts from empty tables: every customer a first sighting). Its wall time from the
   command's start to its exit (the plan, its worker's start, the reading, the stop, the skipped
   commands and the table sizes it prints), events/s over it, when its group had caught up, the
   rebuild worker's peak RSS and CPU;
3. replay: the workers stopped, ``stream-app replay --topic src.tims.customer --from-offset 0``
   (after a ``--dry-run``), then one worker started on the rebuild's data directory until every
   stage of the flow has caught up: the time from the replay command's start, events/s, the
   worker's readiness, peak RSS, CPU, and the sink commands it made (none expected: each event is
   a duplicate its golden record remembers).

    .venv/bin/python bench/replay_bench.py [--events 1000000] [--customers N] [--timeout S] [--keep]

Progress lines go to stderr; the last line on stdout is one JSON object with the figures. The
bench stops its processes and deletes its topics on the way out, also after an error or Ctrl-C
(a broker that keeps bench topics gets slow to start). The workers inherit the environment
(e.g. CONNECT_FLOW_BATCH_SIZE).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.kafka_admin import end_offsets, ensure_topics, list_topics  # noqa: E402
from stream_app import flows  # noqa: E402
from stream_app.rebuild import group_id  # noqa: E402
from stream_app.settings import Settings, load_settings  # noqa: E402

from console_bench import produce, rss_mb  # noqa: E402
from recovery import BenchFailed, guarded  # noqa: E402
from topology_bench import (  # noqa: E402
    PARTITIONS, Worker, cpu_seconds, customer_event, customer_update, produced, progress, worker_env,
)

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
SOURCE = "src.tims.customer"
FLOW = "customer_sync"
#: seconds between progress lines; between lag readings; between samples of a worker's memory and CPU
REPORT_EVERY, LAG_EVERY, SAMPLE_EVERY = 30.0, 2.0, 0.5
#: the rebuild's last lines (stream_app/rebuild.py)
TABLES_LINE = re.compile(r"^tables: (.*)$", re.M)
DONE_LINE = re.compile(r"^done in (\d+)s \(([\d,]+) input events, ([\d,]+) events/s\)", re.M)


def events(run: str, count: int, customers: int) -> Iterator[tuple[bytes, bytes]]:
    """``count`` events round ``customers`` customers: first sightings, then a change a round."""
    for i in range(count):
        customer, round_ = i % customers, i // customers
        yield customer_event(customer, run) if round_ == 0 else customer_update(customer, run, f"NET{30 + round_}")


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (Linux /proc; none elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


@dataclass
class Usage:
    """A process's peak resident memory and CPU time, as last sampled (it may be gone by the end)."""

    pid: int | None = None
    peak_rss_mb: float | None = None
    cpu_s: float | None = None

    def sample(self) -> None:
        if self.pid is None:
            return
        peak, cpu = rss_mb(self.pid, "VmHWM"), cpu_seconds(self.pid)
        if peak is not None:
            self.peak_rss_mb = max(peak, self.peak_rss_mb or 0.0)
        if cpu is not None:
            self.cpu_s = cpu


@dataclass
class App:
    """The fresh app: its names, settings and the environment its processes get."""

    token: str
    workdir: Path
    run: str = field(init=False)
    settings: Settings = field(init=False)

    def __post_init__(self) -> None:
        self.run = f"replay-{self.token}"  # worker_env names the app bench-<run>, its prefix bench-<run>.
        env = self.env(self.workdir / "data")
        self.settings = load_settings(kafka_bootstrap_servers=BOOTSTRAP, app_id=env["CONNECT_APP_ID"],
                                      topic_prefix=env["CONNECT_TOPIC_PREFIX"], topic_partitions=PARTITIONS,
                                      flows=FLOW)

    def env(self, data: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
        return worker_env(self.run, str(data), {"CONNECT_FLOWS": FLOW, **(extra or {})})

    @property
    def group(self) -> str:
        return group_id(self.settings)

    async def backlog(self) -> tuple[int, int]:
        """(source events the flow's first stage has yet to read, messages its later stages have
        yet to read), in the groups that read them (Faust's or the direct stages')."""
        existing = await list_topics(BOOTSTRAP)
        inputs = [t for t in flows.input_topics(self.settings) if t in existing]
        stages = [t for t in flows.internal_topics(self.settings) if t in existing]
        lag = await flows.AppGroups.of(self.settings, self.group).lag(BOOTSTRAP, inputs + stages)
        first = sum(n for tp, n in lag.items() if tp.topic in inputs)
        return first, sum(lag.values()) - first


class Phase:
    """One timed phase: progress lines every REPORT_EVERY seconds, the usage of the process that
    does the work sampled meanwhile, and the moment the flow had caught up (lag 0 twice running)."""

    def __init__(self, name: str, app: App, total: int) -> None:
        self.name, self.app, self.total = name, app, total
        self.started = time.monotonic()
        self.usage = Usage()
        self.caught_up: float | None = None

    async def watch(self, alive: Any, find_pid: Any = None, deadline: float | None = None) -> None:
        """Until ``alive()`` is false (the command exited) or, when ``find_pid`` is None, until
        the flow has caught up. ``find_pid()`` names the worker whose usage to sample."""
        zeros, reported, measured = 0, self.started, 0.0
        first = later = -1
        while True:
            if find_pid is not None and self.usage.pid is None:
                self.usage.pid = find_pid()
            self.usage.sample()
            now = time.monotonic()
            if now - measured >= LAG_EVERY:
                measured = now
                first, later = await self.app.backlog()
                zeros = zeros + 1 if first == later == 0 else 0
                now = time.monotonic()
            if zeros >= 2 and self.caught_up is None:
                self.caught_up = now
                progress(f"{self.name}: caught up after {now - self.started:.0f} s")
                if find_pid is None:
                    return
            if now - reported >= REPORT_EVERY:
                reported = now
                read = self.total - first
                progress(f"{self.name}: {read:,}/{self.total:,} source events read ({read / (now - self.started):,.0f}/s "
                         f"since the start), {later:,} messages waiting in the later stages; worker peak RSS "
                         f"{self.usage.peak_rss_mb} MB, CPU {self.usage.cpu_s} s")
            if not alive():
                return
            if deadline is not None and now > deadline:
                raise BenchFailed(f"{self.name}: not done after {now - self.started:.0f} s ({first:,} source events "
                                  f"and {later:,} stage messages waiting)")
            await asyncio.sleep(SAMPLE_EVERY)

    def figures(self, prefix: str, seconds: float) -> dict[str, Any]:
        cpu = self.usage.cpu_s
        return {f"{prefix}_seconds": round(seconds, 1), f"{prefix}_events_per_s": round(self.total / seconds),
                f"{prefix}_caught_up_seconds": None if self.caught_up is None else round(self.caught_up - self.started, 1),
                f"{prefix}_worker_peak_rss_mb": self.usage.peak_rss_mb,
                f"{prefix}_worker_cpu_ms_per_event": None if cpu is None else round(cpu * 1000 / self.total, 3)}


class Bench:
    """The app, the processes the bench started (stopped by :meth:`stop_all`) and the phases."""

    def __init__(self, app: App, events: int, customers: int, timeout: float) -> None:
        self.app, self.events, self.customers, self.timeout = app, events, customers, timeout
        self.data = app.workdir / "data"
        self.workers: list[Worker] = []
        #: the stream-app commands running (the rebuild starts a worker of its own, in its own session)
        self.commands: list[subprocess.Popen[bytes]] = []
        self.command_workers: list[int] = []

    # -- processes ---------------------------------------------------------------------------------
    def start_worker(self, name: str, data: Path) -> Worker:
        worker = Worker(self.app.env(data), self.app.workdir / f"{name}.log")
        self.workers.append(worker)
        progress(f"worker {name} started (pid {worker.proc.pid})")
        return worker

    def command(self, name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        exe = str(Path(sys.executable).with_name("stream-app"))
        log = self.app.workdir / f"{name}.log"
        env = {**os.environ, **self.app.env(self.data)}
        proc = subprocess.Popen([exe, *args], env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.commands.append(proc)
        progress(f"{name}: `stream-app {shlex.join(args)}` (pid {proc.pid}, output in {log})")
        return proc, log

    def run_command(self, name: str, *args: str) -> str:
        """A short command, waited for; its output. BenchFailed unless it exits 0."""
        proc, log = self.command(name, *args)
        code = proc.wait(120)
        output = log.read_text(errors="replace")
        if code != 0:
            raise BenchFailed(f"`stream-app {shlex.join(args)}` exited {code}:\n{output[-3000:]}")
        return output

    def stop_all(self) -> None:
        for proc in self.commands:
            if proc.poll() is None:
                _stop_group(proc.pid)
                proc.wait(70)
        for pid in self.command_workers:
            _stop_group(pid)
        for worker in self.workers:
            worker.stop()

    # -- the phases ----------------------------------------------------------------------------------
    async def prepare(self) -> None:
        progress(f"app {self.app.settings.app_id}: a worker creates its topics")
        worker = self.start_worker("first-start", self.app.workdir / "data-first-start")
        await asyncio.to_thread(worker.wait_ready, 300)
        await asyncio.to_thread(worker.stop)
        groups = flows.AppGroups.of(self.app.settings, self.app.group)
        deadline = time.monotonic() + 60
        while await groups.live(BOOTSTRAP):  # the rebuild refuses while a group has members
            if time.monotonic() > deadline:
                raise BenchFailed(f"groups {await groups.live(BOOTSTRAP)} still have members 60 s after the stop")
            await asyncio.sleep(1)
        committed = await groups.committed(BOOTSTRAP)
        if committed:  # the rebuild would call the app unfinished once the events are written
            raise BenchFailed(f"the first start committed offsets: {committed}")

    async def fill(self) -> float:
        topic = self.app.settings.topic(SOURCE)
        await ensure_topics(BOOTSTRAP, [topic], partitions=PARTITIONS)
        started = time.monotonic()

        def report(_: str, count: int) -> None:
            if count % 100_000 == 0:
                progress(f"fill: {count:,} events on {topic} ({time.monotonic() - started:.0f} s)")

        progress(f"fill: {self.events:,} events for {self.customers:,} customers on {topic}")
        await produce(BOOTSTRAP, topic, events(self.app.run, self.events, self.customers), report=report)
        seconds = time.monotonic() - started
        progress(f"fill: done in {seconds:.1f} s")
        return seconds

    async def rebuild(self) -> dict[str, Any]:
        before = await produced(self.app.run)
        phase = Phase("rebuild", self.app, self.events)
        proc, log = self.command("rebuild", "rebuild", "--timeout", str(round(self.timeout)))

        def worker_pid() -> int | None:
            found = child_pids(proc.pid)
            if found:
                self.command_workers.extend(found)
            return found[0] if found else None

        await phase.watch(lambda: proc.poll() is None, worker_pid, deadline=phase.started + self.timeout + 120)
        code = proc.wait()
        seconds = time.monotonic() - phase.started
        self.command_workers.clear()  # they stopped with the command (their ids may be reused)
        output = log.read_text(errors="replace")
        if code != 0:
            raise BenchFailed(f"stream-app rebuild exited {code}:\n{output[-3000:]}")
        figures = phase.figures("rebuild", seconds)
        figures["rebuild_messages_per_event"] = round((await produced(self.app.run) - before) / self.events, 2)
        tables, done = TABLES_LINE.search(output), DONE_LINE.search(output)
        figures["rebuild_tables"] = tables.group(1) if tables else None
        if done:
            figures["rebuild_command_says"] = {"seconds": int(done.group(1)), "events_per_s": int(done.group(3).replace(",", ""))}
        progress(f"rebuild: {seconds:.1f} s, {self.events / seconds:,.0f} events/s; {figures['rebuild_tables']}")
        return figures

    async def replay(self) -> dict[str, Any]:
        sinks = [t for t in await list_topics(BOOTSTRAP) if t.startswith(self.app.settings.topic("sink."))]
        commands_before, before = await _total_end(sinks), await produced(self.app.run)
        args = ("replay", "--topic", SOURCE, "--from-offset", "0")
        planned = re.findall(r"^total: (\d+) messages to reprocess", self.run_command("replay-dry-run", *args, "--dry-run"),
                             re.M)
        phase = Phase("replay", self.app, self.events)
        self.run_command("replay", *args)
        worker = self.start_worker("replay-worker", self.data)
        phase.usage.pid = worker.proc.pid

        def until_ready() -> float:
            worker.wait_ready(self.timeout)
            return time.monotonic()

        ready = asyncio.create_task(asyncio.to_thread(until_ready))
        await phase.watch(lambda: worker.proc.poll() is None, deadline=phase.started + self.timeout)
        if worker.proc.poll() is not None:
            raise BenchFailed(f"the replay worker exited with {worker.proc.returncode}: see {worker.log}")
        seconds = time.monotonic() - phase.started
        figures = phase.figures("replay", seconds)
        figures["replay_worker_ready_seconds"] = round(await ready - phase.started, 1)
        figures["replay_planned_messages"] = sum(int(n) for n in planned)
        figures["replay_sink_commands"] = await _total_end(sinks) - commands_before
        figures["replay_messages_per_event"] = round((await produced(self.app.run) - before) / self.events, 2)
        await asyncio.to_thread(worker.stop)
        progress(f"replay: {seconds:.1f} s, {self.events / seconds:,.0f} events/s; "
                 f"{figures['replay_sink_commands']} sink commands made")
        return figures


async def _total_end(topics: list[str]) -> int:
    return sum((await end_offsets(BOOTSTRAP, topics)).values()) if topics else 0


def _stop_group(pid: int) -> None:
    """SIGTERM to the process group ``pid`` leads, SIGKILL if it is still there after 60 s."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def machine() -> str:
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{os.cpu_count()} cores{', ' + model if model else ''}, {platform.machine()}"


async def measure(bench: Bench) -> dict[str, Any]:
    result: dict[str, Any] = {"events": bench.events, "customers": bench.customers, "partitions": PARTITIONS,
                              "machine": machine(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "command": shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                              "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    await bench.prepare()
    result["fill_seconds"] = round(await bench.fill(), 1)
    result.update(await bench.rebuild())
    result["load_average_after_rebuild"] = [round(x, 2) for x in os.getloadavg()]
    result.update(await bench.replay())
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=None, help="customers the events go round (default: one "
                        "event each)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds each phase may take (default 600 + 1 s per 50 events)")
    parser.add_argument("--keep", action="store_true", help="keep the topics (the app id is printed)")
    args = parser.parse_args()
    customers = args.customers or args.events
    if args.events < 1 or not 1 <= customers <= args.events:
        parser.error("--events must be at least 1, --customers between 1 and --events")
    timeout = args.timeout if args.timeout is not None else 600 + args.events / 50
    token = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as folder:
        bench = Bench(App(token, Path(folder)), args.events, customers, timeout)

        def stop(failed: bool) -> None:
            bench.stop_all()
            if failed:
                for log in sorted(Path(folder).glob("*.log")) + sorted(Path(folder).glob("data/rebuild-*.log")):
                    lines = log.read_text(errors="replace").splitlines()[-30:]
                    print(f"--- the end of {log.name} ---", *lines, sep="\n", file=sys.stderr)

        result = guarded("replay bench", lambda: measure(bench), stop, token=token, app=bench.app.settings.app_id,
                         keep=args.keep)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
