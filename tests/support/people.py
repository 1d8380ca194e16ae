"""People played through the customer sync paths against the sandbox, and what must hold once
the systems settle: for the scale test and the chaos run (tests/support/chaos.py).

Paths (every person is qualified: grade A, score above 100, so every one must be onboarded):

- ``lead``: Pardot form → prospect scored and graded → Lead (pi__score__c, pi__grade__c) →
  conversion (Account, Contact) → the prospect linked to the Lead, then the Contact;
- ``contact``: a Salesforce user creates the Account and a graded Contact; the prospect is
  created and linked to them (before or after);
- ``lead_tims`` / ``contact_tims``: the same, with a TIMS user entering the customer (same email,
  sometimes in another case; no external_id) at a random moment up to, at the latest, the same
  instant as the Lead conversion or the Contact's creation: the TIMS customer exists before the
  connector could have created it, and must be adopted, never duplicated.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from sandbox.run import Sandbox
from tests.support.flows import CLIENT, SALESFORCE_WRITES

__all__ = ["Person", "cast", "script", "arrive", "api_writes", "check_people", "disagreements"]

FIRST_NAMES = ["Ada", "Grace", "Alan", "Katherine", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia"]

Action = Callable[[], None]


@dataclass
class Person:
    i: int
    path: str
    first: str
    last: str
    score: int
    domain: str = "scale.example"
    ids: dict[str, Any] = field(default_factory=dict)

    @property
    def email(self) -> str:
        return f"{self.first.lower()}.{self.last.lower()}@{self.domain}"

    @property
    def company(self) -> str:
        return f"{self.last} Gases Ltd"

    @property
    def tims_user_enters(self) -> bool:
        return self.path.endswith("_tims")


def cast(rng: random.Random, paths: dict[str, int], tag: str = "Scale") -> list[Person]:
    """``paths[p]`` people on each path, shuffled; names ``<first> <tag><i>`` at ``<tag>.example``."""
    order = [path for path, count in paths.items() for _ in range(count)]
    rng.shuffle(order)
    return [Person(i, path, FIRST_NAMES[i % len(FIRST_NAMES)], f"{tag}{i:03d}", rng.randint(101, 300),
                   domain=f"{tag.lower()}.example")
            for i, path in enumerate(order)]


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
                 milestones: dict[float, Callable[[], Any]], *, window: int, seconds: float) -> None:
    """Play every person's script, ``window`` people at a time, their steps interleaved at random,
    paced over ``seconds``; ``milestones`` run when that share of the steps is played."""
    scripts = deque(deque(script(p, sandbox, rng)) for p in people)
    total = sum(len(s) for s in scripts)
    active: list[deque[list[Action]]] = []
    pending = dict(sorted(milestones.items()))
    started, played = time.monotonic(), 0
    while scripts or active:
        while scripts and len(active) < window:
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
        delay = started + played * seconds / total - time.monotonic()
        await asyncio.sleep(max(delay, 0))


def api_writes(sandbox: Sandbox) -> dict[str, int]:
    """Writes the connector made so far: Salesforce write calls, TIMS changes."""
    api = sandbox.org.snapshot(with_records=False)["api"]
    salesforce = sum(n for client_kind, n in api["by_client_kind"].items()
                     if client_kind.split(" ")[0] == CLIENT and client_kind.split(" ")[-1] in SALESFORCE_WRITES)
    return {"salesforce": salesforce, "tims": sum(1 for c in sandbox.tims.changes if c.modified_by == "connect")}


def by_email(sandbox: Sandbox) -> dict[str, list[dict[str, Any]]]:
    """TIMS customers by lower-cased email."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for customer in sandbox.tims.all("customers"):
        found[str(customer.get("email") or "").lower()].append(customer)
    return found


def wrong_ids(sandbox: Sandbox, person: Person, customer: dict[str, Any]) -> list[str]:
    """What links the person's one TIMS customer and their Contact and Account wrongly."""
    p, tims_id = person, customer["customer_id"]
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
    return wrong


def check_people(sandbox: Sandbox, people: list[Person]) -> tuple[list[str], int]:
    """What is not (yet) as it must end; and how many TIMS customers there are."""
    customers = by_email(sandbox)
    problems = [f"{len(twins)} TIMS customers with email {email}: {[c['customer_id'] for c in twins]}"
                for email, twins in customers.items() if len(twins) > 1]
    for p in people:
        found = customers.get(p.email, [])
        if len(found) != 1:
            problems.append(f"person {p.i} ({p.path}): {len(found)} TIMS customers")
            continue
        wrong = wrong_ids(sandbox, p, found[0])
        if wrong:
            problems.append(f"person {p.i} ({p.path}): " + "; ".join(wrong))
    return problems, sum(len(twins) for twins in customers.values())


def disagreements(sandbox: Sandbox, people: list[Person],
                  expected: Callable[[Person], dict[str, Any]] = lambda p: {}) -> list[str]:
    """Fields both systems hold that differ, once everything settled; and values other than
    ``expected(person)`` (``city``, ``payment_terms``: what the last edit set)."""
    customers = {email: twins[0] for email, twins in by_email(sandbox).items()}
    out = []
    for p in people:
        customer = customers.get(p.email)
        if customer is None:
            out.append(f"person {p.i} ({p.path}): no TIMS customer")
            continue
        contact = sandbox.org.get("Contact", p.ids["contact"]) or {}
        account = sandbox.org.get("Account", p.ids["account"]) or {}
        pairs = {
            "name": (customer["name"], f"{p.first} {p.last}"),
            "email": (customer["email"], contact.get("Email")),
            "payment terms on Contact": (customer["payment_terms"], contact.get("TIMS_Payment_Terms__c")),
            "payment terms on Account": (customer["payment_terms"], account.get("TIMS_Payment_Terms__c")),
            "city": ((customer.get("billing_address") or {}).get("city"), contact.get("MailingCity")),
        }
        wanted = expected(p)
        if "city" in wanted:
            pairs["city as edited"] = (contact.get("MailingCity"), wanted["city"])
        elif p.tims_user_enters:
            pairs["city entered in TIMS"] = (contact.get("MailingCity"), "Leeds")
        if "payment_terms" in wanted:
            pairs["payment terms as edited"] = (customer["payment_terms"], wanted["payment_terms"])
        out += [f"person {p.i} ({p.path}) {what}: TIMS {a!r} vs Salesforce {b!r}"
                for what, (a, b) in pairs.items() if a != b]
    return out
