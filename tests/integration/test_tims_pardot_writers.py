"""TimsWriter and PardotWriter against the TIMS and Pardot sandbox servers."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from connectors.envelope import SinkCommand
from connectors.pardot.config import PardotConfig
from connectors.pardot.writer import PardotWriter
from connectors.salesforce.auth import TokenProvider
from connectors.salesforce.config import AuthFlow, SalesforceConfig
from connectors.tims.config import TimsConfig
from connectors.tims.writer import TimsWriter
from sandbox.faults import FaultConfig, Faults
from sandbox.pardot import PardotStore
from sandbox.pardot import start_server as start_pardot
from sandbox.salesforce.oauth import OAuthConfig, token_checker
from sandbox.salesforce.org import Org
from sandbox.salesforce.rest import start_rest_server
from sandbox.tims import DEFAULT_API_KEYS, TimsStore
from sandbox.tims import start_server as start_tims

pytestmark = pytest.mark.integration

TIMS_KEY = next(k for k, v in DEFAULT_API_KEYS.items() if v == "connect")
BU = "0Uv5e0000000001AAA"


def customer(sf_id: str, version: int = 1, **fields: Any) -> SinkCommand:
    return SinkCommand(system="tims", object="customer", external_id_field="external_id", external_id=sf_id,
                       fields={"name": f"Customer {sf_id}", **fields}, version=version, record_key=f"ck-{sf_id}")


@pytest.fixture
async def tims() -> AsyncIterator[tuple[TimsStore, TimsWriter]]:
    store = TimsStore()
    runner, url = await start_tims("127.0.0.1", 0, store, Faults())
    writer = TimsWriter(TimsConfig(base_url=url, api_key=TIMS_KEY, client_name="connect"))
    await writer.start()
    yield store, writer
    await writer.close()
    await runner.cleanup()


async def test_tims_batch_upsert_lands_the_batch_mates_of_a_poison_record(tims: tuple[TimsStore, TimsWriter]) -> None:
    store, writer = tims
    commands = [customer(f"001xx00000000{i:02d}AAA", email=f"c{i}@example.com") for i in range(6)]
    commands[2] = customer("001xx0000000002AAA", email="not an email")
    outcomes = await writer.write(commands)

    poison = outcomes[2]
    assert (poison.ok, poison.retryable, poison.error_code) == (False, False, "validation_error")
    assert "email" in (poison.error or "")
    landed = [o for i, o in enumerate(outcomes) if i != 2]
    assert all(o.ok and o.created and o.target_id for o in landed)
    for outcome in landed:
        record = store.customer_by_external_id(outcome.command.external_id)
        assert record["customer_id"] == outcome.target_id
        assert record["modified_by"] == "connect", "TIMS knows the write was ours"
    assert len(store.all("customers")) == 5


async def test_tims_re_upsert_is_idempotent_and_keeps_the_tims_id(tims: tuple[TimsStore, TimsWriter]) -> None:
    store, writer = tims
    [first] = await writer.write([customer("001xx0000000777AAA", phone="+1 555 0100")])
    changes_after_first = len(store.changes)
    [same] = await writer.write([customer("001xx0000000777AAA", phone="+1 555 0100")])
    [changed] = await writer.write([customer("001xx0000000777AAA", version=2, phone="+1 555 0199")])
    assert first.target_id == same.target_id == changed.target_id
    assert (first.created, same.created, changed.created) == (True, False, False)
    assert len(store.changes) == changes_after_first + 1, "a write that changes nothing is no change"
    assert store.customer(first.target_id)["phone"] == "+1 555 0199"

    linked = SinkCommand(system="tims", object="customer", external_id_field="customer_id",
                         external_id=first.target_id, fields={"credit_limit": 5000}, version=3, record_key="ck")
    [patched] = await writer.write([linked])
    assert patched.ok and store.customer(first.target_id)["credit_limit"] == 5000


def prospect_by_email(email: str, **fields: Any) -> SinkCommand:
    return SinkCommand(system="pardot", object="prospect", external_id_field="email", external_id=email,
                       fields=fields, version=1, record_key=f"pk-{email}")


def membership(list_id: int, prospect_id: int, operation: str = "upsert") -> SinkCommand:
    return SinkCommand(system="pardot", object="list_membership", operation=operation,
                       external_id_field="listId:prospectId", external_id=f"{list_id}:{prospect_id}",
                       version=1, record_key=f"pk-{prospect_id}")


@pytest.fixture
async def pardot() -> AsyncIterator[tuple[PardotStore, Faults, PardotWriter]]:
    org, sf_faults, oauth = Org(), Faults(), OAuthConfig()
    sf_runner, sf_url = await start_rest_server("127.0.0.1", 0, org, sf_faults, oauth=oauth)
    store, faults = PardotStore(), Faults()
    runner, url = await start_pardot("127.0.0.1", 0, store, faults, business_unit_ids={BU},
                                     token_validator=token_checker(org, sf_faults, oauth))
    sf = SalesforceConfig(login_url=sf_url, auth_flow=AuthFlow.client_credentials, client_id="connect",
                          client_secret="s3cret")
    tokens = TokenProvider(sf)
    writer = PardotWriter(PardotConfig(base_url=url, business_unit_id=BU), tokens)
    yield store, faults, writer
    await writer.close()
    await tokens.aclose()
    await runner.cleanup()
    await sf_runner.cleanup()


async def test_pardot_upsert_latest_by_email_creates_then_updates(
        pardot: tuple[PardotStore, Faults, PardotWriter]) -> None:
    store, faults, writer = pardot
    existing = store.create_prospect("known@example.com", firstName="Old")
    faults.configure(FaultConfig(latency_ms=40))  # slow Pardot: concurrent calls pile up
    commands = [prospect_by_email("known@example.com", firstName="New", TIMS_Customer_ID__c="C000001")]
    commands += [prospect_by_email(f"lead{i}@example.com", firstName=f"Lead {i}") for i in range(12)]
    commands.append(prospect_by_email("not an email", firstName="X"))
    outcomes = await writer.write(commands)

    updated, *created, invalid = outcomes
    assert (updated.ok, updated.created, updated.target_id) == (True, False, str(existing["id"]))
    assert store.get("prospects", existing["id"])["firstName"] == "New"
    assert store.get("prospects", existing["id"])["TIMS_Customer_ID__c"] == "C000001"
    assert all(o.ok and o.created for o in created) and len({o.target_id for o in created}) == 12
    assert (invalid.ok, invalid.retryable, invalid.error_code) == (False, False, "4")
    assert writer.client.stats.retries == 0, "never more than 5 calls in flight: no concurrency refusals"


async def test_pardot_list_membership_add_and_remove(pardot: tuple[PardotStore, Faults, PardotWriter]) -> None:
    store, _, writer = pardot
    nurture = store.create_list("Nurture")
    person = store.create_prospect("member@example.com")
    [added] = await writer.write([membership(nurture["id"], person["id"])])
    [again] = await writer.write([membership(nurture["id"], person["id"])])
    assert added.ok and again.ok and added.target_id == again.target_id
    assert [m["prospectId"] for m in store.memberships(list_id=nurture["id"])] == [person["id"]]
    [removed] = await writer.write([membership(nurture["id"], person["id"], "delete")])
    [missing_list] = await writer.write([membership(9999, person["id"])])
    assert removed.ok and store.memberships(list_id=nurture["id"]) == []
    assert (missing_list.ok, missing_list.error_code) == (False, "55")


async def test_pardot_list_upsert_by_name_creates_once_then_updates(
        pardot: tuple[PardotStore, Faults, PardotWriter]) -> None:
    store, _, writer = pardot
    store.create_list("Someone else's list")

    def publish(title: str, version: int) -> SinkCommand:
        return SinkCommand(system="pardot", object="list", external_id_field="name", external_id="TIMS segment SEG000001",
                           fields={"title": title, "description": "from TIMS"}, version=version, record_key="segment:SEG000001")

    [created] = await writer.write([publish("Welding gas buyers", 1)])
    [updated] = await writer.write([publish("Monthly welding gas buyers", 2)])
    assert (created.ok, created.created, updated.ok, updated.created) == (True, True, True, False)
    assert created.target_id == updated.target_id
    lists = [r for r in store.snapshot()["records"]["lists"] if r["name"] == "TIMS segment SEG000001"]
    assert len(lists) == 1 and lists[0]["title"] == "Monthly welding gas buyers"


async def test_a_custom_redirect_is_upserted_by_its_name(pardot: tuple[PardotStore, Faults, PardotWriter]) -> None:
    store, _, writer = pardot
    store.create("custom-redirects", {"name": "Someone else's link", "campaignId": 1,
                                      "destinationUrl": "https://example.com/"})

    def publish(url: str, folder: int, version: int) -> SinkCommand:
        return SinkCommand(system="pardot", object="custom_redirect", external_id_field="name",
                           external_id="Shop product AR-125", version=version, record_key="sku:AR-125",
                           fields={"destinationUrl": url, "campaignId": 7, "folderId": folder})

    [created] = await writer.write([publish("https://shop.example.com/products/argon", 11, 1)])
    [moved] = await writer.write([publish("https://shop.example.com/products/argon", 12, 2)])
    [refused] = await writer.write([publish("not a url", 12, 3)])
    assert (created.ok, created.created, moved.ok, moved.created) == (True, True, True, False)
    assert created.target_id == moved.target_id and not refused.ok
    [redirect] = [r for r in store.snapshot()["records"]["custom-redirects"] if r["name"] == "Shop product AR-125"]
    assert (redirect["folderId"], redirect["destinationUrl"], redirect["campaignId"]) == (
        12, "https://shop.example.com/products/argon", 7)
    assert redirect["url"].startswith("https://go.connect-sandbox.test/l/")
