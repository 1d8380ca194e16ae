"""Blocking and linking (quality/matching/blocking.py, linker.py) on small hand-made files."""

from __future__ import annotations

from quality.matching.blocking import block_keys, candidate_pairs
from quality.matching.linker import ScoredPair, link, one_to_one
from quality.matching.model import default_model
from quality.matching.records import person_from

ROBERT = person_from("t1", {"first_name": "Robert", "last_name": "Smithson", "street": "12 Main Street",
                            "postcode": "62701", "city": "Springfield", "phone": "217-555-0101", "birth_date": "1970-05-06"})
BOB = person_from("s1", {"first_name": "Bob", "last_name": "Smithsen", "street": "12 Main St", "postcode": "62710",
                         "city": "Springfield", "phone": "+1 217 555 0101"})
SUSAN = person_from("s2", {"first_name": "Susan", "last_name": "Smithson", "street": "12 Main Street",
                           "postcode": "62701", "city": "Springfield", "phone": "217-555-0101"})
STRANGER = person_from("s3", {"first_name": "Olivia", "last_name": "Baker", "postcode": "33601", "city": "Tampa"})


def test_a_nickname_a_typo_and_a_mistyped_postcode_still_share_a_key() -> None:
    assert block_keys(ROBERT) & block_keys(BOB)


def test_names_in_the_wrong_boxes_share_a_key() -> None:
    exchanged = person_from("x", {"first_name": "Smithson", "last_name": "Robert"})
    assert block_keys(ROBERT) & block_keys(exchanged)


def test_blocking_skips_strangers() -> None:
    assert list(candidate_pairs([ROBERT], [STRANGER])) == []


def test_the_person_links_and_the_housemate_goes_to_review() -> None:
    found = {p.right_id: p for p in link(default_model(), [ROBERT], [BOB, SUSAN, STRANGER])}
    assert found["s1"].decision == "link"
    assert found["s2"].decision == "review"
    assert "s3" not in found


def test_link_reports_progress_for_every_left_record() -> None:
    seen: list[int] = []
    list(link(default_model(), [STRANGER, ROBERT, STRANGER], [BOB], progress=seen.append))
    assert sum(seen) == 3


def test_one_to_one_keeps_the_best_link_of_each_record() -> None:
    pairs = [ScoredPair("a", "x", 0.995, "link"), ScoredPair("b", "x", 0.999, "link"), ScoredPair("a", "y", 0.992, "link")]
    decided = {(p.left_id, p.right_id): p.decision for p in one_to_one(pairs)}
    assert decided == {("b", "x"): "link", ("a", "x"): "review", ("a", "y"): "link"}
