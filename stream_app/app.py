"""The Faust application, built by a factory: importing this module connects to nothing.

:func:`create_app` returns a :class:`ConnectApp` configured from validated settings, with every
part of the worker installed on it: the owned topics, the health-check agent, the flows from
the flow registry (``topologies.registry``), the sinks named by ``CONNECT_SINK_OBJECTS``, the
metrics and the health endpoints. ``stream-app`` (``stream_app.cli:main``) builds one and runs its Faust CLI, so
``stream-app worker`` runs a worker and the project's commands (``stream_app.commands``) live
beside it. Tests build their own app the same way.
"""

from __future__ import annotations

import functools
import random
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.types.auth import CredentialsT

from connectors import kafka_security
from connectors.kafka_limits import MessageLimits
from connectors.kafka_security import KafkaSecurity
from stream_app import codecs, diagnostics, faust_fixes, health
from stream_app import metrics as worker_metrics
from stream_app.console import install_link as install_console_link
from stream_app.flows import install_flows
from stream_app.logs import configure
from stream_app.settings import Settings
from stream_app.shutdown import ConnectWorker
from stream_app.sinks.agents import install_sinks
from stream_app.topics import AUDIT_MATCH_REVIEW, AUDIT_MERGES, AUDIT_OPERATOR, OwnedTopics

__all__ = ["ConnectApp", "create_app", "COMMAND_MODULES"]

#: modules whose ``@command`` functions join the CLI (Faust finds them by scanning these)
COMMAND_MODULES = ["stream_app.commands"]
#: the worker's web server reads no request bodies (its pages are GETs); one larger than this is
#: refused with 413 should a page ever read one (docs/adr/0023)
WEB_MAX_BODY = 64 * 1024


class ConnectApp(faust.App):
    """A Faust app that carries what the project's parts share: the settings, the topics it
    owns and what was installed on it (flows, sinks), so none of it is a module global."""

    settings: Settings
    owned: OwnedTopics
    #: installed parts by name ("flow:customer_sync", "sinks", ...), for commands and tests
    parts: dict[str, Any]
    #: the most bytes a message may have on each topic, checked before every send (docs/adr/0020)
    limits: MessageLimits
    #: the consumer groups of the flows' direct stages and the topics each reads (docs/adr/0028)
    direct_groups: dict[str, list[str]] = {}
    #: the direct stages running on this worker (``/readyz`` reports their state)
    direct_stages: list[Any] = []


def _faust_credentials(security: KafkaSecurity) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for the process's Kafka security (None for PLAINTEXT)."""
    if security.uses_sasl:
        assert security.password is not None
        return faust.SASLCredentials(username=security.username, password=security.password.get_secret_value(),
                                     mechanism=security.mechanism.value, ssl_context=security.ssl_context())
    if security.uses_tls:
        return faust.SSLCredentials(security.ssl_context())
    return None


@functools.lru_cache(maxsize=200_000)
def _key_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


class KeyPartitioner:
    """Kafka's default partitioner (murmur2 of the key, as the Java client and aiokafka's
    ``DefaultPartitioner``, so keys land where other clients put them), with the hashes of recent
    keys remembered: aiokafka computes murmur2 in Python, 7 % of the worker's CPU in a profile of
    the customer sync, and the keys (customer keys, record ids) repeat (docs/adr/0038)."""

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        return all_partitions[_key_hash(bytes(key)) % len(all_partitions)]


def _faust_app(config: Settings) -> ConnectApp:
    app = ConnectApp(
        config.app_id,
        version=config.app_version,
        broker=config.broker_url,
        broker_credentials=_faust_credentials(config.kafka_security()),
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
        producer_partitioner=KeyPartitioner(),
        web_host=config.web_host,
        web_bind=config.web_host,
        web_port=config.web_port,
        web_tables_enabled=False,
        web_application_options={"client_max_size": WEB_MAX_BODY},
        # its stop has a deadline: a worker whose broker is gone still exits (docs/adr/0024)
        Worker=ConnectWorker,
        autodiscover=COMMAND_MODULES,
        # Faust's CLI would otherwise take the console script's name for a module to scan
        origin=COMMAND_MODULES[0],
    )
    app.settings = config
    app.owned = OwnedTopics(app, config)
    app.limits = MessageLimits(config.kafka_bootstrap_servers, producer_limit=app.conf.producer_max_request_size)
    app.parts = {}
    return app


def create_app(config: Settings, *, flows: bool = True, sinks: bool = True, metrics: bool = True) -> ConnectApp:
    """A worker app with its parts installed (no I/O happens here: Faust connects when a
    worker starts). Tests switch parts off to build just what they exercise."""
    faust_fixes.apply()
    codecs.register()
    # every Kafka client this process creates, ours and Faust's, uses the same security
    kafka_security.use(config.kafka_security())
    app = _faust_app(config)
    diagnostics.install(app)
    if flows:
        app.parts.update(install_flows(app))
    if sinks:
        app.parts["sinks"] = install_sinks(app)
    if metrics:
        worker_metrics.install(app)
    health.install(app)
    install_console_link(app)
    # the console writes it; the worker creates it with the rest, so it exists before any action
    app.owned.topic(AUDIT_OPERATOR)
    app.owned.keep_history([AUDIT_OPERATOR, AUDIT_MATCH_REVIEW, AUDIT_MERGES])  # audit records stay
    app.owned.install()

    async def mask_personal_data_in_logs() -> None:
        """Runs once the worker has set up its logging: mask emails and phones on every handler."""
        configure(None)

    app.task(mask_personal_data_in_logs)
    return app
