"""The golden record's decisions, without Kafka: onboarding, echoes, ownership, LWW, dedupe."""

from __future__ import annotations

import itertools

import pytest

from connectors.envelope import SourceEvent
from topologies.customer_sync.cleansing import Uncleanable
from topologies.customer_sync.golden import Policy, apply_event, apply_tims_link, new_record
from topologies.customer_sync.mapping import load_mappings

MAPPINGS = load_mappings()
POLICY = Policy()
_ids = itertools.count(1)


def event(source: str, entity: str, record_id: str, ts: int = 1_000, change: str = "UPDATE", **fields) -> SourceEvent:
    return SourceEvent(event_id=f"e{next(_ids)}", source=source, entity=entity, record_id=record_id,
                       change_type=change, fields=fields, commit_timestamp=ts)


def onboarded_record() -> dict:
    record = new_record("k1")
    apply_event(record, event("pardot", "prospect", "77", email="ada@example.com", firstName="Ada",
                              lastName="Lovelace", score=150, grade="A"), MAPPINGS, POLICY)
    apply_event(record, event("salesforce", "Contact", "003A", ts=2_000, change="CREATE", Email="ada@example.com",
                              FirstName="Ada", LastName="Lovelace", AccountId="001A"), MAPPINGS, POLICY)
    return record


def test_qualified_converted_prospect_creates_one_tims_customer() -> None:
    record = new_record("k1")
    first = apply_event(record, event("pardot", "prospect", "77", email="ada@example.com", firstName="Ada",
                                      lastName="Lovelace", score=150, grade="A"), MAPPINGS, POLICY)
    assert first.commands == []  # not converted yet: nothing to write anywhere
    second = apply_event(record, event("salesforce", "Contact", "003A", ts=2_000, change="CREATE",
                                       Email="ada@example.com", FirstName="Ada", LastName="Lovelace",
                                       AccountId="001A"), MAPPINGS, POLICY)
    [create] = [c for c in second.commands if c.system == "tims"]
    assert (create.external_id_field, create.external_id) == ("external_id", "003A")
    assert create.fields == {"name": "Ada Lovelace", "email": "ada@example.com"}
    assert create.version == record["version"] == 2
    assert record["links"] == {"pardot_prospect": "77", "salesforce_contact": "003A", "salesforce_account": "001A"}


@pytest.mark.parametrize(("grade", "score"), [("B", 150), ("A", 90)])
def test_unqualified_prospect_is_not_onboarded(grade: str, score: int) -> None:
    record = new_record("k1")
    apply_event(record, event("pardot", "prospect", "77", email="b@example.com", score=score, grade=grade), MAPPINGS, POLICY)
    outcome = apply_event(record, event("salesforce", "Contact", "003B", Email="b@example.com", LastName="B"), MAPPINGS, POLICY)
    assert [c for c in outcome.commands if c.system == "tims"] == []


def test_tims_id_is_written_back_to_contact_and_account_then_updates_go_by_tims_id() -> None:
    record = onboarded_record()
    outcome = apply_tims_link(record, "C000001", MAPPINGS)
    written = {(c.system, c.object): c for c in outcome.commands}
    assert written[("salesforce", "Contact")].fields == {"TIMS_Customer_ID__c": "C000001"}
    assert written[("salesforce", "Contact")].external_id == "003A"
    assert written[("salesforce", "Account")].fields == {"TIMS_Customer_ID__c": "C000001"}
    assert ("tims", "customer") not in written  # nothing new for TIMS itself
    later = apply_event(record, event("salesforce", "Contact", "003A", ts=3_000, Phone="(555) 123-4567"), MAPPINGS, POLICY)
    [update] = later.commands
    assert (update.external_id_field, update.external_id, update.fields) == ("customer_id", "C000001", {"phone": "+15551234567"})


def test_our_own_writes_coming_back_change_nothing() -> None:
    record = onboarded_record()
    apply_tims_link(record, "C000001", MAPPINGS)
    version = record["version"]
    echo = apply_event(record, event("tims", "customer", "C000001", ts=5_000, change="CREATE", customer_id="C000001",
                                     external_id="003A", name="Ada Lovelace", email="ada@example.com",
                                     modified_by="connect"), MAPPINGS, POLICY)
    assert echo.commands == [] and echo.conflicts == []
    assert {"name", "email", "external_id"} <= set(echo.echo_fields)
    sf_echo = apply_event(record, event("salesforce", "Contact", "003A", ts=6_000, TIMS_Customer_ID__c="C000001"), MAPPINGS, POLICY)
    assert sf_echo.commands == [] and record["version"] == version


def test_an_accepted_edit_goes_to_the_other_systems_only() -> None:
    record = onboarded_record()
    apply_tims_link(record, "C000001", MAPPINGS)
    outcome = apply_event(record, event("tims", "customer", "C000001", ts=9_000, payment_terms="NET60",
                                        billing_address={"city": "Leeds"}), MAPPINGS, POLICY)
    targets = {(c.system, c.object): c.fields for c in outcome.commands}
    assert ("tims", "customer") not in targets  # no ping-pong
    assert targets[("salesforce", "Contact")] == {"TIMS_Payment_Terms__c": "NET60", "MailingCity": "Leeds"}
    assert targets[("salesforce", "Account")] == {"TIMS_Payment_Terms__c": "NET60"}


def test_owner_wins_back_a_field_edited_elsewhere() -> None:
    record = onboarded_record()
    apply_tims_link(record, "C000001", MAPPINGS)
    outcome = apply_event(record, event("tims", "customer", "C000001", ts=9_000, email="typo@example.com"), MAPPINGS, POLICY)
    assert record["fields"]["email"]["v"] == "ada@example.com"
    [conflict] = outcome.conflicts
    assert conflict["rule"] == "owner" and conflict["winner"]["system"] == "salesforce"
    [restore] = outcome.commands
    assert (restore.system, restore.fields) == ("tims", {"email": "ada@example.com"})


def test_same_field_edited_on_both_sides_within_a_second_resolves_the_same_way_every_time() -> None:
    results = set()
    for order in ((0, 1), (1, 0)):
        record = onboarded_record()
        apply_tims_link(record, "C000001", MAPPINGS)
        edits = [event("salesforce", "Contact", "003A", ts=10_000, MailingCity="York"),
                 event("tims", "customer", "C000001", ts=10_000, billing_address={"city": "Hull"})]
        conflicts = []
        for i in order:
            conflicts += apply_event(record, edits[i], MAPPINGS, POLICY).conflicts
        results.add(record["fields"]["city"]["v"])
        assert conflicts and conflicts[-1]["rule"] == "tie_break"
    assert results == {"York"}  # equal commit times: Salesforce ranks first


def test_last_writer_wins_for_unowned_fields() -> None:
    record = onboarded_record()
    apply_event(record, event("salesforce", "Contact", "003A", ts=10_000, MailingCity="York"), MAPPINGS, POLICY)
    apply_event(record, event("tims", "customer", "C1", ts=10_500, external_id="003A", billing_address={"city": "Hull"}), MAPPINGS, POLICY)
    assert record["fields"]["city"]["v"] == "Hull"
    apply_event(record, event("salesforce", "Contact", "003A", ts=10_200, MailingCity="Ripon"), MAPPINGS, POLICY)
    assert record["fields"]["city"]["v"] == "Hull"  # an older edit arriving late loses


def test_a_late_edit_of_a_field_no_newer_event_showed_still_lands() -> None:
    """Seen in the chaos run: a Contact's city edit waited (its Contact not indexed yet) while the
    Contact's next edit, of the title only, was merged first; the city edit was then dropped."""
    record = new_record("k1")
    apply_event(record, event("salesforce", "Contact", "003A", ts=2_000, change="CREATE", Email="ada@example.com",
                              LastName="Lovelace", MailingCity="London", Title="Lady"), MAPPINGS, POLICY)
    apply_tims_link(record, "C000001", MAPPINGS)
    apply_event(record, event("salesforce", "Contact", "003A", ts=3_000, Title="Countess"), MAPPINGS, POLICY)
    late = apply_event(record, event("salesforce", "Contact", "003A", ts=2_500, MailingCity="Ockham"), MAPPINGS, POLICY)
    assert record["fields"]["city"]["v"] == "Ockham"
    assert [c.fields for c in late.commands if c.system == "tims"] == [{"billing_address": {"city": "Ockham"}}]
    # ... while a late edit of a field a newer event did show is history
    apply_event(record, event("salesforce", "Contact", "003A", ts=4_000, MailingCity="Horsley"), MAPPINGS, POLICY)
    apply_event(record, event("salesforce", "Contact", "003A", ts=3_500, MailingCity="Ripley"), MAPPINGS, POLICY)
    assert record["fields"]["city"]["v"] == "Horsley"


def test_duplicate_event_ids_and_no_op_changes_write_nothing() -> None:
    record = onboarded_record()
    again = event("salesforce", "Contact", "003A", ts=20_000, Phone="+44 20 7946 0958")
    first = apply_event(record, again, MAPPINGS, POLICY)
    assert apply_event(record, again, MAPPINGS, POLICY).duplicate
    same_value = apply_event(record, event("salesforce", "Contact", "003A", ts=21_000, Phone="+442079460958"), MAPPINGS, POLICY)
    assert first.commands and same_value.commands == [] and same_value.changed == []


def test_values_that_cannot_be_cleaned_are_refused_whole() -> None:
    record = onboarded_record()
    before = repr(record)
    with pytest.raises(Uncleanable, match="phone"):
        apply_event(record, event("salesforce", "Contact", "003A", Phone="12", Email="ada@example.com"), MAPPINGS, POLICY)
    assert repr(record) == before


def full(source: str, entity: str, record_id: str, ts: int, **fields) -> SourceEvent:
    return SourceEvent(event_id=f"e{next(_ids)}", source=source, entity=entity, record_id=record_id,
                       change_type="UPDATE", fields=fields, full_state=True, commit_timestamp=ts)


def test_every_win_back_carries_a_version_the_sink_has_not_applied() -> None:
    record = onboarded_record()
    apply_tims_link(record, "C000001", MAPPINGS)
    versions = []
    for typo in ("typo1@example.com", "typo2@example.com"):
        [restore] = apply_event(record, event("tims", "customer", "C000001", ts=9_000, email=typo), MAPPINGS, POLICY).commands
        versions.append(restore.version)
    assert versions[0] < versions[1]


def test_a_full_state_event_does_not_revert_a_newer_edit_made_elsewhere() -> None:
    record = onboarded_record()
    apply_tims_link(record, "C000001", MAPPINGS)
    tims_state = {"customer_id": "C000001", "external_id": "003A", "name": "Ada Lovelace", "email": "ada@example.com"}
    apply_event(record, full("tims", "customer", "C000001", 5_000, **tims_state, billing_address={"city": "Leeds"},
                             payment_terms="NET30"), MAPPINGS, POLICY)
    apply_event(record, event("salesforce", "Contact", "003A", ts=6_000, MailingCity="York"), MAPPINGS, POLICY)
    # A TIMS user changes only the payment terms; the feed restates the old city with a newer time.
    outcome = apply_event(record, full("tims", "customer", "C000001", 7_000, **tims_state,
                                       billing_address={"city": "Leeds"}, payment_terms="NET60"), MAPPINGS, POLICY)
    assert record["fields"]["city"]["v"] == "York"
    assert record["fields"]["payment_terms"]["v"] == "NET60"
    assert not any(c["field"] == "city" for c in outcome.conflicts)


def test_a_shop_customer_joins_the_master_and_becomes_one_tims_customer() -> None:
    """docs/adr/0035: a person only the shop knows is created in TIMS by their shop customer, whose
    global id becomes a TIMS external id (no ``/``); their Contact later links the same record."""
    record = new_record("k9")
    outcome = apply_event(record, event("shop", "customer", "gid://shopify/Customer/7", change="CREATE",
                                        email=" Grace@Example.com", first_name="Grace", last_name="Hopper"),
                          MAPPINGS, POLICY)
    [create] = [c for c in outcome.commands if c.system == "tims"]
    assert (create.external_id_field, create.external_id) == ("external_id", "shop:shopify:Customer:7")
    assert create.fields == {"name": "Grace Hopper", "email": "grace@example.com"}
    assert record["links"] == {"shop_customer": "shop:shopify:Customer:7"}
    assert record["refs"] == ["shop:customer:gid://shopify/Customer/7"]
    linked = apply_tims_link(record, "C000009", MAPPINGS)
    assert all(c.external_id_field != "external_id" for c in linked.commands if c.system == "tims")
