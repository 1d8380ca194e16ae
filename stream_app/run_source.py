"""Run one source as its own process: ``stream-app source salesforce|tims|pardot``.

Sources run outside the Faust worker (docs/adr/0004-sources-as-processes.md): one instance per
system, stopped by SIGTERM/SIGINT after the batch in flight is acked and its position saved.
Each system's module provides ``build_source(settings, target) -> connectors.source.Source``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal

from connectors.kafka_io import KafkaTarget
from connectors.source import Source
from stream_app.logs import configure as configure_logging
from stream_app.settings import Settings

__all__ = ["SYSTEMS", "kafka_target", "build", "run_source"]

SYSTEMS = ("salesforce", "tims", "pardot")
log = logging.getLogger(__name__)


def kafka_target(settings: Settings) -> KafkaTarget:
    return KafkaTarget(settings.kafka_bootstrap_servers, settings.topic_prefix,
                       settings.topic_partitions, settings.topic_replication_factor)


def build(system: str, settings: Settings) -> Source:
    if system not in SYSTEMS:
        raise ValueError(f"unknown source {system!r}; choose one of {', '.join(SYSTEMS)}")
    module = importlib.import_module(f"connectors.{system}.source")
    return module.build_source(settings, kafka_target(settings))


async def run_source(source: Source, metrics_port: int | None = None, metrics_host: str = "127.0.0.1",
                     log_level: str = "info") -> None:
    """Run until SIGTERM/SIGINT; with ``metrics_port``, serve /metrics there (0: any free port)."""
    configure_logging(log_level)
    if metrics_port is not None:
        from stream_app.metrics_server import serve_source_metrics

        serve_source_metrics(source, metrics_port, metrics_host)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, source.stop)
    await source.start()
    log.info("source %s started", source.system)
    try:
        await source.run()
    finally:
        await source.close()
        log.info("source %s stopped after publishing %d events", source.system, source.published)
