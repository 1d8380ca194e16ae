"""``stream-app identity link|train``: the record-linkage matcher over two CSV files
(quality/matching, docs/adr/0029), for an initial load and for evaluation."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from quality.matching import MatchingError, Model, default_model, load_model
from quality.matching.em import train
from quality.matching.evaluation import Scores, evaluate, true_pairs
from quality.matching.files import read_fields, read_people, write_pairs
from quality.matching.linker import link, one_to_one
from quality.matching.model import Thresholds

__all__ = ["LinkRun", "run_link", "run_train"]


def _exists(path: Path, what: str) -> Path:
    if not path.is_file():
        raise MatchingError(f"{what} {path}: no such file")
    return path


@dataclass(frozen=True)
class LinkRun:
    pairs: int
    links: int
    reviews: int
    seconds: float
    records: int
    model: Model
    scores: Scores | None


def run_link(left: Path, right: Path, config: Path, out: Path, truth: str | None = None,
             model_path: Path | None = None, unique: bool = True) -> LinkRun:
    """Link ``left`` with ``right``, write pairs.csv; MatchingError on a user's mistake."""
    left_columns, right_columns = read_fields(_exists(config, "--config"))
    model = load_model(_exists(model_path, "--model")) if model_path else default_model()
    left_people, left_truth = read_people(_exists(left, "--left"), left_columns, truth)
    right_people, right_truth = read_people(_exists(right, "--right"), right_columns, truth)
    started = time.perf_counter()
    with tqdm(total=len(left_people), unit="record", desc="linking", file=sys.stderr, disable=None) as bar:
        pairs = list(link(model, left_people, right_people, progress=bar.update))
    if unique:
        pairs = one_to_one(pairs)
    seconds = time.perf_counter() - started
    write_pairs(out, pairs)
    scores = evaluate(pairs, true_pairs(left_truth, right_truth)) if truth else None
    return LinkRun(len(pairs), sum(p.decision == "link" for p in pairs), sum(p.decision == "review" for p in pairs),
                   seconds, len(left_people) + len(right_people), model, scores)


def run_train(left: Path, right: Path, config: Path, out: Path, version: str, link_threshold: float,
              review_threshold: float) -> Model:
    """Fit m, u and the prior by EM on the two files' candidate pairs and write the model file."""
    left_columns, right_columns = read_fields(_exists(config, "--config"))
    thresholds = Thresholds(link=link_threshold, review=review_threshold)
    left_people, _ = read_people(_exists(left, "--left"), left_columns)
    right_people, _ = read_people(_exists(right, "--right"), right_columns)
    if not left_people or not right_people:
        raise MatchingError("training needs records on both sides")
    try:
        model = train(left_people, right_people, version=version, thresholds=thresholds)
    except ValueError as exc:
        raise MatchingError(str(exc)) from None
    try:
        model.save(out)
    except OSError as exc:
        raise MatchingError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return model
