"""Conflicts end to end: the sandbox in this process, a worker and the three sources as processes.

Per round, with fresh customers each time, users on both sides edit the same field within a
second, and a TIMS user edits a field Salesforce owns:

- ``tims_later``: a Salesforce user sets the Contact's MailingCity, 0.4 s later a TIMS user sets
  the customer's billing city: the later commit (TIMS) wins;
- ``salesforce_later``: the same the other way round: Salesforce wins;
- ``same_time``: both edits carry the same commit time to the millisecond: the tie goes to
  Salesforce (topologies/customer_sync/golden.py ``Policy.rank``);
- ``owned``: a TIMS user changes the email (owned by Salesforce), twice, one edit after the
  other was won back: Salesforce's email is written back to TIMS both times;
- ``other_field``: the city a TIMS user entered earlier has reached Salesforce; a Salesforce
  user changes it and, 0.1 s later, a TIMS user changes the payment terms (TIMS sends the whole
  record, old city included): the Salesforce user is still the last writer of the city, and
  the payment terms reach Salesforce.

Every round must end the same way, in both systems, with the decision on ``audit.conflicts``,
and the systems must then go quiet.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sandbox.run import Sandbox, start_sandbox
from sandbox.demo import Processes
from tests.support.kafka import read_json
from tests.support.flows import connector_writes, wait_until
from tests.support.worker import WorkerProcess, free_port
from topologies.customer_sync.identity import mint_key

pytestmark = pytest.mark.integration

ROUNDS = 3
CASES = ("tims_later", "salesforce_later", "same_time", "owned", "other_field")
#: who must win each case, by the policy
EXPECTED = {"tims_later": "tims", "salesforce_later": "salesforce", "same_time": "salesforce", "owned": "salesforce",
            "other_field": "salesforce"}
#: the rule that decides it (other_field: no conflict at all, the TIMS user did not touch the city)
RULE = {"tims_later": "last_writer", "salesforce_later": "last_writer", "same_time": "tie_break", "owned": "owner",
        "other_field": None}
GAP = 0.4  # seconds between the two edits of a pair


class Person:
    def __init__(self, round_: int, case: str) -> None:
        self.round, self.case = round_, case
        self.first, self.last = "Conflict", f"R{round_}{case.replace('_', '').title()}"
        self.email = f"{case.replace('_', '')}.r{round_}@conflicts.example"
        self.ids: dict[str, str] = {}
        #: the values each side wrote, and the one that must win
        self.salesforce_value: str | None = None
        self.tims_values: list[str] = []

    @property
    def key(self) -> str:
        return mint_key(self.email)

    def expected(self) -> str:
        if self.case == "owned":
            return self.email
        assert self.salesforce_value and self.tims_values
        return self.tims_values[-1] if EXPECTED[self.case] == "tims" else self.salesforce_value


def onboard(sandbox: Sandbox, person: Person) -> None:
    """Flow 1, as the demo plays it: form, score and grade, Lead, conversion."""
    org, pardot = sandbox.org, sandbox.pardot
    prospect, _ = pardot.submit_form(person.email, {"firstName": person.first, "lastName": person.last,
                                                     "company": f"{person.last} Welding"})
    pardot.update_prospect(prospect["id"], score=150, grade="A")
    lead_id = org.create("Lead", {"FirstName": person.first, "LastName": person.last, "Email": person.email,
                                  "Company": f"{person.last} Welding", "pi__score__c": 150.0, "pi__grade__c": "A"})
    pardot.link_crm(prospect["id"], lead_id=lead_id)
    converted = org.convert_lead(lead_id)
    pardot.link_crm(prospect["id"], contact_id=converted.contact_id, account_id=converted.account_id)
    person.ids.update(contact=converted.contact_id, account=converted.account_id)


def onboarded(sandbox: Sandbox, person: Person) -> bool:
    try:
        customer = sandbox.tims.customer_by_external_id(person.ids["contact"])
    except Exception:  # noqa: BLE001 - not there yet
        return False
    person.ids["tims"] = customer["customer_id"]
    contact = sandbox.org.get("Contact", person.ids["contact"]) or {}
    account = sandbox.org.get("Account", person.ids["account"]) or {}
    return contact.get("TIMS_Customer_ID__c") == account.get("TIMS_Customer_ID__c") == customer["customer_id"]


def values(sandbox: Sandbox, person: Person) -> tuple[Any, Any]:
    """(Salesforce, TIMS) values of the field the person's case is about."""
    contact = sandbox.org.get("Contact", person.ids["contact"]) or {}
    customer = sandbox.tims.customer(person.ids["tims"])
    if person.case == "owned":
        return contact.get("Email"), customer.get("email")
    return contact.get("MailingCity"), (customer.get("billing_address") or {}).get("city")


def payment_terms(sandbox: Sandbox, person: Person) -> tuple[Any, Any]:
    contact = sandbox.org.get("Contact", person.ids["contact"]) or {}
    return contact.get("TIMS_Payment_Terms__c"), sandbox.tims.customer(person.ids["tims"]).get("payment_terms")


def settled(sandbox: Sandbox, person: Person) -> bool:
    if person.case == "other_field" and payment_terms(sandbox, person) != ("NET60", "NET60"):
        return False
    return values(sandbox, person) == (person.expected(), person.expected())


def commit_ms(salesforce_stamp: str) -> int:
    """A Salesforce datetime (``2026-11-26T08:00:00.123+0000``) in epoch milliseconds."""
    return round(datetime.strptime(salesforce_stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)


async def edit(sandbox: Sandbox, person: Person, sources: Processes, worker: WorkerProcess) -> None:
    """Play the person's case: two users editing one field within a second."""
    org, tims = sandbox.org, sandbox.tims
    contact, customer = person.ids["contact"], person.ids["tims"]
    sf_city, tims_city = f"Sheffield {person.round}", f"Tromso {person.round}"

    def salesforce_user() -> None:
        org.update("Contact", contact, {"MailingCity": sf_city})
        person.salesforce_value = sf_city

    def tims_user(at: float | None = None) -> None:
        tims.update_customer(customer, billing_address={"city": tims_city}, at=at)
        person.tims_values.append(tims_city)

    if person.case == "tims_later":
        salesforce_user()
        await asyncio.sleep(GAP)
        tims_user()
    elif person.case == "salesforce_later":
        tims_user()
        await asyncio.sleep(GAP)
        salesforce_user()
    elif person.case == "same_time":
        salesforce_user()
        tims_user(at=commit_ms(org.get("Contact", contact)["LastModifiedDate"]) / 1000)
    elif person.case == "other_field":
        entered = f"Leeds {person.round}"
        tims.update_customer(customer, billing_address={"city": entered})
        person.tims_values.append(entered)
        await wait_until(f"round {person.round}: the city entered in TIMS reached Salesforce",
                         lambda: values(sandbox, person) == (entered, entered), sources, worker,
                         state=lambda: f"(Salesforce, TIMS) = {values(sandbox, person)}")
        await asyncio.sleep(2)  # settled: every event of that edit is behind us
        salesforce_user()
        await asyncio.sleep(0.1)
        tims.update_customer(customer, payment_terms="NET60")
    else:
        person.salesforce_value = person.email
        for attempt in (1, 2):
            typo = f"typo{attempt}.{person.email}"
            tims.update_customer(customer, email=typo)
            person.tims_values.append(typo)
            await wait_until(f"round {person.round}: Salesforce's email won back in TIMS after edit {attempt}",
                             lambda: values(sandbox, person) == (person.email, person.email), sources, worker,
                             state=lambda: f"(Salesforce, TIMS) = {values(sandbox, person)}")


def winner(person: Person, salesforce: Any, tims: Any) -> str:
    """Whose edit the two systems hold now: salesforce, tims, or disagree / neither."""
    if salesforce != tims:
        return "disagree"
    if salesforce == person.salesforce_value:
        return "salesforce"
    return "tims" if person.tims_values and salesforce == person.tims_values[-1] else "neither"


def decided_as_expected(person: Person, conflicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The audit entries that record the person's conflict decided as the policy says."""
    if RULE[person.case] is None:
        return [{"no conflict expected": person.case}]
    field = "email" if person.case == "owned" else "city"
    winner = EXPECTED[person.case]
    loser = "tims" if winner == "salesforce" else "salesforce"
    expected_loser_values = set(person.tims_values) if loser == "tims" else {person.salesforce_value}
    found = [c for c in conflicts
             if c["customer_key"] == person.key and c["field"] == field and c["rule"] == RULE[person.case]
             and c["winner"]["system"] == winner and c["winner"]["value"] == person.expected()
             and c["loser"]["system"] == loser and c["loser"]["value"] in expected_loser_values]
    if person.case == "same_time":
        found = [c for c in found if c["winner"]["commit_timestamp"] == c["loser"]["commit_timestamp"]]
    if person.case == "owned":
        found = [c for c in found if c["owner"] == "salesforce"]
        if {c["loser"]["value"] for c in found} != set(person.tims_values):
            return []  # both owned-field edits must be on record
    return found


async def test_conflicts_resolve_by_policy_the_same_way_every_round(app_env: dict[str, str], tmp_path: Path) -> None:
    began = time.monotonic()
    sandbox = await start_sandbox(ports={"salesforce-rest": 0, "salesforce-pubsub": 0, "pardot": 0, "tims": 0},
                                  keepalive_seconds=5)
    env = {**app_env, **sandbox.worker_env(), "CONNECT_WEB_PORT": str(free_port()),
           "CONNECT_SINK_OBJECTS": "salesforce.Contact,salesforce.Account,tims.customer",
           "CONNECT_SINK_LINGER": "0.2", "CONNECT_TIMS_POLL_INTERVAL": "1", "CONNECT_PARDOT_POLL_INTERVAL": "1"}
    worker = WorkerProcess(env, tmp_path / "worker.log")
    sources = Processes({**os.environ, **env}, tmp_path)
    rounds = [{case: Person(r, case) for case in CASES} for r in range(1, ROUNDS + 1)]
    people = [p for round_ in rounds for p in round_.values()]
    try:
        await asyncio.to_thread(worker.start, 120.0)
        for system in ("salesforce", "tims", "pardot"):
            sources.start(f"source-{system}", "source", system)
        for person in people:
            onboard(sandbox, person)
        await wait_until("every person onboarded, TIMS id on Contact and Account",
                         lambda: all(onboarded(sandbox, p) for p in people), sources, worker, timeout=120)
        assert len(sandbox.tims.all("customers")) == len(people)

        outcomes: list[dict[str, str]] = []
        for number, round_ in enumerate(rounds, start=1):
            await asyncio.gather(*(edit(sandbox, p, sources, worker) for p in round_.values()))
            await wait_until(
                f"round {number}: both systems hold the winning values",
                lambda: all(settled(sandbox, p) for p in round_.values()), sources, worker,
                state=lambda: {case: values(sandbox, p) for case, p in round_.items()})
            outcomes.append({case: winner(p, *values(sandbox, p)) for case, p in round_.items()})
        assert outcomes == [EXPECTED] * ROUNDS, outcomes

        # Quiet once they agree, and still agreeing.
        while True:
            before = connector_writes(sandbox)
            await asyncio.sleep(5)
            if connector_writes(sandbox) == before:
                break
            assert time.monotonic() - began < 400, "the connector keeps writing"
        for person in people:
            assert settled(sandbox, person), (person.case, values(sandbox, person), payment_terms(sandbox, person))
        assert len(sandbox.tims.all("customers")) == len(people)

        conflicts = await read_json(
            app_env["KAFKA_BOOTSTRAP_SERVERS"], f"{app_env['CONNECT_TOPIC_PREFIX']}audit.conflicts",
            until=lambda found: all(decided_as_expected(p, found) for p in people), timeout=30)
        for person in people:
            assert decided_as_expected(person, conflicts), (
                person.case, person.round, [c for c in conflicts if c["customer_key"] == person.key])
        # No entry says otherwise: whatever the order the events were processed in.
        for person in people:
            field = "email" if person.case == "owned" else "city"
            final = [c for c in conflicts if c["customer_key"] == person.key and c["field"] == field]
            assert all(c["winner"]["system"] == EXPECTED[person.case] for c in final
                       if c["loser"]["value"] in {person.salesforce_value, *person.tims_values}
                       and c["winner"]["value"] in {person.salesforce_value, *person.tims_values}), final
        print(f"\n{ROUNDS} rounds x {len(CASES)} cases decided {outcomes[0]} every time; "
              f"{len(conflicts)} entries on audit.conflicts; test took {time.monotonic() - began:.0f}s")
    finally:
        await asyncio.gather(asyncio.to_thread(sources.stop), asyncio.to_thread(worker.stop, 60.0))
        await sandbox.stop()
