"""The Faust application: one app, flows as modules, settings validated at import.

``stream-app`` (``stream_app.cli:main``) is this app's own Faust CLI, so ``stream-app worker``
runs a worker and the project's commands (``kafka``, ``sandbox`` ...) live beside it.
"""

from __future__ import annotations

import faust

from stream_app import faust_fixes
from stream_app.settings import Settings, load_settings

__all__ = ["app", "settings", "create_app"]

#: Modules that declare agents, tables and commands; imported when the app finalises.
FLOW_MODULES = [
    "stream_app.diagnostics",
    "topologies.customer_sync.agents",
    "stream_app.commands",
    "stream_app.sinks.agents",
    "stream_app.metrics",
]


def create_app(config: Settings) -> faust.App:
    """A Faust app configured from validated settings (no I/O happens here)."""
    faust_fixes.apply()
    return faust.App(
        config.app_id,
        version=config.app_version,
        broker=config.broker_url,
        store=config.store.value,
        datadir=str(config.data_dir),
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        topic_partitions=config.topic_partitions,
        topic_replication_factor=config.topic_replication_factor,
        broker_commit_interval=config.broker_commit_interval,
        broker_max_poll_records=config.max_poll_records,
        broker_session_timeout=config.broker_session_timeout,
        # a topic created after the group's assignment is picked up within this time
        consumer_metadata_max_age_ms=30_000,
        broker_heartbeat_interval=config.broker_heartbeat_interval,
        web_host=config.web_host,
        web_bind=config.web_host,
        web_port=config.web_port,
        web_tables_enabled=False,
        autodiscover=FLOW_MODULES,
        origin="stream_app",
    )


settings = load_settings()
app = create_app(settings)


@app.task
async def mask_personal_data_in_logs() -> None:
    """Runs once the worker has set up its logging: mask emails and phones on every handler."""
    from stream_app.logs import configure

    configure(None)
