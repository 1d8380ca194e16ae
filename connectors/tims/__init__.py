"""The TIMS ERP, through the contract in docs/tims-openapi.yaml."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.errors import ConfigError
from connectors.spec import ConnectorContext, ConnectorSpec, lazy
from connectors.tims.client import RESOURCES
from connectors.tims.config import TimsConfig

if TYPE_CHECKING:
    from connectors.tims.source import TimsSource
    from connectors.tims.writer import TimsWriter

__all__ = ["CONNECTOR"]


def _source(config: TimsConfig, context: ConnectorContext) -> "TimsSource":
    """The change-feed poller, or the webhook receiver when ``source_mode`` is ``webhook``."""
    from connectors.kafka_io import PositionStore, Publisher
    from connectors.retry import RetryPolicy
    from connectors.tims.client import TimsClient
    from connectors.tims.source import TimsSource
    from connectors.tims.webhook import TimsWebhookSource

    if config.source_mode == "webhook" and config.webhook_secret is None:
        raise ConfigError("tims", [("webhook_secret", "required in webhook mode")])
    client = TimsClient(config, policy=RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=5.0))
    publisher, positions = Publisher(context.target, client_id="tims-source"), PositionStore(context.target)
    if config.webhook_secret is None or config.source_mode == "poll":
        return TimsSource(publisher, positions, client, config)
    return TimsWebhookSource(publisher, positions, client, config, secret=config.webhook_secret.get_secret_value())


def _writer(config: TimsConfig, context: ConnectorContext) -> "TimsWriter":
    from connectors.tims.writer import TimsWriter

    return TimsWriter(config)


CONNECTOR = ConnectorSpec(
    name="tims", title="TIMS", config=TimsConfig, entities=tuple(RESOURCES),
    make_source=_source, make_writer=_writer, make_backfill=lazy("connectors.tims.backfill:run_backfill"),
    reports_links=True,
)
