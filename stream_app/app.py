"""The Faust application, built by a factory: importing this module connects to nothing.

:func:`create_app` returns a :class:`ConnectApp` configured from validated settings, with every
part of the worker installed on it: the owned topics, the health-check agent, the flows from
the flow registry (``topologies.registry``), the sinks named by ``CONNECT_SINK_OBJECTS``, the
metrics and the health endpoints. ``stream-app`` (``stream_app.cli:main``) builds one and runs its Faust CLI, so
``stream-app worker`` runs a worker and the project's commands (``stream_app.commands``) live
beside it. Tests build their own app the same way.
"""

from __future__ import annotations

from typing import Any

import faust

from stream_app import codecs, diagnostics, faust_fixes, health
from stream_app import metrics as worker_metrics
from stream_app.flows import install_flows
from stream_app.logs import configure
from stream_app.settings import Settings
from stream_app.sinks.agents import install_sinks
from stream_app.topics import OwnedTopics

__all__ = ["ConnectApp", "create_app", "COMMAND_MODULES"]

#: modules whose ``@command`` functions join the CLI (Faust finds them by scanning these)
COMMAND_MODULES = ["stream_app.commands"]


class ConnectApp(faust.App):
    """A Faust app that carries what the project's parts share: the settings, the topics it
    owns and what was installed on it (flows, sinks), so none of it is a module global."""

    settings: Settings
    owned: OwnedTopics
    #: installed parts by name ("flow:customer_sync", "sinks", ...), for commands and tests
    parts: dict[str, Any]


def _faust_app(config: Settings) -> ConnectApp:
    app = ConnectApp(
        config.app_id,
        version=config.app_version,
        broker=config.broker_url,
        store=config.store.value,
        datadir=str(config.data_dir),
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        topic_partitions=config.topic_partitions,
        topic_replication_factor=config.topic_replication_factor,
        table_standby_replicas=config.table_standby_replicas,
        broker_commit_interval=config.broker_commit_interval,
        broker_max_poll_records=config.max_poll_records,
        broker_session_timeout=config.broker_session_timeout,
        # a topic created after the group's assignment is picked up within this time
        consumer_metadata_max_age_ms=30_000,
        broker_heartbeat_interval=config.broker_heartbeat_interval,
        producer_linger=config.producer_linger,
        web_host=config.web_host,
        web_bind=config.web_host,
        web_port=config.web_port,
        web_tables_enabled=False,
        autodiscover=COMMAND_MODULES,
        # Faust's CLI would otherwise take the console script's name for a module to scan
        origin=COMMAND_MODULES[0],
    )
    app.settings = config
    app.owned = OwnedTopics(app, config)
    app.parts = {}
    return app


def create_app(config: Settings, *, flows: bool = True, sinks: bool = True, metrics: bool = True) -> ConnectApp:
    """A worker app with its parts installed (no I/O happens here: Faust connects when a
    worker starts). Tests switch parts off to build just what they exercise."""
    faust_fixes.apply()
    codecs.register()
    app = _faust_app(config)
    diagnostics.install(app)
    if flows:
        app.parts.update(install_flows(app))
    if sinks:
        app.parts["sinks"] = install_sinks(app)
    if metrics:
        worker_metrics.install(app)
    health.install(app)
    app.owned.install()

    async def mask_personal_data_in_logs() -> None:
        """Runs once the worker has set up its logging: mask emails and phones on every handler."""
        configure(None)

    app.task(mask_personal_data_in_logs)
    return app
