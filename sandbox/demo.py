"""`stream-app demo`: the sandbox, a worker and the three sources, playing the customer, engagement and
order-to-cash flows.

1. Website lead capture → TIMS onboarding: a Pardot form creates a prospect, Pardot scores and
   grades it and syncs a Lead; the Lead is converted; the qualified ones become TIMS customers
   exactly once, and the TIMS id lands on the Contact and the Account.
2. Customer master both ways: a Salesforce user edits a phone and a city (→ TIMS); a TIMS user
   edits payment terms and the credit limit (→ Salesforce custom fields).
3. Engagement: a customer with an open order and an invoice in TIMS submits a form and clicks a
   link in an email: two Tasks on the Contact with the TIMS context; a TIMS segment appears as
   a Campaign and a Pardot list, with the customer in both.
4. Order to cash: two TIMS items become Product2s with standard prices; a Closed Won
   Opportunity with both becomes one TIMS sales order; TIMS ships and invoices it (the status,
   ship date and tracking reach the Opportunity); the customer pays part, and the open balance
   reaches the Account and the Pardot prospect.
5. The web shop: a TIMS price reaches the shop's variant and a TIMS price change follows, as
   does TIMS's stock at its main warehouse; a web
   order becomes one TIMS sales order and, once TIMS ships it, the shop order is fulfilled with
   the tracking number; an abandoned cart reaches the Pardot prospect and the nurture list, and
   the order the nurture email brings back clears both.

The sandbox runs in this process; the worker and the sources run as subprocesses, as an
operator would run them. Each run uses its own app id and topic prefix, so runs never mix.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx

from connectors import registry
from sandbox.run import DEFAULT_PORTS, Sandbox, port_is_free, start_sandbox
from sandbox.shop.store import LOCATION

__all__ = ["run_demo", "DemoError", "PEOPLE"]


class DemoError(RuntimeError):
    """A process of the demo stopped; the message says which, and where its log is."""


@dataclass
class Person:
    first: str
    last: str
    email: str
    company: str
    score: int
    grade: str
    ids: dict[str, Any] = field(default_factory=dict)

    @property
    def qualified(self) -> bool:
        return self.grade in ("A", "A+") and self.score > 100


PEOPLE = [
    Person("Ada", "Lovelace", "ada@analytical.example", "Analytical Engines Ltd", 180, "A"),
    Person("Grace", "Hopper", "grace@cobol.example", "Compiler Works", 240, "A+"),
    Person("Alan", "Turing", "alan@bombe.example", "Bletchley Supplies", 95, "B"),
    Person("Katherine", "Johnson", "katherine@orbits.example", "Trajectory Gas Co", 130, "A"),
]


class Processes:
    """The worker and the sources, each with its own log file."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.exe = shutil.which("stream-app") or str(Path(sys.executable).with_name("stream-app"))

    def start(self, name: str, *args: str) -> None:
        log = open(self.logs / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen([self.exe, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = self.logs / f"{name}.log"
                tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-3:]
                raise DemoError(f"the {name} process exited with {proc.returncode}; its log is {log}, ending:\n    "
                                + "\n    ".join(tail))

    def kill(self, name: str) -> int:
        """SIGKILL one process, as a crash would, and forget it (``start`` it again under its name)."""
        proc = self.procs.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


async def _wait_for(what: str, check: Callable[[], bool], processes: Processes, timeout: float, say: Callable[[str], None]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check()
        if check():
            say(f"  ✓ {what}")
            return True
        await asyncio.sleep(0.5)
    say(f"  ✗ {what} (not after {timeout:.0f}s)")
    return False


_SALESFORCE_WRITES = {"create", "update", "delete", "upsert", "collections.create", "collections.update",
                      "collections.delete", "collections.upsert"}


def _api_writes(sandbox: Sandbox) -> dict[str, int]:
    """Writes made by the connector so far, per system (to see the systems go quiet)."""
    api = sandbox.org.snapshot(with_records=False)["api"]
    salesforce = sum(count for client_kind, count in api["by_client_kind"].items()
                     if client_kind.split(" ")[0] == "pardot-tims-connect"
                     and client_kind.split(" ")[-1] in _SALESFORCE_WRITES)
    tims = sum(1 for change in sandbox.tims.changes if change.modified_by == "connect")
    return {"salesforce": salesforce, "tims": tims}


async def _play(sandbox: Sandbox, processes: Processes, say: Callable[[str], None], timeout: float) -> bool:
    org, pardot, tims = sandbox.org, sandbox.pardot, sandbox.tims
    ok = True
    say("flow 1: website lead capture → TIMS customer onboarding")
    for person in PEOPLE:
        prospect, _ = pardot.submit_form(person.email, {"firstName": person.first, "lastName": person.last,
                                                         "company": person.company})
        pardot.update_prospect(prospect["id"], score=person.score, grade=person.grade)
        lead_id = org.create("Lead", {"FirstName": person.first, "LastName": person.last, "Email": person.email,
                                      "Company": person.company, "pi__score__c": float(person.score),
                                      "pi__grade__c": person.grade})
        pardot.link_crm(prospect["id"], lead_id=lead_id)
        converted = org.convert_lead(lead_id)
        pardot.link_crm(prospect["id"], contact_id=converted.contact_id, account_id=converted.account_id)
        person.ids = {"prospect": prospect["id"], "lead": lead_id, "contact": converted.contact_id,
                      "account": converted.account_id}
        say(f"  {person.first} {person.last}: form → prospect {prospect['id']} (score {person.score}, grade "
            f"{person.grade}) → Lead {lead_id} → converted: Contact {converted.contact_id}, Account {converted.account_id}")

    def tims_customer(person: Person) -> dict[str, Any] | None:
        try:
            return tims.customer_by_external_id(person.ids["contact"])
        except Exception:
            return None

    for person in PEOPLE:
        if person.qualified:
            ok &= await _wait_for(f"{person.first}: TIMS customer created with ExternalID {person.ids['contact']}",
                                  lambda p=person: tims_customer(p) is not None, processes, timeout, say)
            customer = tims_customer(person)
            if customer is None:
                continue
            person.ids["tims"] = customer["customer_id"]
            ok &= await _wait_for(
                f"{person.first}: TIMS CustomerID {customer['customer_id']} on Contact and Account",
                lambda p=person: (org.get("Contact", p.ids["contact"]) or {}).get("TIMS_Customer_ID__c") == p.ids["tims"]
                and (org.get("Account", p.ids["account"]) or {}).get("TIMS_Customer_ID__c") == p.ids["tims"],
                processes, timeout, say)
        else:
            say(f"  · {person.first}: grade {person.grade}, score {person.score}: not onboarded (by design)")

    say("flow 2: customer master sync both ways")
    first = next(p for p in PEOPLE if p.qualified and "tims" in p.ids) if any("tims" in p.ids for p in PEOPLE) else None
    if first is None:
        return False
    org.update("Contact", first.ids["contact"], {"Phone": "(415) 555-0134", "MailingCity": "Sheffield"})
    say(f"  Salesforce user edits {first.first}'s phone and mailing city")
    ok &= await _wait_for(f"TIMS {first.ids['tims']} has phone +14155550134 and city Sheffield",
                          lambda: (tims.customer(first.ids["tims"]).get("phone") == "+14155550134"
                                   and (tims.customer(first.ids["tims"]).get("billing_address") or {}).get("city") == "Sheffield"),
                          processes, timeout, say)
    tims.update_customer(first.ids["tims"], payment_terms="NET60", credit_limit=25000)
    say(f"  TIMS user sets {first.first}'s payment terms NET60 and credit limit 25,000")
    ok &= await _wait_for("Salesforce Contact and Account show NET60 and 25,000",
                          lambda: (org.get("Contact", first.ids["contact"]) or {}).get("TIMS_Payment_Terms__c") == "NET60"
                          and (org.get("Account", first.ids["account"]) or {}).get("TIMS_Credit_Limit__c") == 25000,
                          processes, timeout, say)
    return ok


async def _play_engagement(sandbox: Sandbox, person: Person, processes: Processes, say: Callable[[str], None],
                           timeout: float) -> bool:
    org, pardot, tims = sandbox.org, sandbox.pardot, sandbox.tims
    say("flow 3: engagement: activities become Tasks with TIMS context; a TIMS segment becomes a list and a Campaign")
    customer = person.ids["tims"]
    item = tims.create("items", {"sku": "AR-125", "name": "Argon 125 cf", "unit_price": 61.5})["item_id"]
    order = tims.create("sales_orders", {"customer_id": customer, "status": "open",
                                         "lines": [{"item_id": item, "quantity": 2, "unit_price": 61.5}]})
    invoice = tims.create("invoices", {"customer_id": customer, "invoice_date": time.strftime("%Y-%m-%d"),
                                       "total_amount": 240.0})
    segment = tims.create("segments", {"name": "Monthly welding gas buyers"})["segment_id"]
    tims.update_customer(customer, segment_ids=[segment])
    say(f"  TIMS: order {order['sales_order_id']} open, invoice {invoice['invoice_id']} of 240.00; "
        f"{person.first} joins segment {segment} (Monthly welding gas buyers)")

    def published() -> tuple[str | None, int | None]:
        campaigns = org.find("Campaign", "TIMS_Segment_ID__c", segment)
        lists = [r for r in pardot.snapshot()["records"]["lists"] if r["name"] == f"TIMS segment {segment}"]
        return (campaigns[0]["Id"] if campaigns else None), (lists[0]["id"] if lists else None)

    def in_segment() -> bool:
        campaign, list_id = published()
        return campaign is not None and list_id is not None and any(
            m["CampaignId"] == campaign and m["ContactId"] == person.ids["contact"] for m in org.records("CampaignMember")
        ) and any(m["prospectId"] == person.ids["prospect"] for m in pardot.memberships(list_id=list_id))

    ok = await _wait_for(f"segment {segment}: a Campaign and a Pardot list, with {person.first} in both",
                         in_segment, processes, timeout, say)
    _, form = pardot.submit_form(person.email, {"firstName": person.first}, handler="cylinder-refill")
    click = pardot.add_visitor_activity(person.ids["prospect"], 1, "Click", "https://example.com/refill-offer",
                                        emailId=7001)
    say(f"  {person.first} submits the cylinder-refill form and clicks the refill offer in an email")

    def task(activity: dict[str, Any]) -> dict[str, Any]:
        found = org.find("Task", "Pardot_Activity_Key__c", f"pardot:{activity['id']}")
        return found[0] if found else {}

    for what, activity in (("form submission", form), ("email click", click)):
        ok &= await _wait_for(
            f"{what} → Task on {person.first}'s Contact with TIMS context (1 open order, balance 240.00)",
            lambda a=activity: task(a).get("WhoId") == person.ids["contact"]
            and task(a).get("TIMS_Open_Orders__c") == 1 and task(a).get("TIMS_Open_Balance__c") == 240.0,
            processes, timeout, say)
    shown = task(click)
    if shown:
        say(f"  Task {shown['Id']}: {shown['Subject']}")
        for line in (shown.get("Description") or "").splitlines():
            say(f"    | {line}")
    return ok


async def _play_order_to_cash(sandbox: Sandbox, person: Person, processes: Processes, say: Callable[[str], None],
                              timeout: float) -> bool:
    org, pardot, tims = sandbox.org, sandbox.pardot, sandbox.tims
    say("flow 4: order to cash: products, a won Opportunity → TIMS order → shipped, invoiced, part paid")
    customer = person.ids["tims"]
    items = {sku: tims.create("items", {"sku": sku, "name": name, "unit_price": price, "category": "Gas", "uom": "CYL"})["item_id"]
             for sku, name, price in (("AR-40", "Argon 40 cf", 42.5), ("CO2-20", "CO2 20 lb", 27.25))}
    say(f"  TIMS items {', '.join(f'{sku} ({item})' for sku, item in items.items())}")

    def entry(item: str) -> dict[str, Any]:
        found = org.find("PricebookEntry", "TIMS_Item_Number__c", item)
        return found[0] if found else {}

    ok = await _wait_for("each item is a Product2 with a standard price", lambda: all(entry(i) for i in items.values()),
                         processes, timeout, say)
    if not ok:
        return False
    opportunity = org.create("Opportunity", {"Name": f"{person.company} gas order", "AccountId": person.ids["account"],
                                             "StageName": "Negotiation", "CloseDate": time.strftime("%Y-%m-%d")})
    for item, quantity in ((items["AR-40"], 4), (items["CO2-20"], 2)):
        org.create("OpportunityLineItem", {"OpportunityId": opportunity, "PricebookEntryId": entry(item)["Id"],
                                           "Quantity": quantity})
    org.update("Opportunity", opportunity, {"StageName": "Closed Won"})
    say(f"  Opportunity {opportunity}: 4 × AR-40 and 2 × CO2-20, Closed Won "
        f"(Amount {org.get('Opportunity', opportunity)['Amount']:.2f})")

    def order() -> dict[str, Any]:
        found = tims.find("sales_orders", external_id=opportunity)
        return found[0] if found else {}

    ok &= await _wait_for("one TIMS sales order for the Opportunity, to the cent",
                          lambda: order().get("total_amount") == 224.5, processes, timeout, say)
    if not ok:
        return False
    number = order()["sales_order_id"]
    tims.update("sales_orders", number, {"status": "picked"})
    tims.update("sales_orders", number, {"status": "shipped", "ship_date": time.strftime("%Y-%m-%d"),
                                         "tracking_number": "1Z999AA10123456784"})
    tims.update("sales_orders", number, {"status": "invoiced"})
    invoice = tims.create("invoices", {"customer_id": customer, "sales_order_id": number,
                                       "invoice_date": time.strftime("%Y-%m-%d"), "total_amount": 224.5})
    tims.create("payments", {"customer_id": customer, "invoice_id": invoice["invoice_id"], "amount": 100.0,
                             "payment_date": time.strftime("%Y-%m-%d"), "method": "card"})
    say(f"  TIMS: order {number} picked, shipped (tracking 1Z999AA10123456784), invoiced as "
        f"{invoice['invoice_id']} (224.50); {person.first} pays 100.00 by card")
    ok &= await _wait_for("the Opportunity shows the order invoiced, with ship date and tracking",
                          lambda: (org.get("Opportunity", opportunity)["TIMS_Order_Status__c"],
                                   org.get("Opportunity", opportunity)["Tracking__c"]) == ("invoiced", "1Z999AA10123456784"),
                          processes, timeout, say)
    balance = round(sum(i["balance_due"] for i in tims.all("invoices") if i["customer_id"] == customer), 2)
    ok &= await _wait_for(f"the open balance {balance:.2f} (what TIMS's invoices add up to) on the Account and in Pardot",
                          lambda: (org.get("Account", person.ids["account"]) or {}).get("TIMS_Open_Balance__c") == balance
                          and pardot.get("prospects", person.ids["prospect"]).get("Open_Balance__c") == balance,
                          processes, timeout, say)
    account = org.get("Account", person.ids["account"]) or {}
    say(f"  Account {person.ids['account']}: open balance {account.get('TIMS_Open_Balance__c')}, last invoice "
        f"{account.get('TIMS_Last_Invoice_Date__c')} ({account.get('TIMS_Last_Invoice_Amount__c')}), last payment "
        f"{account.get('TIMS_Last_Payment_Date__c')} ({account.get('TIMS_Last_Payment_Amount__c')}), lifetime revenue "
        f"{account.get('TIMS_Lifetime_Revenue__c')}, credit hold {account.get('TIMS_Credit_Hold__c')}")
    return ok


async def _play_shop(sandbox: Sandbox, person: Person, processes: Processes, say: Callable[[str], None],
                     timeout: float, nurture_list: int) -> bool:
    shop, tims, pardot = sandbox.shop.store, sandbox.tims, sandbox.pardot
    say("flow 5: the web shop: prices and stock from TIMS, a web order to TIMS and back, an abandoned cart recovered")
    item = tims.find("items", sku="AR-40")[0]
    product = shop.create_product(title="Argon 40 cf", variants=[{"sku": "AR-40", "price": "40.00", "available": 20}])

    def price() -> str:
        return shop.get("Product", product["id"])["variants"][0]["price"]

    ok = await _wait_for(f"the shop's AR-40 shows TIMS's price {item['unit_price']:.2f}",
                         lambda: price() == f"{item['unit_price']:.2f}", processes, timeout, say)
    tims.update("items", item["item_id"], {"unit_price": 44.0})
    say("  TIMS: AR-40 now costs 44.00")
    ok &= await _wait_for("the TIMS price change shows in the shop", lambda: price() == "44.00", processes, timeout, say)
    tims.create("stock_levels", {"item_id": item["item_id"], "location_id": "MAIN", "on_hand": 35, "allocated": 0})
    say("  TIMS: 35 × AR-40 in stock at MAIN")
    stock = (product["variants"][0]["inventoryItem"]["id"], LOCATION)
    ok &= await _wait_for("TIMS's stock at MAIN shows in the shop's main warehouse",
                          lambda: shop.inventory.get(stock) == 35, processes, timeout, say)
    buyer = shop.create_customer(email=person.email, first_name=person.first, last_name=person.last)
    lines = [{"sku": "AR-40", "title": "Argon 40 cf", "quantity": 2, "price": "44.00"}]
    web = shop.create_order(email=person.email, customer_id=buyer["id"], line_items=lines)
    # the web orders flow's TIMS external id: the order's global id, "/" made ":" (docs/adr/0035)
    external = "shop:" + web["id"].removeprefix("gid://").replace("/", ":")
    say(f"  {person.first} orders 2 × AR-40 in the shop: order {web['name']}")

    def sales_order() -> dict[str, Any]:
        found = tims.find("sales_orders", external_id=external)
        return found[0] if found else {}

    ok &= await _wait_for(f"one TIMS sales order for web order {web['name']}, on {person.first}'s TIMS customer",
                          lambda: sales_order().get("customer_id") == person.ids["tims"], processes, timeout, say)
    if not ok:
        return False
    tims.update("sales_orders", sales_order()["sales_order_id"], {"status": "shipped", "tracking_number": "1Z999AA1WEB"})
    say(f"  TIMS ships {sales_order()['sales_order_id']} (tracking 1Z999AA1WEB)")
    ok &= await _wait_for("the shop order is fulfilled with TIMS's tracking number",
                          lambda: [t["number"] for f in shop.get("Order", web["id"])["fulfillments"]
                                   for t in f["trackingInfo"]] == ["1Z999AA1WEB"], processes, timeout, say)
    cart = shop.create_checkout(email=person.email, customer_id=buyer["id"], line_items=lines[:1])
    say(f"  {person.first} leaves a cart in the shop ({cart['total']})")

    def cart_url() -> Any:
        return pardot.prospects_by_email(person.email)[0].get("Abandoned_Cart_URL__c")

    def nurtured() -> bool:
        return any(m["prospectId"] == person.ids["prospect"] for m in pardot.memberships(list_id=nurture_list))

    ok &= await _wait_for("the abandoned cart on her Pardot prospect, and she is on the nurture list",
                          lambda: cart_url() == cart["abandonedCheckoutUrl"] and nurtured(), processes, timeout, say)
    shop.create_order(email=person.email, customer_id=buyer["id"], line_items=lines[:1])
    shop.complete_checkout(cart["id"])
    say("  the nurture email brings her back: she completes the order")
    ok &= await _wait_for("the cart fields are cleared and she has left the nurture list",
                          lambda: cart_url() is None and not nurtured(), processes, timeout, say)
    # the orders flow leaves web orders alone: the shop, not an Opportunity, is their record
    made = sandbox.org.find("Opportunity", "TIMS_Sales_Order_ID__c", sales_order()["sales_order_id"])
    say(f"  {'✓' if not made else '✗'} no Opportunity was made from the web order")
    return ok and not made


def _shop_mapping(logs: Path, nurture_list: int) -> None:
    """The abandoned carts' mapping with the demo's nurture list and a short wait (3 s, not an hour)."""
    folder = logs / "mappings" / "abandoned_carts"
    folder.mkdir(parents=True, exist_ok=True)
    text = (Path(__file__).resolve().parents[1] / "topologies" / "abandoned_carts" / "mappings"
            / "abandoned_carts.yaml").read_text()
    (folder / "abandoned_carts.yaml").write_text(text.replace("abandon_after_seconds: 3600", "abandon_after_seconds: 3")
                                                 .replace("nurture_list_id: 0", f"nurture_list_id: {nurture_list}"))


def _products_mapping(logs: Path, pricebook: str | None) -> Path:
    """A mappings folder whose products file names the sandbox org's standard price book, as a
    site sets it up (README, Products and orders). The shipped file is read as a file beside this
    package (the sandbox imports no flow)."""
    folder = logs / "mappings" / "products"
    folder.mkdir(parents=True, exist_ok=True)
    text = (Path(__file__).resolve().parents[1] / "topologies" / "products" / "mappings" / "products.yaml").read_text()
    (folder / "products.yaml").write_text(text.replace('standard_pricebook_id: ""', f'standard_pricebook_id: "{pricebook}"'))
    return logs / "mappings"


def _report(sandbox: Sandbox, say: Callable[[str], None]) -> None:
    say("what each system holds now")
    for person in PEOPLE:
        contact = sandbox.org.get("Contact", person.ids.get("contact", "")) or {}
        on_contact = contact.get("TIMS_Customer_ID__c") or "not set"
        say(f"  {person.first:<10} Pardot {person.ids.get('prospect', '-')}  Contact {person.ids.get('contact', '-')} "
            f"(TIMS customer id on it: {on_contact})  TIMS {person.ids.get('tims', '-')}")
    api = sandbox.org.snapshot(with_records=False)["api"]
    by_client = ", ".join(f"{client} {count}" for client, count in sorted(api["by_client"].items())) or "none"
    say(f"  Salesforce API calls by client: {by_client} (daily usage {api['used']} of {api['limit']})")
    writes = _api_writes(sandbox)
    say(f"  writes by the connector: Salesforce {writes['salesforce']}, TIMS {writes['tims']}")
    say(f"  TIMS records: {len(sandbox.tims.all('customers'))} customers")


async def _worker_ready(port: int, processes: Processes, say: Callable[[str], None], timeout: float = 240.0) -> None:
    """Wait for the worker's ``/readyz`` (on a busy machine a worker with every flow takes a
    minute to create its topics and recover its tables), then a few seconds for the flows'
    ``ingest`` stages to join their groups; each story's own time starts after that."""
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=5.0) as client:
        while time.monotonic() - began < timeout:
            processes.check()
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1)
        else:
            say(f"  the worker is not ready after {timeout:.0f}s; playing anyway")
    say(f"worker ready after {time.monotonic() - began:.0f}s")
    await asyncio.sleep(8)


def _web_port(usual: int = 6066) -> int:
    """The worker's web port: the usual one when free, else one the OS picks."""
    if port_is_free("127.0.0.1", usual):
        return usual
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def run_demo(once: bool, say: Callable[[str], None] = print, timeout: float = 90.0,
                   console_login: str | None = None) -> int:
    """Play the flows; with ``console_login`` (the app set CONNECT_CONSOLE_USERS for the run) the
    ops console runs too, and its URL and that login line are printed."""
    # the run's name (app id, topic prefix, log folder); CONNECT_DEMO_RUN lets a test name it, so
    # that it can delete the run's topics afterwards
    run = os.environ.get("CONNECT_DEMO_RUN") or time.strftime("%Y%m%d%H%M%S")
    logs = Path("var/demo") / run
    logs.mkdir(parents=True, exist_ok=True)
    # the usual ports when free (URLs to bookmark), else any free one; --once: any free one
    ports = {name: port if not once and port_is_free("127.0.0.1", port) else 0 for name, port in DEFAULT_PORTS.items()}
    sandbox = await start_sandbox(ports=ports, keepalive_seconds=5)
    env = {**os.environ, **sandbox.worker_env(), "CONNECT_APP_ID": f"demo-{run}",
           "CONNECT_TOPIC_PREFIX": f"demo-{run}.", "CONNECT_DATA_DIR": str(logs / "data"),
           "CONNECT_WEB_PORT": os.environ.get("CONNECT_WEB_PORT") or str(_web_port()),
           "CONNECT_SINK_OBJECTS": "salesforce.Contact,salesforce.Account,tims.customer,salesforce.Task,"
                                   "salesforce.Campaign,salesforce.CampaignMember,pardot.list,pardot.list_membership,"
                                   "salesforce.Product2,salesforce.PricebookEntry,salesforce.Opportunity,tims.item,"
                                   "tims.sales_order,pardot.prospect,shop.fulfillment,shop.variant,shop.inventory",
           "CONNECT_FLOWS": "customer_sync,products,orders,receivables,activities,lists,web_orders,abandoned_carts,"
                            "shop_catalog",
           "CONNECT_MAPPINGS_DIR": str(_products_mapping(logs, sandbox.org.standard_pricebook_id)),
           "CONNECT_SALESFORCE_ENTITIES": "Lead,Contact,Account,Campaign,CampaignMember,Product2,Opportunity,"
                                          "OpportunityLineItem",
           "CONNECT_PARDOT_ENTITIES": "prospect,visitor_activity,list,list_membership",
           "CONNECT_SINK_LINGER": "0.2", "CONNECT_TIMS_POLL_INTERVAL": "1", "CONNECT_PARDOT_POLL_INTERVAL": "2",
           "CONNECT_SHOP_RECONCILE_INTERVAL": "2"}
    nurture_list = sandbox.pardot.create_list("Cart recovery")["id"]
    _shop_mapping(logs, nurture_list)
    if console_login:  # before the worker starts: its /console page links to it
        env["CONNECT_CONSOLE_PORT"] = os.environ.get("CONNECT_CONSOLE_PORT") or str(_web_port(6070))
    processes = Processes(env, logs)
    say("sandbox:")
    for line in sandbox.lines():
        say(f"  {line}")
    try:
        processes.start("worker", "worker", "--loglevel", "info")
        for system in registry.names():
            processes.start(f"source-{system}", "source", system)
        say(f"worker and sources started (logs in {logs}); worker web: http://127.0.0.1:{env['CONNECT_WEB_PORT']}")
        if console_login:
            processes.start("console", "console")
            say(f"ops console: http://127.0.0.1:{env['CONNECT_CONSOLE_PORT']}/ ({console_login})")
        await _worker_ready(int(env["CONNECT_WEB_PORT"]), processes, say)
        ok = await _play(sandbox, processes, say, timeout)
        customer = next((person for person in PEOPLE if "tims" in person.ids), None)
        ok = ok and customer is not None and await _play_engagement(sandbox, customer, processes, say, timeout)
        ok = ok and customer is not None and await _play_order_to_cash(sandbox, customer, processes, say, timeout)
        ok = ok and customer is not None and await _play_shop(sandbox, customer, processes, say, timeout, nurture_list)
        # quiet: a 5 s window without a write, within a minute (the last writes may still trail)
        deadline, quiet = time.monotonic() + 60, False
        while not quiet and time.monotonic() < deadline:
            before = _api_writes(sandbox)
            await asyncio.sleep(5)
            quiet = _api_writes(sandbox) == before
        say(f"  {'✓' if quiet else '✗'} the systems are quiet once they agree (no writes in the last 5 s)")
        ok &= quiet
        _report(sandbox, say)
        say("demo: every expected record arrived" if ok else "demo: some expected records did not arrive")
        if not once:
            say("running until Ctrl-C; the URLs above are live")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        return 0 if ok else 1
    finally:
        processes.stop()
        await sandbox.stop()
