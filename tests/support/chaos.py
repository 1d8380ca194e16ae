"""The chaos run: the customer sync played under API faults and process kills, then checked
against what the sandbox's systems hold (docs/adr/0020).

The sandbox runs in this process; two workers of one app and the three sources run as
subprocesses, as an operator runs them. People are played through the customer sync paths
(tests/support/people.py) while 10 % of the calls to the Salesforce, Pardot and TIMS APIs fail
(429, 503, lock errors) and access tokens expire; then some of them are edited, in Salesforce
(the city) and in TIMS (the payment terms). Meanwhile a "monkey" SIGKILLs the workers (each
restarted on its own data dir), the sources, and, when the plan says so, the broker: never the
shared one, an own broker on its own port and data dir (``stream_app.kafka_local.LocalKafka``).

Once the systems agree (or the time is up) and the connector has gone quiet, the invariants are
counted, every one of which must be 0:

- ``missing``: people without a TIMS customer;
- ``duplicated``: TIMS customers beyond one per person;
- ``wrong_ids``: people whose TIMS customer, Contact and Account do not carry each other's ids
  (or whose TIMS user's customer was not the one adopted);
- ``edits_not_converged``: people whose systems disagree on a synced field, or do not show the
  last edit;
- ``writes_after_quiet``: connector writes in a window after the systems went quiet;
- ``dead_letters``: entries on the DLQ topics;
- ``quarantined``: entries on the quarantine topics (valid traffic is never quarantined);
- ``unexpected_exits``: processes that died without being killed (restarted by the run).

:func:`run_chaos` returns them with the run's figures; ``bench/chaos.py`` prints them as one JSON
line, ``tests/integration/test_chaos.py`` runs a small plan inside ``make test``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from connectors.registry import connectors
from sandbox.demo import Processes
from sandbox.faults import FaultConfig
from sandbox.run import Sandbox, start_sandbox
from stream_app.kafka_local import LocalKafka
from stream_app.sinks.agents import QUARANTINE_TOPIC as SINK_QUARANTINE
from topologies.registry import all_flows
from tests.support.kafka import topic_sizes
from tests.support.people import Person, api_writes, arrive, by_email, cast, disagreements, wrong_ids
from tests.support.worker import WorkerProcess, free_port, free_port_pair
from tests.support.names import unique

__all__ = ["ChaosPlan", "INVARIANTS", "dead_letter_topics", "quarantine_topics", "run_chaos"]

INVARIANTS = ("missing", "duplicated", "wrong_ids", "edits_not_converged", "writes_after_quiet", "dead_letters",
              "quarantined", "unexpected_exits")
#: shares of the people on each path (as in the scale test)
PATH_SHARES = {"lead": 0.35, "lead_tims": 0.30, "contact": 0.20, "contact_tims": 0.15}
FAULTY_APIS = ("salesforce-rest", "pardot", "tims")
SOURCES = ("salesforce", "tims", "pardot")


def dead_letter_topics() -> tuple[str, ...]:
    """Every system's DLQ (connectors/registry.py), unprefixed."""
    return tuple(spec.dlq_topic for spec in connectors().values())


def quarantine_topics() -> tuple[str, ...]:
    """Every quarantine a worker or a source writes, unprefixed: each flow's (topologies/registry.py),
    the sinks' and each system's source (connectors/registry.py). A flow or system added by entry
    point is counted too."""
    return (tuple(flow.quarantine_topic for flow in all_flows()) + (SINK_QUARANTINE,)
            + tuple(spec.quarantine_topic for spec in connectors().values()))


@dataclass(frozen=True)
class ChaosPlan:
    people: int = 30
    worker_kills: int = 2
    source_kills: int = 1
    broker_kills: int = 0
    #: share of API calls that fail (429, 503, lock)
    error_rate: float = 0.1
    #: seconds an access token lives; the monkey also expires every token now and then
    token_ttl: float = 20.0
    arrival_seconds: float = 10.0
    window: int = 20
    #: seconds between two kills (a killed worker is restarted and ready before the next one)
    kill_every: float = 5.0
    #: share of the people edited in Salesforce (city), and the same share in TIMS (payment terms)
    edit_share: float = 0.3
    seed: int = 18
    converge_timeout: float = 120.0
    quiet_window: float = 5.0
    settle_timeout: float = 60.0


@dataclass
class Crew:
    """The processes of the run, and who is being killed or restarted on purpose right now."""

    workers: dict[str, WorkerProcess]
    sources: Processes
    broker: LocalKafka | None
    busy: set[str] = field(default_factory=set)
    kills: dict[str, int] = field(default_factory=lambda: {"worker": 0, "source": 0, "broker": 0})
    #: seconds from each broker SIGKILL until it answered again
    broker_restarts: list[float] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)

    async def kill_worker(self, name: str) -> None:
        self.busy.add(name)
        try:
            await asyncio.to_thread(self.workers[name].kill)
            self.kills["worker"] += 1
            await asyncio.to_thread(self.workers[name].start, 240.0)
        finally:
            self.busy.discard(name)

    def kill_source(self, system: str) -> None:
        name = f"source-{system}"
        proc = self.sources.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        self.kills["source"] += 1
        self.sources.start(name, "source", system)

    async def kill_broker(self) -> None:
        assert self.broker is not None, "a broker kill needs the run's own broker"
        pid = self.broker.status().pid
        assert pid is not None, "the run's broker is not running"
        self.busy.add("broker")
        try:
            os.killpg(pid, signal.SIGKILL)
            killed = time.monotonic()
            self.kills["broker"] += 1
            await asyncio.sleep(3)
            await asyncio.to_thread(self.broker.up, 180.0, lambda *_: None)
            self.broker_restarts.append(round(time.monotonic() - killed, 1))
        finally:
            self.busy.discard("broker")

    async def keep_alive(self) -> None:
        """Restart whatever died without being killed, and count it."""
        while True:
            await asyncio.sleep(1)
            for name, worker in self.workers.items():
                if name not in self.busy and worker.proc is not None and worker.proc.poll() is not None:
                    self.unexpected_exits.append(f"worker {name} (exit {worker.proc.returncode})")
                    self.busy.add(name)
                    try:
                        await asyncio.to_thread(worker.start, 240.0)
                    finally:
                        self.busy.discard(name)
            for name, proc in list(self.sources.procs.items()):
                if proc.poll() is not None:
                    self.unexpected_exits.append(f"{name} (exit {proc.returncode})")
                    self.sources.start(name, "source", name.removeprefix("source-"))

    def stop(self) -> None:
        self.sources.stop()
        for worker in self.workers.values():
            if worker.proc is not None:
                worker.stop(60.0)


def _paths(people: int) -> dict[str, int]:
    counts = {path: int(people * share) for path, share in PATH_SHARES.items()}
    counts["lead"] += people - sum(counts.values())
    return counts


def _faults(sandbox: Sandbox, plan: ChaosPlan) -> None:
    for i, name in enumerate(FAULTY_APIS):
        sandbox.faults[name].configure(FaultConfig(
            error_rate=plan.error_rate, fail_first=1 if plan.error_rate else 0,
            error_kinds=["429", "503", "lock"], retry_after=0.2,
            token_ttl=plan.token_ttl if name == "salesforce-rest" else None, seed=plan.seed + i))


def _env(bootstrap: str, sandbox: Sandbox, run: str) -> dict[str, str]:
    return {**sandbox.worker_env(), "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "CONNECT_APP_ID": f"chaos-{run}",
            "CONNECT_TOPIC_PREFIX": f"chaos{run}.", "CONNECT_TOPIC_PARTITIONS": "4",
            "CONNECT_BROKER_COMMIT_INTERVAL": "0.5", "CONNECT_BROKER_SESSION_TIMEOUT": "10",
            "CONNECT_BROKER_HEARTBEAT_INTERVAL": "1",
            "CONNECT_SINK_OBJECTS": "salesforce.Contact,salesforce.Account,tims.customer",
            "CONNECT_SINK_LINGER": "0.2", "CONNECT_TIMS_POLL_INTERVAL": "1", "CONNECT_PARDOT_POLL_INTERVAL": "1"}


async def _monkey(crew: Crew, plan: ChaosPlan, sandbox: Sandbox, rng: random.Random) -> None:
    """Kill as planned, one at a time, ``kill_every`` seconds apart; expire every token between."""
    kinds = ["worker"] * plan.worker_kills + ["source"] * plan.source_kills
    rng.shuffle(kinds)
    for _ in range(plan.broker_kills):
        kinds.insert(len(kinds) // 2, "broker")
    names = sorted(crew.workers)
    for n, kind in enumerate(kinds):
        await asyncio.sleep(plan.kill_every)
        sandbox.faults["salesforce-rest"].expire_tokens()
        if kind == "worker":
            await crew.kill_worker(names[n % len(names)])
        elif kind == "source":
            crew.kill_source(SOURCES[n % len(SOURCES)])
        else:
            await crew.kill_broker()


async def _edit(people: list[Person], sandbox: Sandbox, plan: ChaosPlan, rng: random.Random,
                expected: dict[int, dict[str, Any]]) -> None:
    """Edit a share of the people in Salesforce (the city; not those a TIMS user entered, whose city
    came from TIMS) and a share in TIMS (payment terms, once their customer exists)."""
    size = int(len(people) * plan.edit_share)
    candidates = [p for p in people if not p.tims_user_enters]
    for p in rng.sample(candidates, min(size, len(candidates))):
        city = f"Edited City {p.i}"
        sandbox.org.update("Contact", p.ids["contact"], {"MailingCity": city})
        expected.setdefault(p.i, {})["city"] = city
        await asyncio.sleep(0)
    waiting = rng.sample(people, size)
    deadline = time.monotonic() + plan.converge_timeout
    while waiting and time.monotonic() < deadline:
        customers = by_email(sandbox)
        for p in [p for p in waiting if len(customers.get(p.email, [])) == 1]:
            sandbox.tims.update_customer(customers[p.email][0]["customer_id"], payment_terms="NET60")
            expected.setdefault(p.i, {})["payment_terms"] = "NET60"
            waiting.remove(p)
        await asyncio.sleep(0.5)


def _unsettled(sandbox: Sandbox, people: list[Person], expected: dict[int, dict[str, Any]]) -> bool:
    return any(_invariants(sandbox, people, expected).values())


async def _quiet(sandbox: Sandbox, plan: ChaosPlan) -> tuple[int, float]:
    """Wait for a window without connector writes (at most ``settle_timeout``), then count the
    writes of one more window: (writes after quiet, seconds it took to go quiet)."""
    began = time.monotonic()
    while True:
        before = api_writes(sandbox)
        await asyncio.sleep(plan.quiet_window)
        if api_writes(sandbox) == before or time.monotonic() - began > plan.settle_timeout:
            break
    quiet_at = round(time.monotonic() - began, 1)
    before = api_writes(sandbox)
    await asyncio.sleep(plan.quiet_window)
    after = api_writes(sandbox)
    return sum(after[k] - before[k] for k in after), quiet_at


def _invariants(sandbox: Sandbox, people: list[Person], expected: dict[int, dict[str, Any]]) -> dict[str, int]:
    customers = by_email(sandbox)
    found = [customers.get(p.email, []) for p in people]
    diverging = {line.split(" (", 1)[0] for line in disagreements(sandbox, people, lambda p: expected.get(p.i, {}))}
    return {
        "missing": sum(1 for twins in found if not twins),
        "duplicated": sum(len(twins) - 1 for twins in customers.values() if len(twins) > 1),
        "wrong_ids": sum(1 for p, twins in zip(people, found) if twins and wrong_ids(sandbox, p, twins[0])),
        "edits_not_converged": len(diverging),
    }


async def run_chaos(plan: ChaosPlan, workdir: Path, bootstrap: str | None = None) -> dict[str, Any]:
    """Play ``plan``; returns the invariants (all 0 when the connector held up) and the figures.
    With ``broker_kills`` the run starts its own broker (then ``bootstrap`` is not used)."""
    began = time.monotonic()
    rng = random.Random(plan.seed)
    run = unique()
    workdir.mkdir(parents=True, exist_ok=True)
    broker = LocalKafka(port=free_port_pair(), heap="512m") if plan.broker_kills else None
    if broker is not None:
        bootstrap = (await asyncio.to_thread(broker.up, 180.0, lambda *_: None)).bootstrap
    assert bootstrap is not None, "a run without broker kills uses the broker it is given"
    sandbox = await start_sandbox(ports={name: 0 for name in ("salesforce-rest", "salesforce-pubsub", "pardot",
                                                              "tims")}, keepalive_seconds=5)
    env = _env(bootstrap, sandbox, run)
    workers = {name: WorkerProcess({**env, "CONNECT_DATA_DIR": str(workdir / f"data-{name}"),
                                    "CONNECT_WEB_PORT": str(free_port())}, workdir / f"worker-{name}.log", name)
               for name in ("a", "b")}
    crew = Crew(workers, Processes({**os.environ, **env}, workdir), broker)
    people = cast(rng, _paths(plan.people), tag=f"Chaos{run[:4]}")
    expected: dict[int, dict[str, Any]] = {}
    figures: dict[str, Any] = {}
    keeper: asyncio.Task[None] | None = None
    try:
        await asyncio.gather(*(asyncio.to_thread(w.start, 240.0) for w in workers.values()))
        for system in SOURCES:
            crew.sources.start(f"source-{system}", "source", system)
        figures["started_s"] = round(time.monotonic() - began, 1)
        keeper = asyncio.create_task(crew.keep_alive())
        _faults(sandbox, plan)
        played = time.monotonic()

        async def play() -> None:
            await arrive(people, sandbox, rng, {}, window=plan.window, seconds=plan.arrival_seconds)
            await _edit(people, sandbox, plan, rng, expected)

        await asyncio.gather(play(), _monkey(crew, plan, sandbox, rng))
        figures["played_s"] = round(time.monotonic() - played, 1)
        deadline = time.monotonic() + plan.converge_timeout
        while _unsettled(sandbox, people, expected) and time.monotonic() < deadline:
            await asyncio.sleep(1)
        figures["converged_s"] = round(time.monotonic() - played, 1)
        writes_after_quiet, figures["quiet_after_s"] = await _quiet(sandbox, plan)
        keeper.cancel()
        prefix = env["CONNECT_TOPIC_PREFIX"]
        dlq, quarantine = dead_letter_topics(), quarantine_topics()
        sizes = await topic_sizes(bootstrap, [prefix + t for t in dlq + quarantine])
        result = {**_invariants(sandbox, people, expected), "writes_after_quiet": writes_after_quiet,
                  "dead_letters": sum(sizes[prefix + t] for t in dlq),
                  "quarantined": sum(sizes[prefix + t] for t in quarantine),
                  "unexpected_exits": len(crew.unexpected_exits)}
        injected = {name: sum(sandbox.faults[name].injected.values()) for name in FAULTY_APIS}
        diverging = disagreements(sandbox, people, lambda p: expected.get(p.i, {}))[:5]
        return {**result, "people": plan.people, "kills": dict(crew.kills), "broker_restart_s": crew.broker_restarts,
                "faults_injected": injected,
                "not_converged_examples": diverging,
                "edits": sum(len(e) for e in expected.values()), "exits": crew.unexpected_exits,
                **figures, "total_s": round(time.monotonic() - began, 1), "plan": asdict(plan)}
    finally:
        if keeper is not None:
            keeper.cancel()
        await asyncio.to_thread(crew.stop)
        await sandbox.stop()
        if broker is not None:
            await asyncio.to_thread(broker.reset, lambda *_: None)
