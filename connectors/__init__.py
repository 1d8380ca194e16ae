"""Connectors to the external systems: one package per system (auth, client, source, sink)."""
