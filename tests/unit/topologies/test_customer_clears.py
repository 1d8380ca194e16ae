"""Clears in the golden record, without Kafka: a field emptied where it may be changed is emptied
in the other systems, never where it was never held, never by a full-state source that simply
lacks it; echoes of our clears change nothing; ownership decides clears like any other edit."""

from __future__ import annotations

import itertools
from typing import Any

from connectors.envelope import SinkCommand, SourceEvent
from topologies.customer_sync.golden import Policy, apply_event, apply_tims_link, new_record
from topologies.customer_sync.mapping import load_mappings

MAPPINGS = load_mappings()
POLICY = Policy()
_ids = itertools.count(1)
TIMS_ID = "C000001"


def update(source: str, entity: str, record_id: str, ts: int, **fields: Any) -> SourceEvent:
    """A Salesforce-style UPDATE: the changed fields only; those set to None are nulled."""
    return SourceEvent(event_id=f"c{next(_ids)}", source=source, entity=entity, record_id=record_id,
                       change_type="UPDATE", fields=fields, changed_fields=list(fields),
                       nulled_fields=[k for k, v in fields.items() if v is None], commit_timestamp=ts)


def full(source: str, entity: str, record_id: str, ts: int, change: str = "UPDATE", **fields: Any) -> SourceEvent:
    """A full-state event (TIMS, Pardot): every field the record has, empty ones as None."""
    return SourceEvent(event_id=f"c{next(_ids)}", source=source, entity=entity, record_id=record_id,
                       change_type=change, fields=fields, full_state=True, commit_timestamp=ts)


def tims_state(**overrides: Any) -> dict[str, Any]:
    """A TIMS customer as the feed shows it, after our create and id write-back."""
    state: dict[str, Any] = {"customer_id": TIMS_ID, "external_id": "003A", "name": "Ada Lovelace",
                             "email": "ada@example.com", "phone": None, "billing_address": None,
                             "payment_terms": "NET30", "credit_limit": None, "modified_by": "connect"}
    return state | overrides


def linked_record() -> dict[str, Any]:
    """Ada: onboarded, her TIMS id known and written back, TIMS's first state seen."""
    record = new_record("k1")
    apply_event(record, full("pardot", "prospect", "77", 1_000, email="ada@example.com", firstName="Ada",
                             lastName="Lovelace", phone=None, score=150, grade="A"), MAPPINGS, POLICY)
    apply_event(record, full("salesforce", "Contact", "003A", 2_000, change="CREATE", Email="ada@example.com",
                             FirstName="Ada", LastName="Lovelace", Phone=None, MailingCity=None, AccountId="001A"),
                MAPPINGS, POLICY)
    apply_tims_link(record, TIMS_ID, MAPPINGS)
    apply_event(record, full("tims", "customer", TIMS_ID, 3_000, change="CREATE", **tims_state()), MAPPINGS, POLICY)
    return record


def by_target(commands: list[SinkCommand]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c.system, c.object): c.fields for c in commands}


def with_phone() -> dict[str, Any]:
    """Ada's phone entered on the Contact and landed in TIMS (its echo seen)."""
    record = linked_record()
    outcome = apply_event(record, update("salesforce", "Contact", "003A", 4_000, Phone="(555) 123-4567"),
                          MAPPINGS, POLICY)
    assert by_target(outcome.commands) == {("tims", "customer"): {"phone": "+15551234567"}}
    apply_event(record, full("tims", "customer", TIMS_ID, 4_100, **tims_state(phone="+15551234567")), MAPPINGS, POLICY)
    return record


def test_a_phone_cleared_on_the_contact_is_cleared_in_tims() -> None:
    record = with_phone()
    version = record["version"]
    outcome = apply_event(record, update("salesforce", "Contact", "003A", 5_000, Phone=None), MAPPINGS, POLICY)
    [clear] = outcome.commands
    assert (clear.system, clear.external_id_field, clear.external_id) == ("tims", "customer_id", TIMS_ID)
    assert clear.fields == {"phone": None}
    assert clear.version == record["version"] > version
    assert record["fields"]["phone"] == {"v": None, "src": "salesforce", "ts": 5_000}
    assert outcome.conflicts == []


def test_a_nulled_field_counts_even_when_the_event_leaves_its_value_out() -> None:
    record = with_phone()
    nulled = SourceEvent(event_id="nulled-only", source="salesforce", entity="Contact", record_id="003A",
                         change_type="UPDATE", fields={}, changed_fields=["Phone"], nulled_fields=["Phone"],
                         commit_timestamp=5_000)
    [clear] = apply_event(record, nulled, MAPPINGS, POLICY).commands
    assert (clear.system, clear.fields) == ("tims", {"phone": None})


def test_the_echo_of_our_clear_changes_nothing_and_the_systems_go_quiet() -> None:
    record = with_phone()
    apply_event(record, update("salesforce", "Contact", "003A", 5_000, Phone=None), MAPPINGS, POLICY)
    version = record["version"]
    echo = apply_event(record, full("tims", "customer", TIMS_ID, 5_200, **tims_state(phone=None)), MAPPINGS, POLICY)
    assert echo.commands == [] and echo.conflicts == [] and echo.changed == []
    assert "phone" in echo.echo_fields
    assert record["version"] == version
    assert record["fields"]["phone"]["v"] is None


def test_a_tims_owned_field_cleared_in_tims_is_cleared_on_contact_and_account_then_quiet() -> None:
    record = linked_record()
    outcome = apply_event(record, full("tims", "customer", TIMS_ID, 6_000, **tims_state(payment_terms=None,
                                                                                        modified_by="tims-ui")),
                          MAPPINGS, POLICY)
    targets = by_target(outcome.commands)
    assert targets == {("salesforce", "Contact"): {"TIMS_Payment_Terms__c": None},
                       ("salesforce", "Account"): {"TIMS_Payment_Terms__c": None}}
    version = record["version"]
    # Salesforce's change events for our two writes: the nulled field comes back as an echo
    for entity, record_id in (("Contact", "003A"), ("Account", "001A")):
        echo = apply_event(record, update("salesforce", entity, record_id, 6_500, TIMS_Payment_Terms__c=None),
                           MAPPINGS, POLICY)
        assert echo.commands == [] and echo.echo_fields == ["TIMS_Payment_Terms__c"]
    assert record["version"] == version


def test_clearing_one_part_of_an_address_sends_the_address_whole() -> None:
    record = linked_record()
    apply_event(record, update("salesforce", "Contact", "003A", 4_000, MailingStreet="1 Main St", MailingCity="York"),
                MAPPINGS, POLICY)
    outcome = apply_event(record, update("salesforce", "Contact", "003A", 5_000, MailingCity=None), MAPPINGS, POLICY)
    assert by_target(outcome.commands) == {("tims", "customer"): {"billing_address": {"street": "1 Main St",
                                                                                      "city": None}}}


def test_an_address_part_a_tims_user_removed_is_cleared_in_salesforce() -> None:
    record = linked_record()
    apply_event(record, full("tims", "customer", TIMS_ID, 4_000, **tims_state(
        billing_address={"street": "1 Main St", "city": "Leeds"}, modified_by="tims-ui")), MAPPINGS, POLICY)
    # the address is replaced whole in TIMS; the city is no longer in it
    outcome = apply_event(record, full("tims", "customer", TIMS_ID, 5_000, **tims_state(
        billing_address={"street": "1 Main St"}, modified_by="tims-ui")), MAPPINGS, POLICY)
    assert by_target(outcome.commands) == {("salesforce", "Contact"): {"MailingCity": None}}


def test_a_clear_of_a_field_the_target_never_had_writes_nothing() -> None:
    record = new_record("k1")
    apply_event(record, full("pardot", "prospect", "77", 1_000, email="ada@example.com", firstName="Ada",
                             lastName="Lovelace", score=150, grade="B"), MAPPINGS, POLICY)
    apply_event(record, full("salesforce", "Contact", "003A", 2_000, change="CREATE", Email="ada@example.com",
                             FirstName="Ada", LastName="Lovelace", Phone=None, AccountId="001A"), MAPPINGS, POLICY)
    # entered and cleared again while Ada is not good enough to be onboarded: TIMS never had it
    assert apply_event(record, update("salesforce", "Contact", "003A", 3_000, Phone="(555) 123-4567"),
                       MAPPINGS, POLICY).commands == []
    cleared = apply_event(record, update("salesforce", "Contact", "003A", 4_000, Phone=None), MAPPINGS, POLICY)
    assert cleared.commands == []
    onboard = apply_event(record, full("pardot", "prospect", "77", 5_000, email="ada@example.com", firstName="Ada",
                                       lastName="Lovelace", score=150, grade="A"), MAPPINGS, POLICY)
    [create] = onboard.commands
    assert create.system == "tims" and create.fields == {"name": "Ada Lovelace", "email": "ada@example.com"}
    # ... and TIMS is known to hold no phone: clearing again (a replayed event) writes nothing either
    apply_tims_link(record, TIMS_ID, MAPPINGS)
    again = apply_event(record, update("salesforce", "Contact", "003A", 6_000, Phone=None), MAPPINGS, POLICY)
    assert again.commands == []


def test_clearing_a_field_the_customer_never_had_changes_nothing() -> None:
    record = linked_record()
    version = record["version"]
    outcome = apply_event(record, update("salesforce", "Contact", "003A", 5_000, Phone=None, MailingCity=None),
                          MAPPINGS, POLICY)
    assert outcome.commands == [] and outcome.changed == [] and record["version"] == version
    assert "phone" not in record["fields"]


def test_an_owner_wins_back_a_clear_made_by_a_non_owner() -> None:
    record = with_phone()
    outcome = apply_event(record, full("tims", "customer", TIMS_ID, 6_000, **tims_state(phone=None,
                                                                                        modified_by="tims-ui")),
                          MAPPINGS, POLICY)
    assert record["fields"]["phone"]["v"] == "+15551234567"
    [conflict] = outcome.conflicts
    assert (conflict["field"], conflict["rule"], conflict["owner"]) == ("phone", "owner", "salesforce")
    assert conflict["winner"]["value"] == "+15551234567"
    assert (conflict["loser"]["system"], conflict["loser"]["value"]) == ("tims", None)
    [restore] = outcome.commands
    assert (restore.system, restore.fields) == ("tims", {"phone": "+15551234567"})


def test_an_owners_clear_wins_over_a_value_entered_by_a_non_owner() -> None:
    record = with_phone()
    apply_event(record, update("salesforce", "Contact", "003A", 5_000, Phone=None), MAPPINGS, POLICY)
    apply_event(record, full("tims", "customer", TIMS_ID, 5_200, **tims_state(phone=None)), MAPPINGS, POLICY)
    # a TIMS user types a phone in later: Salesforce owns the phone, and it has none
    outcome = apply_event(record, full("tims", "customer", TIMS_ID, 9_000, **tims_state(
        phone="+44 20 7946 0958", modified_by="tims-ui")), MAPPINGS, POLICY)
    assert record["fields"]["phone"]["v"] is None
    assert [c["rule"] for c in outcome.conflicts] == ["owner"]
    [restore] = outcome.commands
    assert (restore.system, restore.fields) == ("tims", {"phone": None})


def test_a_clear_loses_to_a_newer_edit_made_elsewhere() -> None:
    record = linked_record()
    apply_event(record, update("salesforce", "Contact", "003A", 4_000, MailingCity="York"), MAPPINGS, POLICY)
    apply_event(record, full("tims", "customer", TIMS_ID, 4_100, **tims_state(billing_address={"city": "York"})),
                MAPPINGS, POLICY)
    apply_event(record, full("tims", "customer", TIMS_ID, 7_000, **tims_state(
        billing_address={"city": "Hull"}, modified_by="tims-ui")), MAPPINGS, POLICY)
    late = apply_event(record, update("salesforce", "Contact", "003A", 6_000, MailingCity=None), MAPPINGS, POLICY)
    assert record["fields"]["city"]["v"] == "Hull"
    assert [(c["rule"], c["winner"]["value"], c["loser"]["value"]) for c in late.conflicts] == [
        ("last_writer", "Hull", None)]
    # Salesforce holds no city now: it gets the winning one back
    assert by_target(late.commands) == {("salesforce", "Contact"): {"MailingCity": "Hull"}}


def test_a_full_state_source_lacking_a_field_never_clears_it() -> None:
    record = with_phone()
    apply_event(record, update("salesforce", "Contact", "003A", 4_500, MailingCity="York"), MAPPINGS, POLICY)
    apply_event(record, full("tims", "customer", TIMS_ID, 4_600, **tims_state(phone="+15551234567",
                                                                             billing_address={"city": "York"})),
                MAPPINGS, POLICY)
    before = {name: slot["v"] for name, slot in record["fields"].items()}
    version = record["version"]
    # a Pardot prospect that never had a phone or city, restated later with a newer time
    prospect = apply_event(record, full("pardot", "prospect", "77", 8_000, email="ada@example.com", firstName="Ada",
                                        lastName="Lovelace", phone=None, city=None, score=160, grade="A"),
                           MAPPINGS, POLICY)
    # a TIMS record read with fewer fields (no phone, no address at all), newer still
    fewer = tims_state(phone="+15551234567", billing_address={"city": "York"}, modified_by="tims-ui",
                       payment_terms="NET60")
    del fewer["phone"], fewer["billing_address"]
    tims = apply_event(record, full("tims", "customer", TIMS_ID, 9_000, **fewer), MAPPINGS, POLICY)
    after = {name: slot["v"] for name, slot in record["fields"].items()}
    assert after == before | {"score": 160.0, "payment_terms": "NET60"}
    assert not any(c["field"] in ("phone", "city") for c in prospect.conflicts + tims.conflicts)
    cleared = [c for c in prospect.commands + tims.commands if None in c.fields.values()]
    assert cleared == [] and record["version"] > version


def test_a_new_contact_without_a_value_clears_nothing_tims_has() -> None:
    record = new_record("k1")
    apply_event(record, full("tims", "customer", "C9", 1_000, change="CREATE", customer_id="C9", external_id=None,
                             name="Ada Lovelace", email="ada@example.com", phone="+44 20 7946 0958",
                             billing_address={"city": "Leeds"}, payment_terms="NET30", modified_by="tims-ui"),
                MAPPINGS, POLICY)
    # the Contact is created later, with no phone and no city (a create carries every field)
    outcome = apply_event(record, full("salesforce", "Contact", "003A", 2_000, change="CREATE", Email="ada@example.com",
                                       FirstName="Ada", LastName="Lovelace", Phone=None, MailingCity=None,
                                       TIMS_Customer_ID__c="C9", AccountId="001A"), MAPPINGS, POLICY)
    assert record["fields"]["phone"]["v"] == "+442079460958" and record["fields"]["city"]["v"] == "Leeds"
    assert outcome.conflicts == []
    assert [c for c in outcome.commands if None in c.fields.values()] == []
    assert by_target(outcome.commands)[("salesforce", "Contact")]["MailingCity"] == "Leeds"


def test_a_late_create_does_not_clear_what_a_newer_event_of_the_same_record_showed() -> None:
    record = new_record("k1")
    apply_event(record, full("tims", "customer", "C9", 1_000, change="CREATE", customer_id="C9", external_id=None,
                             name="Ada Lovelace", email="ada@example.com", phone=None,
                             billing_address={"city": "Leeds"}, payment_terms="NET30", modified_by="tims-ui"),
                MAPPINGS, POLICY)
    # the lead conversion names the new Contact: the city TIMS has goes to it
    converted = apply_event(record, update("salesforce", "Lead", "00QA", 2_000, IsConverted=True,
                                           ConvertedContactId="003A", ConvertedAccountId="001A"), MAPPINGS, POLICY)
    assert by_target(converted.commands)[("salesforce", "Contact")]["MailingCity"] == "Leeds"
    # the Contact's update (our write coming back) is merged before its create, which took longer
    apply_event(record, update("salesforce", "Contact", "003A", 2_500, MailingCity="Leeds", TIMS_Customer_ID__c="C9",
                               TIMS_Payment_Terms__c="NET30"), MAPPINGS, POLICY)
    version = record["version"]
    late = apply_event(record, full("salesforce", "Contact", "003A", 2_000, change="CREATE", Email="ada@example.com",
                                    FirstName="Ada", LastName="Lovelace", Phone=None, MailingCity=None,
                                    TIMS_Customer_ID__c=None, TIMS_Payment_Terms__c=None, AccountId="001A"),
                       MAPPINGS, POLICY)
    assert record["fields"]["city"]["v"] == "Leeds"
    assert late.conflicts == [] and [c for c in late.commands if c.object == "Contact"] == []
    assert [c for c in late.commands if None in c.fields.values()] == []
    assert record["version"] >= version
