"""Matching in the customer sync without Kafka: the blocking table, the decision, and merging and
unmerging golden records (docs/adr/0036)."""

from __future__ import annotations

import copy
import itertools

from connectors.envelope import SourceEvent
from quality.matching import default_model, person_from
from topologies.customer_sync.golden import Policy, apply_event, apply_tims_link, new_record
from topologies.customer_sync.golden_merge import absorb, merged_into, restore, unmerge
from topologies.customer_sync.mapping import load_mappings
from topologies.customer_sync.matching import BlockingTable, corroborated, decide, profile_of, review_id

MAPPINGS = load_mappings()
POLICY = Policy()
MODEL = default_model()
_ids = itertools.count(1)

ADA = {"first_name": "Ada", "last_name": "Lovelace", "phone": "(415) 555-0100", "street": "12 Main Street",
       "city": "Springfield", "postal_code": "62701", "email": "ada@example.com"}


def person(key: str, **fields: str) -> object:
    return person_from(key, profile_of(fields))


def test_a_typo_and_another_email_with_the_same_phone_and_street_is_a_link() -> None:
    table = BlockingTable({})
    table.add("k-ada", profile_of(ADA), golden=True)
    counter = person("tims:customer:C9", first_name="Ada", last_name="Lovelase", phone="415 555 0100",
                     street="12 Main St", city="Springfield", postal_code="62701", email="ada@lovelace-welding.com")
    candidates = table.candidates(counter)  # type: ignore[arg-type]
    assert list(candidates) == ["k-ada"]
    match = decide(MODEL, counter, candidates)  # type: ignore[arg-type]
    assert (match.decision, match.candidate) == ("link", "k-ada") and match.score > 0.99
    assert match.levels["last_name"] == "jw>=0.94" and match.levels["phone"] == "exact"


def test_names_alone_are_at_most_review_and_a_stranger_is_new() -> None:
    table = BlockingTable({})
    table.add("k-ada", profile_of(ADA), golden=True)
    namesake = person("x", first_name="Ada", last_name="Lovelace", email="other@example.org")
    match = decide(MODEL, namesake, table.candidates(namesake))  # type: ignore[arg-type]
    assert (match.decision, match.candidate) == ("review", "k-ada")  # the model alone would link
    assert MODEL.decision(match.score) == "link" and not corroborated((0, 0, 2, None, None, None, None))
    assert corroborated((0, 0, 2, 0, None, None, None)) and corroborated((0, 1, None, None, None, 1, None))
    stranger = person("y", first_name="Grace", last_name="Hopper", postal_code="62701", email="g@navy.mil")
    assert decide(MODEL, stranger, table.candidates(stranger)).decision == "new"  # type: ignore[arg-type]
    assert decide(MODEL, stranger, {}).decision == "new"


def test_the_blocking_table_keeps_variants_caps_common_keys_and_knows_whose_email_came_first() -> None:
    raw: dict = {}
    table = BlockingTable(raw, max_block=2)
    table.add("k1", profile_of(ADA), golden=True)
    table.add("k1", {"first_name": "Ada", "last_name": "Lovelase", "email": "ada@lw.com"})
    table.add("k1", profile_of(ADA | {"city": "Leeds"}), golden=True)
    assert [p.get("city") for p in table.profiles("k1")] == ["Leeds", None]
    for key in ("k2", "k3", "k4"):
        table.add(key, {"first_name": "Ada", "last_name": "Lovelace"})
    block = next(k for k in raw if k.startswith("b:nm:"))
    assert len(raw[block]) == 3  # two and one over: the key is too common and skipped
    assert "k4" not in raw[block]
    assert "k2" not in table.candidates(person_from("z", {"first_name": "Ada", "last_name": "Lovelace"}))
    table.add("k2", {"first_name": "Al", "email": "ada@example.com"})
    assert table.owner_of("ada@example.com") == "k1" and table.owner_of("x@example.com") is None
    assert review_id("a", "b") == review_id("a", "b") != review_id("b", "a")


def event(source: str, entity: str, record_id: str, ts: int, **fields: object) -> SourceEvent:
    return SourceEvent(event_id=f"m{next(_ids)}", source=source, entity=entity, record_id=record_id,
                       change_type="CREATE", fields=fields, full_state=True, commit_timestamp=ts)


def two_customers() -> tuple[dict, dict]:
    survivor = new_record("k-ada")
    apply_event(survivor, event("salesforce", "Contact", "003A", 1_000, Email="ada@example.com", FirstName="Ada",
                                LastName="Lovelace", MailingCity="Springfield"), MAPPINGS, POLICY)
    apply_tims_link(survivor, "C1", MAPPINGS)
    duplicate = new_record("k-dup")
    apply_event(duplicate, event("tims", "customer", "C9", 2_000, name="Ada Lovelase", email="ada@lw.com",
                                 phone="415-555-0100", payment_terms="NET60",
                                 billing_address={"city": "Springfield"}), MAPPINGS, POLICY)
    return survivor, duplicate


def test_a_merge_takes_fields_by_the_policy_unites_ids_and_marks_the_duplicate_tims_customer() -> None:
    survivor, duplicate = two_customers()
    before = copy.deepcopy(survivor)
    outcome, report = absorb(survivor, copy.deepcopy(duplicate), POLICY, MAPPINGS, "r1", by="alice")
    fields = {name: slot["v"] for name, slot in survivor["fields"].items()}
    # Salesforce owns names and email: the survivor's stay; TIMS owns payment terms; the phone was missing
    assert (fields["last_name"], fields["email"]) == ("Lovelace", "ada@example.com")
    assert (fields["payment_terms"], fields["phone"]) == ("NET60", "+14155550100")
    assert "tims:customer:C9" in survivor["refs"] and "salesforce:Contact:003A" in survivor["refs"]
    assert report.duplicates == {"tims_customer": ["C1", "C9"]} and report.tims_marked == "C9"
    assert survivor["version"] > max(before["version"], duplicate["version"])
    marks = [c for c in outcome.commands if c.fields == {"status": "inactive"}]
    assert [(m.external_id_field, m.external_id) for m in marks] == [("customer_id", "C9")]
    contact = [c for c in outcome.commands if c.object == "Contact"]
    assert contact and contact[0].fields.get("TIMS_Payment_Terms__c") == "NET60"
    assert report.audit(5)["fields"] == ["payment_terms", "phone"] and "Lovelace" not in str(report.audit(5))
    # redone: nothing folded twice
    again, _ = absorb(survivor, copy.deepcopy(duplicate), POLICY, MAPPINGS, "r1")
    assert again.commands == []


def test_an_unmerge_gives_back_what_the_merge_took_and_keeps_later_edits() -> None:
    survivor, duplicate = two_customers()
    before = copy.deepcopy(survivor)
    absorb(survivor, copy.deepcopy(duplicate), POLICY, MAPPINGS, "r1")
    duplicate["merged_into"] = {"into": "k-ada", "merge_id": "r1", "at": 1}
    assert merged_into(duplicate) == "k-ada" and merged_into(survivor) is None
    # an edit after the merge: the city, which the merge did not take
    apply_event(survivor, event("salesforce", "Contact", "003A", 9_000, Email="ada@example.com", FirstName="Ada",
                                LastName="Lovelace", MailingCity="Leeds"), MAPPINGS, POLICY)
    assert unmerge(survivor, "nope", MAPPINGS) is None
    outcome, report, entry = unmerge(survivor, "r1", MAPPINGS, by="bob")  # type: ignore[misc]
    assert sorted(report.fields) == ["payment_terms", "phone"] and entry["refs"] == ["tims:customer:C9"]
    assert "phone" not in survivor["fields"] and survivor["fields"]["city"]["v"] == "Leeds"
    assert "payment_terms" not in survivor["fields"] and "payment_terms" not in before["fields"]
    assert "tims:customer:C9" not in survivor["refs"] and survivor["links"]["tims_customer"] == "C1"
    assert [c.fields for c in outcome.commands if c.fields.get("status")] == [{"status": "active"}]
    restored = restore(duplicate, "r1", survivor["version"], MAPPINGS)
    assert merged_into(duplicate) is None and duplicate["version"] > survivor["version"]
    tims = [c for c in restored.commands if c.system == "tims"]
    assert tims and tims[0].external_id == "C9" and tims[0].fields.get("email") == "ada@lw.com"
    assert restore(duplicate, "r1", 0, MAPPINGS).commands == []  # redone: nothing more


def test_an_erased_customer_leaves_no_trace_in_the_blocking_table() -> None:
    raw: dict = {}
    table = BlockingTable(raw)
    table.add("k-ada", profile_of(ADA), golden=True)
    table.add("k-ada", {"first_name": "Ada", "last_name": "Lovelase", "email": "ada@lw.com"})
    table.add("k-bo", {"first_name": "Bo", "last_name": "Lovelace", "postcode": "62701"}, golden=True)
    table.forget("k-ada")
    assert not any("k-ada" in str(value) or "ada@" in key for key, value in raw.items())
    assert table.profiles("k-bo") and raw  # someone else's entries stay
    table.forget("k-nobody")


def test_a_changed_value_takes_the_customer_out_of_its_old_blocks() -> None:
    raw: dict = {}
    table = BlockingTable(raw)
    table.add("k-ada", profile_of(ADA), golden=True)
    assert "b:em:ada@example.com" in raw and "b:ph:5550100" in raw
    table.add("k-ada", profile_of(ADA | {"email": "ada@new.example", "phone": None}), golden=True)
    assert "b:em:ada@example.com" not in raw and "b:ph:5550100" not in raw and "b:em:ada@new.example" in raw
    assert table.candidates(person_from("x", profile_of(ADA))) == {"k-ada": table.profiles("k-ada")}
