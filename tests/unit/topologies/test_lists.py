"""Audience membership: linked lists follow Campaigns both ways, segments follow TIMS only."""

from __future__ import annotations

import pytest

from topologies.lists.membership import (
    DEFAULT_MAPPING_DIR, Change, ListsMapping, Targets, apply_change, load_mapping, new_row, reconcile,
)

CAMPAIGN, CONTACT = "701000000000001AAA", "003000000000001AAA"
MAPPING = load_mapping(DEFAULT_MAPPING_DIR).model_copy(update={"links": ()})
LINKED = ListsMapping.model_validate({**MAPPING.model_dump(), "links": [{"pardot_list": 2001, "campaign": CAMPAIGN}]})
LINK = f"link:2001:{CAMPAIGN}"
EVERYWHERE = Targets(2001, CAMPAIGN, 1001)


def writes(outcome: object) -> list[tuple[str, str, str]]:
    return [(c.object, c.operation, c.external_id) for c in outcome.commands]  # type: ignore[attr-defined]


def test_a_linked_list_and_campaign_follow_each_other_both_ways() -> None:
    assert LINKED.audience_of_list(2001) == LINK and LINKED.audience_of_campaign(CAMPAIGN[:15]) == LINK
    row = new_row(f"who:{CONTACT}")
    assert apply_change(row, Change("pardot", LINK, True, 1_000))
    added = reconcile(row, LINK, EVERYWHERE, LINKED, 2_000)
    assert writes(added) == [("CampaignMember", "upsert", f"{CAMPAIGN}:{CONTACT}")]
    assert added.commands[0].fields == {"CampaignId": CAMPAIGN, "ContactId": CONTACT, "Status": "Sent"}
    # our write coming back, and a replay of the Pardot add: nothing more
    apply_change(row, Change("salesforce", LINK, True, 2_500))
    assert reconcile(row, LINK, EVERYWHERE, LINKED, 3_000).commands == []
    assert apply_change(row, Change("pardot", LINK, True, 1_000))
    assert reconcile(row, LINK, EVERYWHERE, LINKED, 3_200).commands == []
    # removed in Salesforce: removed from the Pardot list, with a newer version than the add
    apply_change(row, Change("salesforce", LINK, False, 4_000))
    removed = reconcile(row, LINK, EVERYWHERE, LINKED, 5_000)
    assert writes(removed) == [("list_membership", "delete", "2001:1001")]
    assert removed.commands[0].version > added.commands[0].version
    # a late event from before our write is stale
    assert not apply_change(row, Change("pardot", LINK, True, 4_500))


def test_an_opt_out_removes_the_campaign_member_but_never_the_pardot_membership() -> None:
    row = new_row(f"who:{CONTACT}")
    apply_change(row, Change("salesforce", LINK, True, 1_000))
    assert writes(reconcile(row, LINK, EVERYWHERE, LINKED, 1_500)) == [("list_membership", "upsert", "2001:1001")]
    apply_change(row, Change("pardot", LINK, False, 2_000, opted_out=True))
    assert writes(reconcile(row, LINK, EVERYWHERE, LINKED, 2_500)) == [
        ("CampaignMember", "delete", f"{CAMPAIGN}:{CONTACT}")]
    apply_change(row, Change("salesforce", LINK, False, 3_000))
    assert reconcile(row, LINK, EVERYWHERE, LINKED, 3_500).commands == []


def test_segments_follow_tims_and_wait_for_their_list_and_campaign() -> None:
    row = new_row(f"who:{CONTACT}")
    segment = "segment:SEG000001"
    apply_change(row, Change("tims", segment, True, 1_000))
    waiting = reconcile(row, segment, Targets(None, None, 1001), MAPPING, 1_500)
    assert waiting.commands == [] and waiting.wait_for == [segment]
    both = reconcile(row, segment, Targets(2002, CAMPAIGN, 1001), MAPPING, 2_000)
    assert writes(both) == [("CampaignMember", "upsert", f"{CAMPAIGN}:{CONTACT}"),
                            ("list_membership", "upsert", "2002:1001")]
    # TIMS owns the segment: a removal made in Salesforce is not carried to TIMS and is written back over
    apply_change(row, Change("salesforce", segment, False, 3_000))
    assert row["audiences"][segment]["member"] is True
    assert writes(reconcile(row, segment, Targets(2002, CAMPAIGN, 1001), MAPPING, 3_500)) == [
        ("CampaignMember", "upsert", f"{CAMPAIGN}:{CONTACT}")]
    apply_change(row, Change("tims", segment, False, 4_000))
    removed = reconcile(row, segment, Targets(2002, CAMPAIGN, 1001), MAPPING, 4_500)
    assert ("list_membership", "delete", "2002:1001") in writes(removed)


def test_the_mapping_refuses_a_list_linked_twice() -> None:
    with pytest.raises(ValueError, match="linked twice"):
        ListsMapping.model_validate({"links": [{"pardot_list": 1, "campaign": CAMPAIGN},
                                               {"pardot_list": 1, "campaign": "701000000000002AAA"}]})
    with pytest.raises(ValueError, match="segment_id"):
        ListsMapping.model_validate({"segment_list_name": "TIMS"})
