"""Topics the app owns: declared on the app so every worker creates them alike at start-up.

Faust only creates topics marked internal that it subscribes to; an agent's source topic that
does not exist yet is ignored at subscription time and stays unread until a metadata refresh,
and a topic we only write to would never be created (the local broker does not auto-create).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterable

from faust.exceptions import NotReady
from faust.types import AppT, TopicT

from connectors.kafka_admin import ensure_topics
from stream_app.codecs import CODEC

if TYPE_CHECKING:
    from stream_app.settings import Settings

__all__ = ["OwnedTopics", "AUDIT_CONFLICTS", "AUDIT_OPERATOR", "AUDIT_MATCH_REVIEW", "AUDIT_MERGES"]

#: the conflicts the flows resolved, one message per conflict (the flows name it the same)
AUDIT_CONFLICTS = "audit.conflicts"
#: what operators did in the console (docs/adr/0031): who, when, what
AUDIT_OPERATOR = "audit.operator"
#: borderline matches for a person to decide, and their decisions (docs/adr/0036)
AUDIT_MATCH_REVIEW = "audit.match_review"
#: every merge and unmerge of golden records (docs/adr/0036)
AUDIT_MERGES = "audit.merges"

log = logging.getLogger(__name__)


class OwnedTopics:
    """The topics one app owns, named ``<prefix><name>``; JSON values (``stream_app.codecs``: an
    unreadable value reaches the agent as ``Undecodable``) and raw keys by default.

    ``kept`` names the ones that keep their history (``retention.ms=-1``) because a state rebuild
    reads them from the start: the flows' link topics (record ids a sink reports back)."""

    def __init__(self, app: AppT, settings: "Settings") -> None:
        self.app = app
        self.settings = settings
        self._topics: dict[tuple[str, ...], TopicT] = {}
        self.kept: set[str] = set()
        #: set once :meth:`create` made every topic (then the start-up task has nothing to do)
        self.created = False
        #: compacted one-partition topics of replicated maps (stream_app/replicated.py)
        self.compacted: set[str] = set()
        #: changelogs of tables kept by direct table stages (stream_app/direct_table.py)
        self.direct_changelogs: set[str] = set()

    def topic(self, *names: str, **options: Any) -> TopicT:
        """The topic (or several read as one) named ``names``; asking twice gives the same one."""
        if names in self._topics and not options:
            return self._topics[names]
        options.setdefault("value_serializer", CODEC)
        options.setdefault("key_serializer", "raw")
        options.setdefault("partitions", self.settings.topic_partitions)
        options.setdefault("replicas", self.settings.topic_replication_factor)
        topic = self.app.topic(*(self.settings.topic(name) for name in names), internal=True, **options)
        self._topics.setdefault(names, topic)
        return topic

    def changelog(self, name: str) -> None:
        """Have ``name`` (a full name) created as a table changelog: compacted, partitioned like the topics."""
        self.direct_changelogs.add(name)

    def compact(self, name: str) -> None:
        """Have ``name`` (a full name) created compacted, with one partition."""
        self.compacted.add(name)

    def keep_history(self, names: Iterable[str]) -> None:
        """Have these topics (named without the prefix) keep their history when created."""
        self.kept.update(self.settings.topic(name) for name in names)

    @property
    def names(self) -> list[str]:
        """Every owned topic's full name."""
        return sorted({name for topic in self._topics.values() for name in topic.topics})

    async def create(self) -> int:
        """Create every owned topic before a worker joins its group (``stream-app worker`` runs
        this first): topics that appear after the group's first assignment stay unassigned until
        the next metadata refresh. Returns how many topics the app owns."""
        names, settings = self.names, self.settings
        await ensure_topics(settings.kafka_bootstrap_servers, names, partitions=settings.topic_partitions,
                            replication=settings.topic_replication_factor,
                            keep_forever=[name for name in names if name in self.kept])
        # the tables' changelogs too: two workers starting at once on a new app id must not find
        # a table's changelog missing (or with no partitions) while the other is creating it
        await ensure_topics(settings.kafka_bootstrap_servers, self.changelogs(), partitions=settings.topic_partitions,
                            replication=settings.topic_replication_factor, compacted=True)
        await ensure_topics(settings.kafka_bootstrap_servers, sorted(self.compacted), partitions=1,
                            replication=settings.topic_replication_factor, compacted=True)
        self.created = True
        return len(names)

    def changelogs(self) -> list[str]:
        """The changelog topics of the app's tables (``<app id>-<table>-changelog``): Faust's and
        the direct table stages'."""
        return sorted({table.changelog_topic.get_topic_name() for table in self.app.tables.values()}
                      | self.direct_changelogs)

    def install(self) -> None:
        """Create every owned topic at start-up, the ones we only write to as well: Faust itself
        declares only the topics it subscribes to. ``stream-app worker`` creates them before the
        worker starts (:meth:`create`); this task is the fallback when that could not reach the
        broker. A worker stopped while it runs ends it quietly (the producer is gone)."""
        async def declare_owned_topics() -> None:
            if self.created:
                return
            try:
                for topic in list(self._topics.values()):
                    await topic.maybe_declare()
            except NotReady:
                log.info("owned topics: not all declared, the worker is stopping")

        self.app.task(declare_owned_topics)
