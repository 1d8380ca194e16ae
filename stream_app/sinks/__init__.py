"""Sinks: agents that turn sink commands into API calls on Salesforce, TIMS and Pardot.

``registry`` decides which sinks run and builds their writers, ``engine`` batches, guards
versions, retries and builds dead letters without Kafka, and ``agents`` wires both into the
Faust app. The command contract and the DLQ are described in docs/adr/0007-sinks.md.
"""

__all__: list[str] = []
