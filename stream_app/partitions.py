"""``stream-app partitions --to N``: grow every topic the app owns to N partitions.

Partitions bound the number of useful workers (README, Running it always-on). Kafka only adds
partitions, and adding them sends keys to other partitions, so every table keyed by them is
wrong until rebuilt: this command does the topic part of the change and refuses to do it while
it would lose or misplace anything:

- every consumer group of the app (Faust's and the direct stages') must have no live member
  (stop the workers; the sources too, so that nothing is written meanwhile);
- the workers must have read everything they read (lag 0), unless ``force``;
- no topic may have more partitions than asked (Kafka cannot take partitions away).

The topics: the flows' inputs and stage topics and every ``src.``, ``sink.``, ``links.``,
``dlq.``, ``quarantine.`` and ``diag.`` topic under the app's prefix. Not the table changelogs:
the next app version (``CONNECT_APP_VERSION``) makes new ones with the new count, which the
rebuild that must follow fills. Not the one-partition topics (replicated maps, audit logs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from connectors.kafka_admin import KafkaAdmin
from stream_app import flows
from stream_app.diagnostics import PING_TOPIC
from stream_app.rebuild import group_id

if TYPE_CHECKING:
    from stream_app.settings import Settings

__all__ = ["PartitionsError", "PartitionPlan", "plan_partitions", "grow_partitions", "FAMILIES"]

#: the families of owned topics whose partition count follows ``CONNECT_TOPIC_PARTITIONS``
FAMILIES = ("src", "sink", "links", "dlq", "quarantine", "diag")


class PartitionsError(RuntimeError):
    """The change is refused; the message says why and what to do."""


@dataclass(frozen=True)
class PartitionPlan:
    #: topic → (partitions now, partitions wanted), for the topics that grow
    grow: dict[str, tuple[int, int]]
    #: topics already at the count
    unchanged: list[str]

    def lines(self) -> list[str]:
        out = [f"{topic}: {now} → {wanted} partitions" for topic, (now, wanted) in sorted(self.grow.items())]
        return out + [f"{len(self.unchanged)} topic(s) already have that many"] if self.unchanged else out


async def plan_partitions(settings: "Settings", to: int) -> PartitionPlan:
    if to < 1:
        raise PartitionsError(f"--to {to}: a topic has at least one partition")
    prefix = re.escape(settings.topic_prefix)
    family = re.compile(rf"^{prefix}({'|'.join(FAMILIES)})\.")
    async with KafkaAdmin(settings.kafka_bootstrap_servers) as kafka:
        existing = await kafka.list_topics()
        owned = sorted({t for t in existing if family.match(t)}
                       | {t for t in [*flows.internal_topics(settings), settings.topic(PING_TOPIC)] if t in existing})
        counts: dict[str, int] = {}
        for tp in await kafka.partitions(owned):
            counts[tp.topic] = counts.get(tp.topic, 0) + 1
    shrink = sorted(t for t, n in counts.items() if n > to)
    if shrink:
        raise PartitionsError(f"{len(shrink)} topic(s) have more than {to} partitions ({', '.join(shrink[:5])}"
                              f"{' …' if len(shrink) > 5 else ''}): Kafka cannot take partitions away; ask for at "
                              f"least {max(counts[t] for t in shrink)}")
    return PartitionPlan(grow={t: (n, to) for t, n in counts.items() if n < to},
                         unchanged=sorted(t for t, n in counts.items() if n == to))


async def grow_partitions(settings: "Settings", plan: PartitionPlan, *, force: bool = False) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    groups = flows.AppGroups.of(settings, group_id(settings))
    live = await groups.live(bootstrap)
    if live:
        raise PartitionsError(f"the app's workers are running (live members in {', '.join(live)}): stop every "
                              "worker and source first")
    read = [t for t in plan.grow if not any(t.startswith(settings.topic(f"{f}.")) for f in ("dlq", "quarantine"))]
    behind = {tp: lag for tp, lag in (await groups.lag(bootstrap, read)).items() if lag > 0} if read else {}
    if behind and not force:
        total = sum(behind.values())
        raise PartitionsError(f"the workers have {total} message(s) left to read on {len({tp.topic for tp in behind})} "
                              "topic(s): let them finish (start them, wait for lag 0, stop them), or pass --force "
                              "to go ahead (those messages may then be read out of order per key)")
    async with KafkaAdmin(bootstrap) as kafka:
        await kafka.add_partitions({topic: wanted for topic, (_, wanted) in plan.grow.items()})
