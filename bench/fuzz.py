"""The fuzz run: generated malformed messages into every topic a worker reads, and to the TIMS
webhook; then every message must be accounted for and valid traffic must still land.

A worker (customer sync and the Salesforce and TIMS sinks) and the TIMS source in webhook mode
run as subprocesses against the sandbox (in this process). Hypothesis generates the messages:
arbitrary bytes, arbitrary JSON, valid stage messages mutated (fields dropped, retyped, added,
nested deeper), and known killers (deep nesting, lone surrogates, huge numbers, ~1 MB values).
They are spread over the source topics, the stage topics, ``links.tims``, the sink topics and
the webhook (most signed with its secret, so they reach the parser). Before and after, one
person is played the normal way (a Contact in Salesforce, its customer entered in TIMS, read by
the webhook source's feed reconciliation) and timed until the TIMS id is on the Contact.

Checks, once the worker has read everything (consumer lag 0):
- the worker and the source are alive; no agent crashed;
- per stage, messages in = processed + quarantined, and in = what the stage's topics hold;
- per sink, messages in = processed + quarantined + dead-lettered, and in = what its topic holds;
- the quarantine topics hold exactly what the counters say;
- every malformed webhook request was answered 4xx, and the signed ones reached the parser (not all 401);
- the person played after the fuzz landed.

Usage: .venv/bin/python bench/fuzz.py [--messages 10000] [--seed 18] [--logs DIR]
Needs a broker (KAFKA_BOOTSTRAP_SERVERS, default 127.0.0.1:9092). The last line is one JSON object
with the figures; exit status 0 only when every check holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as fixed_seed
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream_app.flows import AppGroups  # noqa: E402
from stream_app.settings import load_settings  # noqa: E402
from connectors.tims.webhook import sign  # noqa: E402
from sandbox.demo import Processes  # noqa: E402
from sandbox.run import Sandbox, start_sandbox  # noqa: E402
from tests.support.flows import stage_counts  # noqa: E402
from tests.support.kafka import create_topics, topic_sizes  # noqa: E402
from tests.support.worker import WorkerProcess, free_port  # noqa: E402

SOURCE_TOPICS = ("src.salesforce.Lead", "src.salesforce.Contact", "src.salesforce.Account", "src.pardot.prospect",
                 "src.tims.customer")
STAGES = {"ingest": SOURCE_TOPICS, "identify": ("customer_sync.identify",), "merge": ("customer_sync.merge",),
          "tims_links": ("links.tims",)}
SINKS = {"salesforce.Contact": "sink.salesforce.Contact", "salesforce.Account": "sink.salesforce.Account",
         "tims.customer": "sink.tims.customer"}
TARGETS = [*SOURCE_TOPICS, *(t for s in ("identify", "merge", "tims_links") for t in STAGES[s]), *SINKS.values(),
           "webhook"]
SECRET = "fuzz-webhook-secret"

EVENT = {"event_id": "e1", "source": "tims", "entity": "customer", "record_id": "C1", "change_type": "UPDATE",
         "fields": {"name": "Ann Example", "email": "ann@example.com"}, "commit_timestamp": 1, "full_state": True}
SHAPES = [
    EVENT,
    {"kind": "event", "event": EVENT, "tries": ["tims:customer:C1"]},
    {"kind": "link", "ref": "tims:customer:C1", "customer_key": "k1"},
    {"kind": "tims_link", "tims_id": "C1"},
    {"record_key": "k1", "tims_id": "C1"},
    {"system": "tims", "object": "customer", "operation": "upsert", "external_id_field": "customer_id",
     "external_id": "C1", "fields": {"name": "Ann"}, "version": 1, "record_key": "k1"},
    {"entity": "customer", "change_id": 1, "record": {"customer_id": "C1", "name": "Ann"}},
]
KILLERS = [b"[" * 3000 + b"]" * 3000, b'{"a": "\\ud800"}', b'"\\udfff"', b"1e999", b"9" * 5000, b"", b"\x00" * 16,
           b'{"fields": ' * 40 + b"1" + b"}" * 40, b'{"event_id": null}', b"null", b'"a string"', b"[]",
           b"\xff\xfe\xfd"]
#: messages near the broker's limit: a few, on the topics where a stage re-wraps them
HUGE = {topic: [(b"huge", json.dumps({**EVENT, "fields": {"note": "n" * 1_040_000}}).encode())] * 2
        for topic in ("src.tims.customer", "customer_sync.identify")}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)


@st.composite
def mutated(draw: Any) -> bytes:
    """A valid stage message with one to three things wrong."""
    value = json.loads(json.dumps(draw(st.sampled_from(SHAPES))))
    for _ in range(draw(st.integers(1, 3))):
        where = value.get("event") if isinstance(value.get("event"), dict) and draw(st.booleans()) else value
        if not isinstance(where, dict) or not where:
            break
        key = draw(st.sampled_from(sorted(where)))
        how = draw(st.sampled_from(["drop", "retype", "add", "nest"]))
        if how == "drop":
            where.pop(key)
        elif how == "retype":
            where[key] = draw(json_values)
        elif how == "add":
            where[draw(st.text(max_size=12))] = draw(json_values)
        else:
            where[key] = {"deeper": where[key]}
    return json.dumps(value).encode()  # ensure_ascii: lone surrogates travel as \\ud800 escapes


MESSAGES = st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()), mutated(),
                     mutated(), st.sampled_from(KILLERS))
KEYS = st.one_of(st.none(), st.binary(max_size=24), st.text(max_size=24).map(lambda t: t.encode("utf-8", "replace")))


def generate(count: int, seed: int) -> list[tuple[bytes | None, bytes]]:
    """``count`` (key, value) pairs drawn by Hypothesis (generation only: nothing to shrink)."""
    out: list[tuple[bytes | None, bytes]] = []

    @fixed_seed(seed)
    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(key=KEYS, value=MESSAGES)
    def collect(key: bytes | None, value: bytes) -> None:
        out.append((key, value))

    collect()
    return out


def env_for(bootstrap: str, sandbox: Sandbox, run: str, workdir: Path) -> dict[str, str]:
    return {**os.environ, **sandbox.worker_env(), "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CONNECT_APP_ID": f"fuzz-{run}", "CONNECT_TOPIC_PREFIX": f"fuzz{run}.", "CONNECT_TOPIC_PARTITIONS": "4",
            "CONNECT_DATA_DIR": str(workdir / "data"), "CONNECT_BROKER_COMMIT_INTERVAL": "0.5",
            "CONNECT_SINK_OBJECTS": ",".join(SINKS), "CONNECT_SINK_LINGER": "0.2",
            "CONNECT_TIMS_SOURCE_MODE": "webhook", "CONNECT_TIMS_WEBHOOK_SECRET": SECRET,
            "CONNECT_TIMS_WEBHOOK_PORT": str(free_port()), "CONNECT_TIMS_RECONCILE_INTERVAL": "1"}


async def play_person(sandbox: Sandbox, n: int, timeout: float = 600.0) -> float:
    """A Contact, then its customer entered in TIMS; seconds until the TIMS id is on the Contact."""
    contact = sandbox.org.create("Contact", {"FirstName": "Valid", "LastName": f"Person{n}",
                                             "Email": f"valid.person{n}@fuzz.example"})
    began = time.monotonic()
    tims_id = sandbox.tims.upsert_customer(name=f"Valid Person{n}", email=f"valid.person{n}@fuzz.example",
                                           external_id=contact, payment_terms="NET30")["customer_id"]
    while (sandbox.org.get("Contact", contact) or {}).get("TIMS_Customer_ID__c") != tims_id:
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"person {n}: the TIMS id never reached the Contact")
        await asyncio.sleep(0.2)
    return round(time.monotonic() - began, 1)


async def fuzz_topics(bootstrap: str, prefix: str, batches: dict[str, list[tuple[bytes | None, bytes]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=1_100_000, linger_ms=5)
    await producer.start()
    try:
        for topic, messages in batches.items():
            pending = [await producer.send(prefix + topic, value, key=key) for key, value in messages]
            await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def fuzz_webhook(url: str, bodies: list[bytes], rng: random.Random) -> tuple[Counter[int], Counter[int]]:
    """Post each body, 80 % of them signed as TIMS signs a delivery (timestamp, signature and a
    delivery id of their own); returns the statuses of all requests and of the signed ones."""
    statuses: Counter[int] = Counter()
    signed: Counter[int] = Counter()
    async with httpx.AsyncClient(timeout=30) as client:
        for body in bodies:
            stamp = str(int(time.time()))
            headers = {"Content-Type": "application/json"}
            is_signed = rng.random() < 0.8
            if is_signed:
                headers |= {"X-TIMS-Timestamp": stamp, "X-TIMS-Signature": sign(SECRET, stamp, body),
                            "X-TIMS-Delivery-Id": uuid.uuid4().hex}
            status = (await client.post(url, content=body, headers=headers)).status_code
            statuses[status] += 1
            if is_signed:
                signed[status] += 1
    return statuses, signed


async def settle(bootstrap: str, group: str, prefix: str, topics: list[str], timeout: float = 900.0) -> float:
    """Seconds until the worker has read every message of ``topics`` (twice in a row), each in the
    group that reads it: the app's, or a direct stage's (docs/adr/0028)."""
    groups = AppGroups.of(load_settings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix), group)
    began, zero = time.monotonic(), 0
    while zero < 2:
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"the worker still lags after {timeout:.0f}s")
        await asyncio.sleep(2)
        zero = zero + 1 if not any((await groups.lag(bootstrap, topics)).values()) else 0
    return round(time.monotonic() - began, 1)


async def run(count: int, seed: int, workdir: Path) -> dict[str, Any]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    run_id, rng = uuid.uuid4().hex[:8], random.Random(seed)
    sandbox = await start_sandbox(ports={n: 0 for n in ("salesforce-rest", "salesforce-pubsub", "pardot", "tims")},
                                  keepalive_seconds=5)
    env = env_for(bootstrap, sandbox, run_id, workdir)
    prefix = env["CONNECT_TOPIC_PREFIX"]
    worker = WorkerProcess(env, workdir / "worker.log")
    source = Processes(env, workdir)
    figures: dict[str, Any] = {"messages": count}
    try:
        began = time.monotonic()
        generated = generate(count, seed)
        figures["generate_s"] = round(time.monotonic() - began, 1)
        await create_topics(bootstrap, [prefix + t for t in SOURCE_TOPICS])
        await asyncio.to_thread(worker.start, 180.0)
        source.start("source-tims", "source", "tims")
        await asyncio.sleep(5)
        figures["valid_before_s"] = await play_person(sandbox, 0)
        batches: dict[str, list[tuple[bytes | None, bytes]]] = {target: [] for target in TARGETS}
        for i, message in enumerate(generated):
            batches[TARGETS[i % len(TARGETS)]].append(message)
        for topic, messages in HUGE.items():
            batches[topic] += messages
        figures["per_target"] = {target: len(messages) for target, messages in batches.items()}
        webhook = f"http://127.0.0.1:{env['CONNECT_TIMS_WEBHOOK_PORT']}/tims/webhook"
        began = time.monotonic()
        statuses, signed = await fuzz_webhook(webhook, [value for _, value in batches.pop("webhook")], rng)
        await fuzz_topics(bootstrap, prefix, batches)
        figures["fuzz_written_s"] = round(time.monotonic() - began, 1)
        figures["valid_after_s"] = await play_person(sandbox, 1)
        read_topics = [prefix + t for ts in STAGES.values() for t in ts] + [prefix + t for t in SINKS.values()]
        figures["settled_s"] = await settle(bootstrap, env["CONNECT_APP_ID"], prefix, read_topics)
        port = worker.env["CONNECT_WEB_PORT"]
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            sinks = (await client.get(f"http://127.0.0.1:{port}/sinks/stats/")).json()["sinks"]
        sizes = await topic_sizes(bootstrap, read_topics + [prefix + "quarantine.customer_sync",
                                                            prefix + "quarantine.sink", prefix + "quarantine.tims"])
        figures |= check(figures, stage_counts(metrics), sinks, sizes, prefix, statuses, signed)
        log = worker.log_text()
        figures["worker_alive"] = worker.proc is not None and worker.proc.poll() is None
        figures["source_alive"] = all(p.poll() is None for p in source.procs.values())
        figures["agent_crashes"] = log.count("Crashed")
        figures["local_quarantine_files"] = len(list((workdir / "data").glob("**/quarantine.*.jsonl")))
        return figures
    finally:
        await asyncio.to_thread(source.stop)
        if worker.proc is not None:
            await asyncio.to_thread(worker.stop, 60.0)
        await sandbox.stop()


def check(figures: dict[str, Any], counts: dict[tuple[str, str], float], sinks: dict[str, Any],
          sizes: dict[str, int], prefix: str, statuses: Counter[int], signed: Counter[int]) -> dict[str, Any]:
    """The accounting: per stage and per sink, against what the topics hold."""
    problems = []
    stages: dict[str, dict[str, float]] = {}
    for (stage, outcome), n in counts.items():
        stages.setdefault(stage, {})[outcome] = n
    for stage, topics in STAGES.items():
        got = stages.get(stage, {})
        held = sum(sizes[prefix + t] for t in topics)
        if got.get("in") != got.get("processed", 0) + got.get("quarantined", 0) or got.get("in") != held:
            problems.append(f"{stage}: {got} for {held} messages on its topics")
    flows_quarantined = sum(got.get("quarantined", 0) for got in stages.values())
    if flows_quarantined != sizes[prefix + "quarantine.customer_sync"]:
        problems.append(f"quarantine.customer_sync holds {sizes[prefix + 'quarantine.customer_sync']}, "
                        f"the stages counted {flows_quarantined}")
    sink_taken = {}
    for name, topic in SINKS.items():
        stats = sinks[f"sink-{name.replace('.', '-')}"]
        sink_taken[name] = stats["messages"]
        accounted = stats["messages_processed"] + stats["quarantined"] + stats["messages_dead_lettered"]
        if sink_taken[name] != sizes[prefix + topic] or accounted != sink_taken[name]:
            problems.append(f"sink {name}: took {sink_taken[name]} of {sizes[prefix + topic]}, "
                            f"accounted for {accounted} ({stats})")
    if any(status >= 500 or status < 400 for status in statuses):
        problems.append(f"webhook answers {dict(statuses)}")
    if signed and signed[401] == sum(signed.values()):
        # the harness no longer signs as the receiver wants: nothing reached the parser
        problems.append(f"every signed webhook request was refused as unauthenticated ({dict(signed)})")
    return {"stages": stages, "sinks_taken": sink_taken, "quarantine_topics": {
                t.removeprefix(prefix): n for t, n in sizes.items() if ".quarantine." in f".{t}"},
            "webhook_statuses": dict(statuses), "webhook_signed_statuses": dict(signed), "problems": problems}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--logs", type=Path, default=None, help="keep the processes' logs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as scratch:
        workdir = args.logs or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"fuzz: {args.messages} messages, logs in {workdir}", file=sys.stderr)
        figures = asyncio.run(run(args.messages, args.seed, workdir))
    print(json.dumps(figures))
    ok = (not figures["problems"] and figures["worker_alive"] and figures["source_alive"]
          and not figures["agent_crashes"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
