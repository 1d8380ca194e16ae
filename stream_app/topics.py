"""Topics the app owns: declared once here so every worker creates them alike at start-up.

Faust only creates topics marked internal; an agent's source topic that does not exist yet is
ignored at subscription time and would stay unread until a metadata refresh. Declaring our
topics internal makes the worker create them with the configured partitions before it joins.
"""

from __future__ import annotations

from typing import Any

from faust.types import TopicT

from stream_app.app import app, settings

__all__ = ["owned_topic"]


def owned_topic(name: str, **options: Any) -> TopicT:
    """A JSON topic named ``<prefix><name>``, created by the worker if missing."""
    options.setdefault("value_serializer", "json")
    options.setdefault("key_serializer", "raw")
    options.setdefault("partitions", settings.topic_partitions)
    options.setdefault("replicas", settings.topic_replication_factor)
    return app.topic(settings.topic(name), internal=True, **options)
