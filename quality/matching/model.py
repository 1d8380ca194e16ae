"""The linkage model: m and u probabilities per comparison level, the prior, the thresholds.

A model is a versioned artefact, a JSON file (``models/customer.json`` ships): ``version`` names
it for people, ``fingerprint`` is the SHA-256 of everything that decides a score (levels, m, u,
prior, thresholds), so two runs that print the same fingerprint scored alike, and a file edited
by hand without a new fingerprint is refused. A model also records the comparison levels it was
trained for: when the code's levels change, an old file is refused rather than misread.

Weights (Fellegi–Sunter): a level with probabilities m (among matches) and u (among non-matches)
adds log2(m/u); a missing value adds 0; the prior adds log2(λ/(1-λ)). The match probability is
the logistic of the sum in base 2.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from quality.matching.comparisons import COMPARISONS
from quality.matching.errors import MatchingError

__all__ = ["Model", "Thresholds", "load_model", "default_model", "DEFAULT_MODEL_PATH", "FLOOR"]

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "customer.json"
#: the smallest probability kept, so a level never seen in training gives a large finite weight
FLOOR = 1e-6


@dataclass(frozen=True)
class Thresholds:
    """Match probabilities: at or above ``link`` the pair is one person; from ``review`` a person decides."""

    link: float = 0.95
    review: float = 0.50

    def __post_init__(self) -> None:
        if not 0 < self.review <= self.link < 1:
            raise MatchingError(f"thresholds need 0 < review ({self.review}) <= link ({self.link}) < 1")


@dataclass(frozen=True)
class Model:
    """m and u per level of each comparison (COMPARISONS order), the prior λ and the thresholds."""

    version: str
    m: dict[str, tuple[float, ...]]
    u: dict[str, tuple[float, ...]]
    prior: float
    thresholds: Thresholds = Thresholds()
    trained: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        weights = {}
        for comparison in COMPARISONS:
            m, u = self.m[comparison.name], self.u[comparison.name]
            weights[comparison.name] = tuple(math.log2(max(mi, FLOOR) / max(ui, FLOOR)) for mi, ui in zip(m, u))
        object.__setattr__(self, "_weights", weights)
        object.__setattr__(self, "_table", tuple(weights[c.name] for c in COMPARISONS))

    @property
    def weights(self) -> dict[str, tuple[float, ...]]:
        """log2(m/u) per level of each comparison."""
        return dict(self._weights)  # type: ignore[attr-defined]

    @property
    def prior_weight(self) -> float:
        return math.log2(self.prior / (1 - self.prior))

    def weight(self, vector: Sequence[int | None]) -> float:
        """The match weight of a comparison vector: the prior plus each known level's weight."""
        total = self.prior_weight
        for weights, level in zip(self._table, vector):  # type: ignore[attr-defined]
            if level is not None:
                total += weights[level]
        return total

    def probability(self, vector: Sequence[int | None]) -> float:
        return 1.0 / (1.0 + 2.0 ** -max(min(self.weight(vector), 60.0), -60.0))

    def decision(self, probability: float, vector: Sequence[int | None] = ()) -> str:
        """link, review or new. A pair whose given names differ outright (not a nickname, a typo
        or an initial) is at most review: people who live together share the address, the last
        name, often the phone and the employer, and Fellegi–Sunter, which takes the comparisons
        as independent, adds those up as if they were separate evidence (docs/adr/0029)."""
        if probability >= self.thresholds.link and not _other_given_name(vector):
            return "link"
        return "review" if probability >= self.thresholds.review else "new"

    # -- the artefact ----------------------------------------------------------------------
    def _scoring(self) -> dict[str, Any]:
        return {
            "comparisons": {c.name: {"levels": list(c.labels), "m": [round(x, 10) for x in self.m[c.name]],
                                     "u": [round(x, 10) for x in self.u[c.name]]} for c in COMPARISONS},
            "prior": round(self.prior, 10),
            "thresholds": {"link": self.thresholds.link, "review": self.thresholds.review},
        }

    @property
    def fingerprint(self) -> str:
        canonical = json.dumps(self._scoring(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        document = {"version": self.version, "fingerprint": self.fingerprint, **self._scoring(), "trained": self.trained}
        return json.dumps(document, indent=2) + "\n"

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())


def _other_given_name(vector: Sequence[int | None]) -> bool:
    if not vector:
        return False
    level = vector[_FIRST_NAME]
    return level is not None and level == len(COMPARISONS[_FIRST_NAME].labels) - 1


_FIRST_NAME = [c.name for c in COMPARISONS].index("first_name")


def _parse(document: Any, source: str) -> Model:
    if not isinstance(document, dict):
        raise MatchingError(f"{source}: a model is a JSON object")
    try:
        comparisons = document["comparisons"]
        for comparison in COMPARISONS:
            entry = comparisons[comparison.name]
            if list(entry["levels"]) != list(comparison.labels):
                raise MatchingError(f"{source}: the levels of {comparison.name} are not the ones this version compares "
                                    f"({entry['levels']} vs {list(comparison.labels)}); train the model again")
        model = Model(
            version=str(document["version"]),
            m={c.name: tuple(float(x) for x in comparisons[c.name]["m"]) for c in COMPARISONS},
            u={c.name: tuple(float(x) for x in comparisons[c.name]["u"]) for c in COMPARISONS},
            prior=float(document["prior"]),
            thresholds=Thresholds(**document.get("thresholds", {})),
            trained=dict(document.get("trained") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, MatchingError):
            raise
        raise MatchingError(f"{source}: not a linkage model ({type(exc).__name__}: {exc})") from None
    if document.get("fingerprint") != model.fingerprint:
        raise MatchingError(f"{source}: fingerprint {document.get('fingerprint')!r} does not match its contents "
                            f"({model.fingerprint}); a model is changed by training, not by hand")
    return model


def load_model(path: Path | str) -> Model:
    """Read and check a model file; MatchingError says what is wrong with it."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise MatchingError(f"{path}: cannot read the model ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise MatchingError(f"{path}: not JSON ({exc})") from None
    return _parse(document, str(path))


@lru_cache(maxsize=1)
def default_model() -> Model:
    """The model shipped with the package (models/customer.json)."""
    return load_model(DEFAULT_MODEL_PATH)
