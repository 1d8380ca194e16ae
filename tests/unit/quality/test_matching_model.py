"""The linkage model (quality/matching/model.py): weights, decisions, the versioned artefact."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from quality.matching.comparisons import COMPARISONS
from quality.matching.errors import MatchingError
from quality.matching.model import DEFAULT_MODEL_PATH, default_model, load_model

NONE = (None,) * len(COMPARISONS)


def vector(**levels: int) -> tuple[int | None, ...]:
    return tuple(levels.get(c.name) for c in COMPARISONS)


def test_the_shipped_model_loads_and_its_fingerprint_matches() -> None:
    model = default_model()
    assert model.version == "customer-1"
    assert json.loads(DEFAULT_MODEL_PATH.read_text())["fingerprint"] == model.fingerprint


def test_missing_values_weigh_nothing() -> None:
    model = default_model()
    assert model.weight(NONE) == pytest.approx(model.prior_weight)
    assert model.weight(vector(first_name=0)) == pytest.approx(model.prior_weight + model.weights["first_name"][0])


def test_agreement_weighs_more_than_disagreement_for_every_comparison_seen_in_training() -> None:
    model = default_model()
    for comparison in COMPARISONS:
        if comparison.name == "email":  # the training files share no email: its agreement levels were never seen
            continue
        weights = model.weights[comparison.name]
        assert weights[0] > 0 > weights[-1], comparison.name


def test_decisions_follow_the_thresholds_and_other_given_names_are_never_linked() -> None:
    model = default_model()
    same = vector(first_name=0, last_name=0, address=0, phone=0, birth_date=0)
    assert model.decision(model.probability(same), same) == "link"
    household = vector(first_name=6, last_name=0, address=0, phone=0, company=0)
    assert model.probability(household) > model.thresholds.link  # what the guard is for
    assert model.decision(model.probability(household), household) == "review"
    strangers = vector(first_name=6, last_name=3, address=5)
    assert model.decision(model.probability(strangers), strangers) == "new"
    assert 0 < model.probability(NONE) < 1 and not math.isnan(model.probability(NONE))


def test_a_model_edited_by_hand_is_refused(tmp_path: Path) -> None:
    document = json.loads(DEFAULT_MODEL_PATH.read_text())
    document["comparisons"]["phone"]["m"][0] = 0.5
    edited = tmp_path / "model.json"
    edited.write_text(json.dumps(document))
    with pytest.raises(MatchingError, match="fingerprint"):
        load_model(edited)


def test_a_model_for_other_levels_is_refused(tmp_path: Path) -> None:
    document = json.loads(DEFAULT_MODEL_PATH.read_text())
    document["comparisons"]["phone"]["levels"] = ["exact", "else"]
    other = tmp_path / "model.json"
    other.write_text(json.dumps(document))
    with pytest.raises(MatchingError, match="train the model again"):
        load_model(other)


def test_a_save_and_load_gives_the_same_model(tmp_path: Path) -> None:
    path = tmp_path / "copy.json"
    default_model().save(path)
    assert load_model(path).fingerprint == default_model().fingerprint
