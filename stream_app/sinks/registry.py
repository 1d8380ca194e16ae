"""Which sinks run in this worker, how they batch and retry, and which writer each one gets.

``CONNECT_SINK_OBJECTS`` lists ``<system>.<object>`` pairs (``salesforce.Contact,tims.customer``);
each gets one agent on ``sink.<system>.<object>``. Empty (the default) runs no sink, so a
worker without target credentials still starts. Writers are picked by system and built here,
at start-up, so a missing writer module or a wrong connector setting stops the worker with a
message naming what to fix instead of failing on the first command.

Every Salesforce writer in the process shares one :class:`SalesforceRest`: one OAuth token,
one retry policy and one API budget (``Sforce-Limit-Info``), as the daily quota is the org's.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, get_args

from connectors.budget import ApiBudget
from connectors.envelope import System
from connectors.retry import RetryPolicy
from connectors.salesforce.auth import TokenProvider
from connectors.salesforce.client import SalesforceRest
from connectors.sink import Writer
from stream_app.settings import Settings, SettingsError, env_name, pardot_config, salesforce_config, tims_config

__all__ = [
    "SinkSpec", "SinkOptions", "enabled_sinks", "sink_options", "build_writer", "shared_salesforce",
    "LINKED_SYSTEMS", "SYSTEMS",
]

SYSTEMS: tuple[str, ...] = get_args(System)
#: systems whose new record ids flow back to the topologies on ``links.<system>``
LINKED_SYSTEMS = frozenset({"tims"})



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
        return f"dlq.{self.system}"

    @property
    def links_topic(self) -> str | None:
        return f"links.{self.system}" if self.system in LINKED_SYSTEMS else None


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
    defaults = SinkOptions()
    return SinkOptions(
        batch_size=settings.sink_batch_size,
        linger=settings.sink_linger,
        max_attempts=settings.sink_max_attempts,
        retry_base_delay=settings.sink_retry_base_delay,
        retry_max_delay=settings.sink_retry_max_delay,
    )


_SALESFORCE: dict[str, SalesforceRest] = {}


def shared_salesforce(settings: Settings) -> SalesforceRest:
    """The process's one Salesforce REST client (token, retry policy and API budget)."""
    if "rest" not in _SALESFORCE:
        config = salesforce_config(settings)
        _SALESFORCE["rest"] = SalesforceRest(config, TokenProvider(config), ApiBudget("salesforce"))
    return _SALESFORCE["rest"]


def _salesforce_writer(settings: Settings) -> Writer:
    from connectors.salesforce.writer import SalesforceWriter

    return SalesforceWriter(shared_salesforce(settings))


def _tims_writer(settings: Settings) -> Writer:
    module = _writer_module("tims")
    return module.TimsWriter(tims_config(settings))  # type: ignore[no-any-return]


def _pardot_writer(settings: Settings) -> Writer:
    module = _writer_module("pardot")
    return module.PardotWriter(pardot_config(settings), shared_salesforce(settings).tokens)  # type: ignore[no-any-return]


def _writer_module(system: str) -> Any:
    name = f"connectors.{system}.writer"
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise SettingsError(
            f"invalid settings:\n  {env_name('sink_objects')}: enables {system} sinks, but their writer "
            f"({name}) cannot be imported: {exc}") from exc


_FACTORIES: dict[str, Callable[[Settings], Writer]] = {
    "salesforce": _salesforce_writer,
    "tims": _tims_writer,
    "pardot": _pardot_writer,
}


def build_writer(spec: SinkSpec, settings: Settings) -> Writer:
    """The writer for one sink; SettingsError names the setting (or missing module) to fix."""
    writer = _FACTORIES[spec.system](settings)
    if writer.system != spec.system:
        raise SettingsError(f"the {spec.system} sink got a writer for {writer.system}")
    return writer
