"""SalesforceWriter against the Salesforce sandbox, served on loopback by the test's own loop."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from connectors.errors import AuthExpiredError
from connectors.retry import RetryPolicy
from connectors.salesforce.auth import TokenProvider
from connectors.salesforce.client import SalesforceRest
from connectors.salesforce.config import AuthFlow, SalesforceConfig
from connectors.salesforce.writer import SalesforceWriter
from sandbox.faults import FaultConfig, Faults
from sandbox.salesforce.oauth import OAuthConfig
from sandbox.salesforce.org import FieldDef, Org
from sandbox.salesforce.rest import start_rest_server

from .fakes import command

EXT = "TIMS_Customer_ID__c"


class Sandbox:
    def __init__(self, org: Org, faults: Faults, url: str) -> None:
        self.org, self.faults, self.url = org, faults, url

    def writer(self, client_id: str = "tims-connect") -> SalesforceWriter:
        config = SalesforceConfig(login_url=self.url, auth_flow=AuthFlow.client_credentials,
                                  client_id=client_id, client_secret="s3cret")
        fast = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01)
        return SalesforceWriter(SalesforceRest(config, TokenProvider(config, policy=fast), policy=fast),
                                owns_client=True)

    def contacts(self) -> dict[str, dict]:
        return {r[EXT]: r for r in self.org.records("Contact") if r.get(EXT)}


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    org, faults = Org(), Faults()
    oauth = OAuthConfig(required_clients={"tims-connect": "s3cret"})
    runner, url = await start_rest_server("127.0.0.1", 0, org, faults, oauth=oauth)
    try:
        yield Sandbox(org, faults, url)
    finally:
        await runner.cleanup()


async def test_upserts_create_then_update_and_read_each_result(sandbox: Sandbox) -> None:
    writer = sandbox.writer()
    created = await writer.write([command("C-1", 1, LastName="Lovelace"), command("C-2", 1, LastName="Hopper")])
    updated = await writer.write([command("C-1", 2, LastName="Byron", Title="Countess")])
    await writer.close()

    assert [(o.ok, o.created) for o in created] == [(True, True), (True, True)]
    assert updated[0].ok and updated[0].created is False and updated[0].target_id == created[0].target_id
    contacts = sandbox.contacts()
    assert (contacts["C-1"]["LastName"], contacts["C-1"]["Title"]) == ("Byron", "Countess")
    assert sandbox.org.api.by_kind["collections.upsert"] == 2
    assert sandbox.org.api.by_client["pardot-tims-connect"] == 2  # Sforce-Call-Options on every call


async def test_refused_records_are_not_retryable_and_the_rest_land(sandbox: Sandbox) -> None:
    sandbox.org.add_validation_rule("Contact", "LastName", "POISON", "poison is not a name")
    writer = sandbox.writer()
    outcomes = await writer.write([
        command("C-1", 1, LastName="Lovelace"), command("C-2", 1, LastName="POISON"),
        command("C-3", 1, Title="no last name"), command("C-4", 1, LastName="x", NoSuchField__c=1),
        command("C-5", 1, LastName="Hopper"),
    ])
    await writer.close()

    assert [o.ok for o in outcomes] == [True, False, False, False, True]
    assert [o.error_code for o in outcomes[1:4]] == [
        "FIELD_CUSTOM_VALIDATION_EXCEPTION", "REQUIRED_FIELD_MISSING", "INVALID_FIELD"]
    assert not any(o.retryable for o in outcomes)
    assert "poison is not a name" in (outcomes[1].error or "")
    assert set(sandbox.contacts()) == {"C-1", "C-5"}


async def test_several_records_matching_one_external_id_are_not_retryable(sandbox: Sandbox) -> None:
    sandbox.org.add_field("Contact", FieldDef("Legacy_Key__c", "string", external_id=True))
    for name in ("one", "two"):
        sandbox.org.create("Contact", {"LastName": name, "Legacy_Key__c": "L-1"})
    writer = sandbox.writer()
    [outcome] = await writer.write([command("L-1", 1, LastName="x").model_copy(
        update={"external_id_field": "Legacy_Key__c"})])
    await writer.close()
    assert not outcome.ok and not outcome.retryable and outcome.error_code == "DUPLICATE_EXTERNAL_ID"


async def test_lock_contention_is_retryable_per_record(sandbox: Sandbox) -> None:
    sandbox.faults.configure(FaultConfig(error_rate=1.0, error_kinds=["lock"]))
    writer = sandbox.writer()
    outcomes = await writer.write([command("C-1", 1, LastName="a"), command("C-2", 1, LastName="b")])
    await writer.close()
    assert [(o.ok, o.retryable, o.error_code) for o in outcomes] == [(False, True, "UNABLE_TO_LOCK_ROW")] * 2


async def test_a_call_still_failing_after_the_clients_retries_is_retryable(sandbox: Sandbox) -> None:
    sandbox.faults.configure(FaultConfig(error_rate=1.0, error_kinds=["503"], paths=["/composite/"]))
    writer = sandbox.writer()
    outcomes = await writer.write([command("C-1", 1, LastName="a")])
    assert writer.rest.stats.retries == 2 and writer.rest.calls == 3
    await writer.close()
    assert (outcomes[0].ok, outcomes[0].retryable, outcomes[0].error_code) == (False, True, "SERVER_UNAVAILABLE")


async def test_an_expired_token_is_refreshed_once_and_the_write_lands(sandbox: Sandbox) -> None:
    writer = sandbox.writer()
    await writer.write([command("C-1", 1, LastName="a")])
    sandbox.faults.expire_tokens()
    [outcome] = await writer.write([command("C-1", 2, LastName="b")])
    await writer.close()
    assert outcome.ok and writer.rest.stats.auth_refreshes == 1 and writer.rest.tokens.refreshes == 1
    assert sandbox.contacts()["C-1"]["LastName"] == "b"


async def test_a_wrong_external_id_field_refuses_every_command_of_the_call(sandbox: Sandbox) -> None:
    writer = sandbox.writer()
    outcomes = await writer.write([command("x", 1, LastName="a").model_copy(update={"external_id_field": "LastName"}),
                                   command("C-2", 1, LastName="b")])
    await writer.close()
    assert (outcomes[0].ok, outcomes[0].retryable, outcomes[0].error_code) == (False, False, "INVALID_FIELD")
    assert outcomes[1].ok, "a command in another group is its own call"


async def test_refused_credentials_raise_instead_of_failing_the_commands(sandbox: Sandbox) -> None:
    writer = sandbox.writer(client_id="not-our-app")
    with pytest.raises(AuthExpiredError):
        await writer.write([command("C-1", 1, LastName="a")])
    await writer.close()


async def test_deletes_by_external_id_are_idempotent(sandbox: Sandbox) -> None:
    writer = sandbox.writer()
    await writer.write([command("C-1", 1, LastName="a"), command("C-2", 1, LastName="b")])
    outcomes = await writer.write([command("C-1", 2, operation="delete"), command("C-9", 2, operation="delete")])
    again = await writer.write([command("C-1", 2, operation="delete")])
    await writer.close()
    assert [o.ok for o in outcomes] == [True, True] and outcomes[0].target_id and outcomes[1].target_id is None
    assert again[0].ok
    assert set(sandbox.contacts()) == {"C-2"}
