"""Data quality: probabilistic record linkage (``quality.matching``) and assisted mappings
(``quality.suggest``).

Pure libraries, below the flows and the app (pyproject.toml [tool.importlinter]): the CLI and,
later, the customer sync's stages use them; they know nothing of Kafka or Faust.
"""
