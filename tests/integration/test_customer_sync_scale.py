"""Customer sync at scale, end to end: 500 people arriving at once through the Lead, Contact,
Pardot and TIMS paths; two workers of one app, one of them SIGKILLed mid-run and restarted on
its own (stale) data dir; the three sources as processes; the sandbox in this process.

Done means: exactly one TIMS customer per person (those a TIMS user had entered are adopted,
never duplicated), every TIMS id on its Contact and its Account, both systems agreeing, and no
more writes from the connector once they agree.

How people arrive (seeded, so every run plays the same script): a sliding window of people is
active at once and their steps interleave at random. Every person is qualified (grade A, score
above 100), so every one must be onboarded. For 45 % of them a TIMS user enters the customer
(same email, sometimes in another case; no external_id) at a random moment up to, at the
latest, the same instant as the Lead conversion or the Contact's creation: the TIMS customer
exists before the connector could have created it.

- ``lead``: Pardot form → prospect scored and graded → Lead (pi__score__c, pi__grade__c) →
  conversion (Account, Contact) → the prospect linked to the Lead, then the Contact;
- ``contact``: a Salesforce user creates the Account and a graded Contact; the prospect is
  created and linked to them (before or after);
- ``lead_tims`` / ``contact_tims``: the same, with the TIMS user's customer in between.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from sandbox.run import Sandbox, start_sandbox
from sandbox.demo import Processes
from tests.support.kafka import topic_sizes
from tests.support.worker import WorkerProcess, free_port

pytestmark = pytest.mark.integration

SEED = 6
PATHS = {"lead": 175, "lead_tims": 150, "contact": 100, "contact_tims": 75}
PEOPLE = sum(PATHS.values())
WINDOW = 60  # people arriving at the same time
ARRIVAL_SECONDS = 30.0
KILL_AT, RESTART_AT = 0.35, 0.6  # shares of the arrival played when worker b is killed / restarted
CONVERGE_TIMEOUT = 150.0
QUIET_WINDOW = 8.0
SETTLE_TIMEOUT = 60.0
CLIENT = "pardot-tims-connect"
SALESFORCE_WRITES = {"create", "update", "delete", "upsert", "collections.create", "collections.update",
                     "collections.delete", "collections.upsert"}
FIRST_NAMES = ["Ada", "Grace", "Alan", "Katherine", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia"]

Action = Callable[[], None]


@dataclass
class Person:
    i: int
    path: str
    first: str
    last: str
    score: int
    ids: dict[str, Any] = field(default_factory=dict)

    @property
    def email(self) -> str:
        return f"{self.first.lower()}.{self.last.lower()}@scale.example"

    @property
    def company(self) -> str:
        return f"{self.last} Gases Ltd"

    @property
    def tims_user_enters(self) -> bool:
        return self.path.endswith("_tims")


def cast(rng: random.Random) -> list[Person]:
    paths = [path for path, count in PATHS.items() for _ in range(count)]
    rng.shuffle(paths)
    return [Person(i, path, FIRST_NAMES[i % len(FIRST_NAMES)], f"Scale{i:03d}", rng.randint(101, 300))
            for i, path in enumerate(paths)]


def script(person: Person, sandbox: Sandbox, rng: random.Random) -> list[list[Action]]:
    """The person's steps; the actions of one step happen at the same instant."""
    org, pardot, tims = sandbox.org, sandbox.pardot, sandbox.tims
    p = person

    def form() -> None:
        prospect, _ = pardot.submit_form(p.email, {"firstName": p.first, "lastName": p.last, "company": p.company})
        p.ids["prospect"] = prospect["id"]

    def grade() -> None:
        pardot.update_prospect(p.ids["prospect"], score=p.score, grade="A")

    def lead() -> None:
        p.ids["lead"] = org.create("Lead", {"FirstName": p.first, "LastName": p.last, "Email": p.email,
                                            "Company": p.company, "pi__score__c": float(p.score),
                                            "pi__grade__c": "A"})
        pardot.link_crm(p.ids["prospect"], lead_id=p.ids["lead"])

    def convert() -> None:
        converted = org.convert_lead(p.ids["lead"])
        p.ids.update(contact=converted.contact_id, account=converted.account_id)
        pardot.link_crm(p.ids["prospect"], contact_id=converted.contact_id, account_id=converted.account_id)

    def account() -> None:
        p.ids["account"] = org.create("Account", {"Name": p.company})

    def contact() -> None:
        p.ids["contact"] = org.create("Contact", {"FirstName": p.first, "LastName": p.last, "Email": p.email,
                                                  "AccountId": p.ids["account"], "pi__score__c": float(p.score),
                                                  "pi__grade__c": "A"})

    def prospect() -> None:
        p.ids["prospect"] = pardot.create_prospect(p.email, firstName=p.first, lastName=p.last, company=p.company,
                                                   score=p.score, grade="A")["id"]

    def link() -> None:
        pardot.link_crm(p.ids["prospect"], contact_id=p.ids["contact"], account_id=p.ids["account"])

    def tims_user() -> None:
        email = p.email if p.i % 3 else p.email.capitalize()
        name = f"{p.first} {p.last}" if p.i % 2 else f"{p.first} {p.last}".upper()
        entered = tims.upsert_customer(name=name, email=email, billing_address={"city": "Leeds"})
        p.ids["tims_user"] = entered["customer_id"]

    if p.path.startswith("lead"):
        steps: list[list[Action]] = [[form], [grade], [lead], [convert]]
    else:
        steps = [[account], [contact], [prospect], [link]]
        if rng.random() >= 0.5:  # the prospect first
            steps = [steps[2], steps[0], steps[1], steps[3]]
    if p.tims_user_enters:
        # at the latest together with the step that makes the person onboardable
        last = steps.index([convert]) if p.path == "lead_tims" else steps.index([contact])
        at = rng.randint(0, last)
        steps[at] = [tims_user, *steps[at]] if rng.random() < 0.5 or at == 0 else [*steps[at], tims_user]
    return steps


async def arrive(people: list[Person], sandbox: Sandbox, rng: random.Random,
                 milestones: dict[float, Callable[[], Any]]) -> None:
    """Play every person's script, ``WINDOW`` people at a time, their steps interleaved at random,
    paced over ``ARRIVAL_SECONDS``; ``milestones`` run when that share of the steps is played."""
    scripts = deque(deque(script(p, sandbox, rng)) for p in people)
    total = sum(len(s) for s in scripts)
    active: list[deque[list[Action]]] = []
    pending = dict(sorted(milestones.items()))
    started, played = time.monotonic(), 0
    while scripts or active:
        while scripts and len(active) < WINDOW:
            active.append(scripts.popleft())
        index = rng.randrange(len(active))
        for action in active[index].popleft():
            action()
        if not active[index]:
            active[index] = active[-1]
            active.pop()
        played += 1
        for share in [s for s in pending if played >= s * total]:
            await pending.pop(share)()
        delay = started + played * ARRIVAL_SECONDS / total - time.monotonic()
        await asyncio.sleep(max(delay, 0))


def connector_writes(sandbox: Sandbox) -> dict[str, int]:
    api = sandbox.org.snapshot(with_records=False)["api"]
    salesforce = sum(n for client_kind, n in api["by_client_kind"].items()
                     if client_kind.split(" ")[0] == CLIENT and client_kind.split(" ")[-1] in SALESFORCE_WRITES)
    return {"salesforce": salesforce, "tims": sum(1 for c in sandbox.tims.changes if c.modified_by == "connect")}


def check_people(sandbox: Sandbox, people: list[Person]) -> tuple[list[str], int]:
    """What is not (yet) as it must end; and how many TIMS customers there are."""
    customers = sandbox.tims.all("customers")
    by_email: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for customer in customers:
        by_email[str(customer.get("email") or "").lower()].append(customer)
    problems = [f"{len(twins)} TIMS customers with email {email}: {[c['customer_id'] for c in twins]}"
                for email, twins in by_email.items() if len(twins) > 1]
    for p in people:
        found = by_email.get(p.email, [])
        if len(found) != 1:
            problems.append(f"person {p.i} ({p.path}): {len(found)} TIMS customers")
            continue
        customer = found[0]
        tims_id = customer["customer_id"]
        contact = sandbox.org.get("Contact", p.ids["contact"]) or {}
        account = sandbox.org.get("Account", p.ids["account"]) or {}
        wrong = []
        if customer.get("external_id") != p.ids["contact"]:
            wrong.append(f"TIMS external_id {customer.get('external_id')} (Contact {p.ids['contact']})")
        if p.tims_user_enters and tims_id != p.ids["tims_user"]:
            wrong.append(f"TIMS id {tims_id}, not the TIMS user's {p.ids['tims_user']}")
        if contact.get("TIMS_Customer_ID__c") != tims_id:
            wrong.append(f"Contact TIMS_Customer_ID__c {contact.get('TIMS_Customer_ID__c')} (TIMS {tims_id})")
        if account.get("TIMS_Customer_ID__c") != tims_id:
            wrong.append(f"Account TIMS_Customer_ID__c {account.get('TIMS_Customer_ID__c')} (TIMS {tims_id})")
        if wrong:
            problems.append(f"person {p.i} ({p.path}): " + "; ".join(wrong))
    return problems, len(customers)


def disagreements(sandbox: Sandbox, people: list[Person]) -> list[str]:
    """Fields both systems hold that differ, once everything settled."""
    customers = {str(c.get("email") or "").lower(): c for c in sandbox.tims.all("customers")}
    out = []
    for p in people:
        customer = customers[p.email]
        contact = sandbox.org.get("Contact", p.ids["contact"]) or {}
        account = sandbox.org.get("Account", p.ids["account"]) or {}
        pairs = {
            "name": (customer["name"], f"{p.first} {p.last}"),
            "email": (customer["email"], contact.get("Email")),
            "payment terms on Contact": (customer["payment_terms"], contact.get("TIMS_Payment_Terms__c")),
            "payment terms on Account": (customer["payment_terms"], account.get("TIMS_Payment_Terms__c")),
            "city": ((customer.get("billing_address") or {}).get("city"), contact.get("MailingCity")),
        }
        if p.tims_user_enters:
            pairs["city entered in TIMS"] = (contact.get("MailingCity"), "Leeds")
        out += [f"person {p.i} ({p.path}) {what}: TIMS {a!r} vs Salesforce {b!r}"
                for what, (a, b) in pairs.items() if a != b]
    return out


async def test_500_customers_two_workers_one_killed(app_env: dict[str, str], tmp_path: Path) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    people = cast(rng)
    sandbox = await start_sandbox(ports={"salesforce-rest": 0, "salesforce-pubsub": 0, "pardot": 0, "tims": 0},
                                  keepalive_seconds=5)
    env = {**app_env, **sandbox.worker_env(),
           "CONNECT_SINK_OBJECTS": "salesforce.Contact,salesforce.Account,tims.customer",
           "CONNECT_SINK_LINGER": "0.2", "CONNECT_TIMS_POLL_INTERVAL": "1", "CONNECT_PARDOT_POLL_INTERVAL": "1",
           "CONNECT_TOPIC_PARTITIONS": "4", "CONNECT_BROKER_SESSION_TIMEOUT": "10",
           "CONNECT_BROKER_HEARTBEAT_INTERVAL": "1"}
    workers = {name: WorkerProcess({**env, "CONNECT_DATA_DIR": str(tmp_path / f"data-{name}"),
                                    "CONNECT_WEB_PORT": str(free_port())}, tmp_path / f"worker-{name}.log", name)
               for name in ("a", "b")}
    sources = Processes({**os.environ, **env}, tmp_path)
    figures: dict[str, float] = {}
    restart: asyncio.Task[Any] | None = None
    try:
        await asyncio.gather(*(asyncio.to_thread(w.start, 120.0) for w in workers.values()))
        for system in ("salesforce", "tims", "pardot"):
            sources.start(f"source-{system}", "source", system)
        figures["started"] = time.monotonic() - began
        await asyncio.sleep(3)

        async def kill_b() -> None:
            figures["killed_at"] = time.monotonic() - arrival
            assert await asyncio.to_thread(workers["b"].kill) == -9
            # it was doing its share when it died: partitions assigned and sink batches written
            assert re.search(r"sink \S+: \d+ message\(s\), \d+ stale, [1-9]\d* written", workers["b"].log_text()), \
                workers["b"].log_text()[-3000:]

        async def restart_b() -> None:
            nonlocal restart
            figures["restarted_at"] = time.monotonic() - arrival
            restart = asyncio.create_task(asyncio.to_thread(workers["b"].start, 120.0))

        arrival = time.monotonic()
        await arrive(people, sandbox, rng, {KILL_AT: kill_b, RESTART_AT: restart_b})
        figures["arrival"] = time.monotonic() - arrival

        problems: list[str] = []
        count = 0
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        while time.monotonic() < deadline:
            sources.check()
            assert workers["a"].proc is not None and workers["a"].proc.poll() is None, workers["a"].log_text()[-3000:]
            problems, count = check_people(sandbox, people)
            if not problems and count == PEOPLE:
                break
            await asyncio.sleep(1)
        figures["converged"] = time.monotonic() - arrival
        assert not problems and count == PEOPLE, (
            f"not converged after {CONVERGE_TIMEOUT:.0f}s: {count} TIMS customers for {PEOPLE} people; "
            f"{len(problems)} problems, first ones: {problems[:15]}")
        assert restart is not None
        await restart  # worker b is back (raises if it could not start again)

        # Quiet once they agree: writes stop (a few trailing ones may still land while settling).
        settle_deadline = time.monotonic() + SETTLE_TIMEOUT
        windows: list[dict[str, int]] = []
        while True:
            before = connector_writes(sandbox)
            await asyncio.sleep(QUIET_WINDOW)
            after = connector_writes(sandbox)
            windows.append({k: after[k] - before[k] for k in after})
            if after == before:
                break
            assert time.monotonic() < settle_deadline, f"the connector keeps writing; per {QUIET_WINDOW}s: {windows}"
        figures["quiet"] = time.monotonic() - arrival

        problems, count = check_people(sandbox, people)
        assert not problems and count == PEOPLE, problems[:15]
        customers = sandbox.tims.all("customers")
        assert len(customers) == PEOPLE
        emails = Counter(str(c["email"]).lower() for c in customers)
        assert set(emails) == {p.email for p in people} and set(emails.values()) == {1}
        assert disagreements(sandbox, people) == []
        prefix = app_env["CONNECT_TOPIC_PREFIX"]
        rejected = await topic_sizes(app_env["KAFKA_BOOTSTRAP_SERVERS"], [
            f"{prefix}{t}" for t in ("dlq.salesforce", "dlq.tims", "quarantine.customer_sync", "quarantine.sink")])
        assert set(rejected.values()) == {0}, rejected
        for worker in workers.values():
            assert worker.proc is not None and worker.proc.poll() is None, worker.log_text()[-3000:]

        api = sandbox.org.snapshot(with_records=False)["api"]
        ours = {k.split(" ", 1)[1]: n for k, n in sorted(api["by_client_kind"].items()) if k.startswith(CLIENT + " ")}
        writes = connector_writes(sandbox)
        print(f"\n{PEOPLE} people ({dict(PATHS)}); 2 workers, b SIGKILLed at {figures['killed_at']:.1f}s and "
              f"restarted at {figures['restarted_at']:.1f}s of the arrival")
        print(f"  workers and sources ready after {figures['started']:.1f}s; arrival took {figures['arrival']:.1f}s")
        print(f"  converged {figures['converged']:.1f}s after the first arrival "
              f"({figures['converged'] - figures['arrival']:.1f}s after the last); quiet (no write for "
              f"{QUIET_WINDOW:.0f}s) at {figures['quiet']:.1f}s; writes per window while settling {windows}")
        print(f"  Salesforce API calls by {CLIENT}: {sum(ours.values())} {ours} "
              f"({writes['salesforce'] / PEOPLE * 1000:.0f} write calls per 1,000 people); TIMS records written by "
              f"connect: {writes['tims']} ({writes['tims'] / PEOPLE * 1000:.0f} per 1,000 people)")
        print(f"  TIMS customers: {len(customers)} (adopted from TIMS users: "
              f"{sum(1 for p in people if p.tims_user_enters)}); test took {time.monotonic() - began:.0f}s")
    finally:
        if restart is not None and not restart.done():
            await asyncio.wait([restart])
        await asyncio.gather(asyncio.to_thread(sources.stop), *(asyncio.to_thread(w.stop, 60.0)
                                                                   for w in workers.values() if w.proc is not None))
        await sandbox.stop()
