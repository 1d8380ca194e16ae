"""Fellegi–Sunter record linkage of people across systems (docs/adr/0029).

``records`` normalises a person's roles; ``comparisons`` turns a pair into agreement levels;
``blocking`` finds candidate pairs without a full scan; ``model`` holds the m/u probabilities
and thresholds (a versioned JSON artefact); ``em`` estimates them from unlabelled pairs;
``linker`` scores pairs and decides link, review or new.
"""

from quality.matching.errors import MatchingError
from quality.matching.linker import Decision, ScoredPair, link
from quality.matching.model import Model, default_model, load_model
from quality.matching.records import ROLES, Person, person_from

__all__ = ["MatchingError", "Decision", "ScoredPair", "link", "Model", "default_model", "load_model",
           "ROLES", "Person", "person_from"]
