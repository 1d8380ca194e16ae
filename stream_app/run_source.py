"""Run one source as its own process: ``stream-app source salesforce|tims|pardot``.

Sources run outside the Faust worker (docs/adr/0004-sources-as-processes.md): one instance per
system, stopped by SIGTERM/SIGINT after the batch in flight is acked and its position saved.
Each system's connector (connectors/registry.py) provides ``make_source(config, context)``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, Sequence

from connectors import registry
from connectors.errors import ConfigError
from connectors.kafka_io import KafkaTarget
from connectors.source import Source
from connectors.spec import ConnectorContext
from stream_app.health import HEALTHZ, READYZ, LoopProbe, source_readiness
from stream_app.logs import configure as configure_logging
from stream_app.settings import Settings, config_error, lenient_settings
from stream_app.shutdown import ShutdownDeadline

__all__ = ["SYSTEMS", "kafka_target", "connector_context", "build", "backfill", "run_source"]

SYSTEMS: tuple[str, ...] = registry.names()
log = logging.getLogger(__name__)


def kafka_target(settings: Settings) -> KafkaTarget:
    return KafkaTarget(settings.kafka_bootstrap_servers, settings.topic_prefix,
                       settings.topic_partitions, settings.topic_replication_factor)


def connector_context(settings: Settings, cache: dict[str, Any] | None = None) -> ConnectorContext:
    """What connectors may ask of this process; ``cache`` holds what they share (one per process)."""
    return ConnectorContext(kafka_target(settings), settings.connector_config, {} if cache is None else cache)


def build(system: str, settings: Settings) -> Source:
    """The source of ``system``; SettingsError names the setting to fix."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown source {system!r}; choose one of {', '.join(SYSTEMS)}")
    try:
        return registry.connector(system).make_source(settings.connector_config(system), connector_context(settings))
    except ConfigError as exc:
        raise config_error(exc) from None


async def backfill(system: str, settings: Settings, entities: Sequence[str] | None = None) -> int:
    """``stream-app backfill <system>``: the events published; SettingsError names the setting to fix."""
    spec = registry.connector(system)
    try:
        return await spec.make_backfill(settings.connector_config(system), connector_context(settings), entities)
    except ConfigError as exc:
        raise config_error(exc) from None


async def run_source(source: Source, metrics_port: int | None = None, metrics_host: str = "127.0.0.1",
                     log_level: str = "info", health: Settings | None = None) -> None:
    """Run until SIGTERM/SIGINT; with ``metrics_port``, serve /metrics, /healthz and /readyz
    there (0: any free port), judged by the limits in ``health`` (default: the settings' defaults)."""
    configure_logging(log_level)
    limits = health or lenient_settings()
    probe = LoopProbe(limits.health_loop_lag_limit)
    started = False
    if metrics_port is not None:
        from stream_app.metrics_server import serve_source_metrics

        serve_source_metrics(source, metrics_port, metrics_host, health={
            HEALTHZ: probe.report,
            READYZ: lambda: source_readiness(source, started, limits.source_read_stale_after)})
    loop = asyncio.get_running_loop()
    # as a worker's (stream_app/shutdown.py): with the broker gone, the batch in flight waits for
    # acks that never come and the producer's close for a flush; past the grace the process
    # ends with code 75, and the source reads again from its saved position when started
    deadline = ShutdownDeadline(limits.shutdown_grace, lambda: [
        f"source {source.system}: the batch in flight (its position is not saved: read again at the next start)"])

    def stop(sig: signal.Signals) -> None:
        deadline.arm(f"{sig.name} received")
        source.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    probing = asyncio.create_task(probe.run(), name="loop probe")
    try:
        await source.start()
        started = True
        log.info("source %s started", source.system)
        await source.run()
    finally:
        started = False
        probing.cancel()
        await source.close()
        deadline.disarm()
        log.info("source %s stopped after publishing %d events", source.system, source.published)
