"""What a connector is to the app: one frozen :class:`ConnectorSpec` per external system.

Lifecycle, as the app drives it:

1. start-up: the app reads every registered spec (connectors/registry.py) and offers each field
   ``f`` of ``spec.config`` as the setting ``<name>_<f>`` (``CONNECT_<NAME>_<F>``);
2. when a process needs the system, it validates the config (``spec.config.load``), builds a
   :class:`ConnectorContext` and calls a factory: ``make_source(config, context)`` for
   ``stream-app source <name>``, ``make_writer(config, context)`` once per sink at worker start,
   ``await make_backfill(config, context, entities)`` for ``stream-app backfill <name>``;
3. the source, writer or backfill then follows its own lifecycle (connectors/source.py,
   connectors/sink.py); a factory that finds a setting wrong raises ``ConfigError``.

Factories import their modules when called, so reading the registry stays cheap and a broken
writer module only stops the processes that need it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

if TYPE_CHECKING:
    from connectors.config import ConnectorConfig
    from connectors.kafka_io import KafkaTarget
    from connectors.sink import Writer
    from connectors.source import Source

__all__ = ["ConnectorSpec", "ConnectorContext", "lazy"]


@dataclass
class ConnectorContext:
    """What a factory may ask of the process: the Kafka target, any registered system's validated
    config, and objects shared by everything in the process (one Salesforce token, say)."""

    target: "KafkaTarget"
    configs: Callable[[str], "ConnectorConfig"]
    cache: dict[str, Any] = field(default_factory=dict)

    def config(self, system: str) -> Any:
        return self.configs(system)

    def shared(self, key: str, build: Callable[[], Any]) -> Any:
        """The one ``key`` object of this process, built on first use."""
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]


@dataclass(frozen=True)
class ConnectorSpec:
    #: the system's name: topics ``src.<name>.*``, ``sink.<name>.*``, settings ``CONNECT_<NAME>_*``
    name: str
    #: shown to people (dashboards, reports)
    title: str
    config: type["ConnectorConfig"]
    #: what the source can read (Salesforce: the default list; any sObject may be configured)
    entities: tuple[str, ...]
    make_source: Callable[[Any, ConnectorContext], "Source"]
    make_writer: Callable[[Any, ConnectorContext], "Writer"]
    #: returns the number of events published
    make_backfill: Callable[[Any, ConnectorContext, Sequence[str] | None], Awaitable[int]]
    #: the sink reports new record ids on ``links.<name>`` (the topologies link them to customers)
    reports_links: bool = False

    @property
    def dlq_topic(self) -> str:
        return f"dlq.{self.name}"

    @property
    def quarantine_topic(self) -> str:
        """Where its source (and webhook) sets aside what it cannot publish (``Publisher.quarantine``)."""
        return f"quarantine.{self.name}"

    @property
    def links_topic(self) -> str | None:
        return f"links.{self.name}" if self.reports_links else None


def lazy(target: str) -> Callable[..., Any]:
    """``"package.module:function"`` as a callable that imports the module on first call."""
    module_name, _, attribute = target.partition(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module_name), attribute)(*args, **kwargs)

    call.__qualname__ = call.__name__ = attribute
    return call
