"""Which sinks run in this worker, how they batch and retry, and which writer each one gets.

``CONNECT_SINK_OBJECTS`` lists ``<system>.<object>`` pairs (``salesforce.Contact,tims.customer``);
each gets one agent on ``sink.<system>.<object>``. Empty (the default) runs no sink, so a
worker without target credentials still starts. Writers are picked by system and built here,
at start-up by the connector's ``make_writer`` (connectors/registry.py), so a missing writer
module or a wrong connector setting stops the worker with a message naming what to fix instead
of failing on the first command.

Writers get one :class:`ConnectorContext` per app, whose cache holds what they share: every
Salesforce and Pardot writer uses one Salesforce token, retry policy and API budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors import registry
from connectors.errors import ConfigError
from connectors.retry import RetryPolicy
from connectors.sink import Writer
from connectors.spec import ConnectorContext
from stream_app.settings import Settings, SettingsError, config_error, env_name

__all__ = [
    "SinkSpec", "SinkOptions", "enabled_sinks", "sink_options", "build_writer",
    "LINKED_SYSTEMS", "SYSTEMS",
]

SYSTEMS: tuple[str, ...] = registry.names()
#: systems whose new record ids flow back to the topologies on ``links.<system>``
LINKED_SYSTEMS = frozenset(spec.name for spec in registry.connectors().values() if spec.reports_links)


@dataclass(frozen=True)
class SinkSpec:
    system: str
    object: str

    @property
    def topic(self) -> str:
        return f"sink.{self.system}.{self.object}"

    @property
    def agent_name(self) -> str:
        return f"sink-{self.system}-{self.object}"

    @property
    def dlq_topic(self) -> str:
        return registry.connector(self.system).dlq_topic

    @property
    def links_topic(self) -> str | None:
        return registry.connector(self.system).links_topic


@dataclass(frozen=True)
class SinkOptions:
    #: most commands one batch takes from the topic (before folding per record)
    batch_size: int = 500
    #: seconds a batch waits to fill before it is written anyway
    linger: float = 0.5
    #: attempts per write (retryable failures); then the DLQ
    max_attempts: int = 8
    retry_base_delay: float = 0.2
    retry_max_delay: float = 30.0

    def policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.max_attempts, base_delay=self.retry_base_delay,
                           max_delay=self.retry_max_delay)


def enabled_sinks(settings: Settings) -> list[SinkSpec]:
    raw = settings.sink_objects
    specs: list[SinkSpec] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        system, dot, sobject = item.partition(".")
        if not dot or not sobject or system not in SYSTEMS:
            raise SettingsError(
                f"invalid settings:\n  {env_name('sink_objects')}: {item!r} is not <system>.<object> "
                f"with system one of {', '.join(SYSTEMS)}")
        spec = SinkSpec(system, sobject)
        if spec in specs:
            raise SettingsError(f"invalid settings:\n  {env_name('sink_objects')}: {item!r} is listed twice")
        specs.append(spec)
    return specs


def sink_options(settings: Settings) -> SinkOptions:
    return SinkOptions(
        batch_size=settings.sink_batch_size,
        linger=settings.sink_linger,
        max_attempts=settings.sink_max_attempts,
        retry_base_delay=settings.sink_retry_base_delay,
        retry_max_delay=settings.sink_retry_max_delay,
    )


def build_writer(spec: SinkSpec, settings: Settings, context: ConnectorContext) -> Writer:
    """The writer for one sink; SettingsError names the setting (or missing module) to fix.
    ``context`` is the process's (``stream_app.run_source.connector_context``): writers share
    what its cache holds, e.g. every Salesforce and Pardot writer one Salesforce token."""
    connector = registry.connector(spec.system)
    try:
        writer = connector.make_writer(settings.connector_config(spec.system), context)
    except (ConfigError, SettingsError) as exc:
        problems = str(config_error(exc) if isinstance(exc, ConfigError) else exc).removeprefix("invalid settings:\n")
        raise SettingsError(
            f"invalid settings:\n  {env_name('sink_objects')} names {spec.system}.{spec.object}, whose writer needs "
            f"the {spec.system} settings:\n{problems}\n  Set them, or take {spec.system}.* out of "
            f"{env_name('sink_objects')}") from None
    except ImportError as exc:
        raise SettingsError(
            f"invalid settings:\n  {env_name('sink_objects')}: enables {spec.system} sinks, but their writer "
            f"({exc.name}) cannot be imported: {exc}") from exc
    if writer.system != spec.system:
        raise SettingsError(f"the {spec.system} sink got a writer for {writer.system}")
    return writer
