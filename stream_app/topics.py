"""Topics the app owns: declared once here so every worker creates them alike at start-up.

Faust only creates topics marked internal that it subscribes to; an agent's source topic that
does not exist yet is ignored at subscription time and stays unread until a metadata refresh,
and a topic we only write to would never be created (the local broker does not auto-create).
"""

from __future__ import annotations

from typing import Any

from faust.types import TopicT

from stream_app.app import app, settings

__all__ = ["owned_topic", "declare_owned_topics", "create_owned_topics", "kept_forever", "LINK_TOPICS"]

_OWNED: list[TopicT] = []
#: the links topics (record ids a sink reports back), read from the start by a state rebuild.
#: TODO: take them from the sink registry (``SinkSpec.links_topic`` for ``LINKED_SYSTEMS`` in
#: stream_app/sinks/registry.py) once it exposes them without naming a sink object.
LINK_TOPICS = ("links.tims",)


def owned_topic(*names: str, **options: Any) -> TopicT:
    """A JSON topic (or several read as one) named ``<prefix><name>``, created by the worker."""
    options.setdefault("value_serializer", "json")
    options.setdefault("key_serializer", "raw")
    options.setdefault("partitions", settings.topic_partitions)
    options.setdefault("replicas", settings.topic_replication_factor)
    topic = app.topic(*(settings.topic(name) for name in names), internal=True, **options)
    _OWNED.append(topic)
    return topic


async def create_owned_topics() -> int:
    """Create every owned topic before a worker joins its group (``stream-app worker`` runs this
    first): topics that appear after the group's first assignment stay unassigned until the
    next metadata refresh. Returns how many topics the app owns."""
    from connectors.kafka_admin import ensure_topics

    names = [name for topic in _OWNED for name in topic.topics]
    await ensure_topics(settings.kafka_bootstrap_servers, names, partitions=settings.topic_partitions,
                        replication=settings.topic_replication_factor, keep_forever=kept_forever(names))
    return len(set(names))


def kept_forever(names: list[str]) -> list[str]:
    """Those of the owned topic ``names`` that keep their history (``retention.ms=-1``): the
    links topics, which a state rebuild reads from the start."""
    links = {settings.topic(name) for name in LINK_TOPICS}
    return [name for name in names if name in links]


@app.task
async def declare_owned_topics() -> None:
    """Create every owned topic at start-up, the ones we only write to as well: Faust itself
    declares only the topics it subscribes to."""
    for topic in _OWNED:
        await topic.maybe_declare()
