"""Assisted mappings: field pairs between two objects proposed from their names, types and sample
values, and a draft mapping file that `stream-app mappings check` accepts (docs/adr/0030)."""

from quality.suggest.catalogue import CatalogueError, fields_of, objects
from quality.suggest.scoring import Suggestion, suggest

__all__ = ["CatalogueError", "fields_of", "objects", "Suggestion", "suggest"]
