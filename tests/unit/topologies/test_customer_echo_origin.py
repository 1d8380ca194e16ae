"""Echoes by origin as well as value (ADR 0014): our writes coming back change nothing, a user's
change that happens to equal something we wrote earlier is not swallowed, and what each target
record holds is kept per record, so a second TIMS customer for one person causes no rewrites."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from connectors.envelope import SinkCommand, SourceEvent
from stream_app.app import create_app
from stream_app.settings import load_settings
from topologies.customer_sync.golden import Policy, apply_event, apply_tims_link, new_record
from topologies.customer_sync.mapping import load_mappings
from topologies.origin import written_by_us

MAPPINGS = load_mappings()
CLIENTS = {"salesforce": "pardot-tims-connect", "tims": "connect"}
POLICY = Policy(our_clients=CLIENTS)
TIMS_ID = "C000001"
#: changeOrigin of our writes, of another API client's, of a UI edit (empty: cannot tell)
SF_OURS = "com/salesforce/api/rest/62.0;client=pardot-tims-connect"
SF_OTHER = "com/salesforce/api/rest/62.0;client=dataloader"
SF_UI = ""
_ids = itertools.count(1)


def sf_update(entity: str, record_id: str, ts: int, origin: str | None, **fields: Any) -> SourceEvent:
    """A Salesforce UPDATE: the changed fields only; those set to None are nulled."""
    return SourceEvent(event_id=f"o{next(_ids)}", source="salesforce", entity=entity, record_id=record_id,
                       change_type="UPDATE", fields=fields, changed_fields=list(fields),
                       nulled_fields=[k for k, v in fields.items() if v is None], commit_timestamp=ts,
                       change_origin=origin)


def tims_change(ts: int, by: str, customer_id: str = TIMS_ID, change: str = "UPDATE", **overrides: Any) -> SourceEvent:
    """A TIMS feed change (full state) written by ``by``, as the TIMS source makes it."""
    state: dict[str, Any] = {"customer_id": customer_id, "external_id": "003A", "name": "Ada Lovelace",
                             "email": "ada@example.com", "phone": None, "billing_address": None,
                             "payment_terms": "NET30", "credit_limit": None, "modified_by": by}
    return SourceEvent(event_id=f"o{next(_ids)}", source="tims", entity="customer", record_id=customer_id,
                       change_type=change, fields=state | overrides, full_state=True, commit_timestamp=ts,
                       change_origin=by)


def prospect(ts: int, origin: str | None, **fields: Any) -> SourceEvent:
    state = {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace", "phone": None,
             "score": 150, "grade": "A"}
    return SourceEvent(event_id=f"o{next(_ids)}", source="pardot", entity="prospect", record_id="77",
                       change_type="UPDATE", fields=state | fields, full_state=True, commit_timestamp=ts,
                       change_origin=origin)


def linked_record(policy: Policy = POLICY) -> dict[str, Any]:
    """Ada: onboarded, her TIMS id known and written back, our create seen coming back."""
    record = new_record("k1")
    apply_event(record, prospect(1_000, None), MAPPINGS, policy)
    apply_event(record, SourceEvent(event_id=f"o{next(_ids)}", source="salesforce", entity="Contact",
                                    record_id="003A", change_type="CREATE", full_state=True, commit_timestamp=2_000,
                                    fields={"Email": "ada@example.com", "FirstName": "Ada", "LastName": "Lovelace",
                                            "Phone": None, "MailingCity": None, "AccountId": "001A"},
                                    change_origin=SF_UI), MAPPINGS, policy)
    apply_tims_link(record, TIMS_ID, MAPPINGS)
    apply_event(record, tims_change(3_000, "connect", change="CREATE"), MAPPINGS, policy)
    return record


def by_target(commands: list[SinkCommand]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c.system, c.object): c.fields for c in commands}


def city_via_salesforce(record: dict[str, Any], ts: int, city: str | None) -> None:
    """A Salesforce user sets the city; we write it to TIMS and see our write come back."""
    sent = apply_event(record, sf_update("Contact", "003A", ts, SF_UI, MailingCity=city), MAPPINGS, POLICY)
    assert by_target(sent.commands) == {("tims", "customer"): {"billing_address": {"city": city}}}
    echo = apply_event(record, tims_change(ts + 100, "connect", billing_address={"city": city}), MAPPINGS, POLICY)
    assert echo.commands == [] and "billing_address.city" in echo.echo_fields


def city_via_tims(record: dict[str, Any], ts: int, city: str | None) -> None:
    """A TIMS user sets the city; we write it to the Contact and see our write come back."""
    sent = apply_event(record, tims_change(ts, "tims-ui", billing_address={"city": city}), MAPPINGS, POLICY)
    assert by_target(sent.commands) == {("salesforce", "Contact"): {"MailingCity": city}}
    echo = apply_event(record, sf_update("Contact", "003A", ts + 100, SF_OURS, MailingCity=city), MAPPINGS, POLICY)
    assert echo.commands == [] and echo.echo_fields == ["MailingCity"]


def test_the_origin_names_us_someone_else_or_nobody() -> None:
    def said(source: str, origin: str | None) -> bool | None:
        event = SourceEvent(event_id="x", source=source, entity="e", record_id="1", change_type="UPDATE",
                            commit_timestamp=1, change_origin=origin)
        return written_by_us(event, CLIENTS)

    assert said("salesforce", SF_OURS) is True
    assert said("salesforce", "com/salesforce/api/soap/62.0;client=pardot-tims-connect;foo=bar") is True
    assert said("salesforce", SF_OTHER) is False
    assert said("salesforce", "com/salesforce/api/rest/62.0") is False  # we always name ourselves
    assert said("salesforce", "com/salesforce/api/rest/62.0;client=pardot-tims-connect-2") is False
    assert (said("salesforce", SF_UI), said("salesforce", None)) == (None, None)
    assert (said("tims", "connect"), said("tims", "tims-ui"), said("tims", None)) == (True, False, None)
    assert said("pardot", "user:1001") is None  # Pardot names a user, never our client


def test_without_our_names_every_origin_is_unknown() -> None:
    event = sf_update("Contact", "003A", 1, SF_OURS, Phone=None)
    assert written_by_us(event, {}) is None and written_by_us(event, {"tims": "connect"}) is None


def test_the_merge_stage_knows_our_client_names_from_the_settings() -> None:
    settings = load_settings(salesforce_client_name="acme-connect", tims_client_name="acme")
    flow = create_app(settings, sinks=False, metrics=False).parts["flow:customer_sync"]
    assert flow.policy.our_clients == {"salesforce": "acme-connect", "tims": "acme"}


def test_a_tims_user_setting_back_a_value_we_wrote_earlier_is_an_edit() -> None:
    record = linked_record()
    city_via_salesforce(record, 4_000, "York")
    city_via_salesforce(record, 5_000, "Hull")
    # a TIMS user types York again: we wrote York to TIMS two writes ago, but not this time
    outcome = apply_event(record, tims_change(6_000, "tims-ui", billing_address={"city": "York"}), MAPPINGS, POLICY)
    assert outcome.echo_fields == [] and record["fields"]["city"]["v"] == "York"
    assert by_target(outcome.commands) == {("salesforce", "Contact"): {"MailingCity": "York"}}


def test_a_tims_user_clearing_a_value_we_cleared_earlier_is_a_clear() -> None:
    record = linked_record()
    city_via_salesforce(record, 4_000, "York")
    city_via_salesforce(record, 5_000, None)
    city_via_salesforce(record, 6_000, "Leeds")
    outcome = apply_event(record, tims_change(7_000, "tims-ui", billing_address={"city": None}), MAPPINGS, POLICY)
    assert outcome.echo_fields == [] and record["fields"]["city"] == {"v": None, "src": "tims", "ts": 7_000}
    assert by_target(outcome.commands) == {("salesforce", "Contact"): {"MailingCity": None}}


def test_another_salesforce_client_setting_back_a_value_we_wrote_earlier_is_an_edit() -> None:
    record = linked_record()
    city_via_tims(record, 4_000, "York")
    city_via_tims(record, 5_000, "Hull")
    outcome = apply_event(record, sf_update("Contact", "003A", 6_000, SF_OTHER, MailingCity="York"), MAPPINGS, POLICY)
    assert outcome.echo_fields == [] and record["fields"]["city"]["v"] == "York"
    assert by_target(outcome.commands) == {("tims", "customer"): {"billing_address": {"city": "York"}}}


def test_an_empty_origin_falls_back_to_the_value_rule() -> None:
    record = linked_record()
    city_via_tims(record, 4_000, "York")
    city_via_tims(record, 5_000, "Hull")
    # a UI edit without an origin, equal to an earlier write of ours: taken as that write
    outcome = apply_event(record, sf_update("Contact", "003A", 6_000, SF_UI, MailingCity="York"), MAPPINGS, POLICY)
    assert outcome.echo_fields == ["MailingCity"] and record["fields"]["city"]["v"] == "Hull"


def test_our_writes_coming_back_with_our_origin_change_nothing() -> None:
    record = linked_record()
    version = record["version"]
    for entity, record_id in (("Contact", "003A"), ("Account", "001A")):
        echo = apply_event(record, sf_update(entity, record_id, 3_500, SF_OURS, TIMS_Customer_ID__c=TIMS_ID,
                                             TIMS_Payment_Terms__c="NET30"), MAPPINGS, POLICY)
        assert echo.commands == [] and echo.changed == []
        assert echo.echo_fields == ["TIMS_Customer_ID__c", "TIMS_Payment_Terms__c"]
    city_via_salesforce(record, 4_000, "York")
    city_via_tims(record, 5_000, "Hull")
    assert record["fields"]["city"]["v"] == "Hull"
    # the older write of ours arriving late is still ours: it undoes nothing
    late = apply_event(record, tims_change(5_050, "connect", billing_address={"city": "York"}), MAPPINGS, POLICY)
    assert late.changed == [] and record["fields"]["city"]["v"] == "Hull"
    assert record["version"] > version


def test_pardot_events_are_decided_as_before_whatever_their_origin() -> None:
    records = []
    for policy, origin in ((Policy(), None), (POLICY, None), (POLICY, "user:1001")):
        record = linked_record(policy)
        for ts, fields in ((4_000, {"score": 180}), (5_000, {"grade": "B", "phone": "+44 20 7946 0958"}),
                           (6_000, {"score": 150, "phone": None})):
            apply_event(record, prospect(ts, origin, **fields), MAPPINGS, policy)
        records.append({k: v for k, v in record.items() if k != "seen"})
    assert records[0] == records[1] == records[2]


def test_a_second_tims_customer_for_the_same_person_causes_no_rewrites() -> None:
    record = linked_record()
    # a TIMS user creates Ada again (no external_id); matched by email, it joins her record
    twin = apply_event(record, tims_change(4_000, "tims-ui", customer_id="C000002", change="CREATE",
                                           external_id=None), MAPPINGS, POLICY)
    assert record["links"]["tims_customer"] == TIMS_ID
    assert twin.commands == []
    # edits still go to the linked customer only, as a difference from what it holds
    phone = apply_event(record, sf_update("Contact", "003A", 5_000, SF_UI, Phone="(555) 123-4567"), MAPPINGS, POLICY)
    [write] = phone.commands
    assert (write.external_id, write.fields) == (TIMS_ID, {"phone": "+15551234567"})
    again = apply_event(record, tims_change(5_500, "tims-ui", customer_id="C000002", external_id=None,
                                            payment_terms="NET60"), MAPPINGS, POLICY)
    assert {c.object: c.fields for c in again.commands} == {
        "Contact": {"TIMS_Payment_Terms__c": "NET60"}, "Account": {"TIMS_Payment_Terms__c": "NET60"}}


#: Ada's record as the previous version stored it: ``known`` per target type
OLD_RECORD: dict[str, Any] = {
    "key": "k1", "version": 4,
    "fields": {"email": {"v": "ada@example.com", "src": "salesforce", "ts": 2000},
               "first_name": {"v": "Ada", "src": "salesforce", "ts": 2000},
               "last_name": {"v": "Lovelace", "src": "salesforce", "ts": 2000},
               "score": {"v": 150.0, "src": "pardot", "ts": 1000}, "grade": {"v": "A", "src": "pardot", "ts": 1000},
               "payment_terms": {"v": "NET30", "src": "tims", "ts": 3000}},
    "links": {"pardot_prospect": "77", "salesforce_contact": "003A", "salesforce_account": "001A",
              "tims_customer": TIMS_ID},
    "refs": ["pardot:prospect:77", "salesforce:Contact:003A", "salesforce:Account:001A", f"tims:customer:{TIMS_ID}"],
    "known": {
        "salesforce.Contact": {"Email": "ada@example.com", "FirstName": "Ada", "LastName": "Lovelace", "Phone": None,
                               "MailingCity": None, "AccountId": "001A", "TIMS_Customer_ID__c": TIMS_ID,
                               "TIMS_Payment_Terms__c": "NET30"},
        "tims.customer": {"external_id": "003A", "name": "Ada Lovelace", "email": "ada@example.com",
                          "customer_id": TIMS_ID, "phone": None, "billing_address": None, "payment_terms": "NET30",
                          "credit_limit": None, "modified_by": "connect"},
        "salesforce.Account": {"TIMS_Customer_ID__c": TIMS_ID, "TIMS_Payment_Terms__c": "NET30"}},
    "sent": {"tims.customer": {"external_id": ["003A"], "name": ["Ada Lovelace"], "email": ["ada@example.com"]},
             "salesforce.Contact": {"TIMS_Customer_ID__c": [TIMS_ID], "TIMS_Payment_Terms__c": ["NET30"]},
             "salesforce.Account": {"TIMS_Customer_ID__c": [TIMS_ID], "TIMS_Payment_Terms__c": ["NET30"]}},
    "observed": {"pardot:prospect:77": {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace",
                                        "phone": None, "score": 150, "grade": "A"},
                 "salesforce:Contact:003A": {"Email": "ada@example.com", "FirstName": "Ada", "LastName": "Lovelace",
                                             "Phone": None, "MailingCity": None},
                 f"tims:customer:{TIMS_ID}": {"name": "Ada Lovelace", "email": "ada@example.com", "phone": None,
                                              "billing_address": None, "payment_terms": "NET30",
                                              "credit_limit": None}},
    "observed_at": {"pardot:prospect:77": 1000, "salesforce:Contact:003A": 2000, f"tims:customer:{TIMS_ID}": 3000},
    "seen": ["c1", "c2", "c3"],
}


def test_a_record_stored_by_the_previous_version_writes_only_what_changed() -> None:
    record = copy.deepcopy(OLD_RECORD)
    phone = apply_event(record, sf_update("Contact", "003A", 5_000, SF_UI, Phone="(555) 123-4567"), MAPPINGS, POLICY)
    assert by_target(phone.commands) == {("tims", "customer"): {"phone": "+15551234567"}}
    echo = apply_event(record, tims_change(5_100, "connect", phone="+15551234567"), MAPPINGS, POLICY)
    assert echo.commands == [] and echo.changed == []
    relinked = copy.deepcopy(OLD_RECORD)
    assert apply_tims_link(relinked, TIMS_ID, MAPPINGS).commands == []
