"""Salesforce: OAuth, REST client, CDC source over the Pub/Sub API, sObject sink."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.salesforce.config import SalesforceConfig
from connectors.spec import ConnectorContext, ConnectorSpec, lazy

if TYPE_CHECKING:
    from connectors.salesforce.client import SalesforceRest
    from connectors.salesforce.source import SalesforceCdcSource
    from connectors.salesforce.writer import SalesforceWriter

__all__ = ["CONNECTOR", "shared_rest"]


def shared_rest(context: ConnectorContext) -> "SalesforceRest":
    """The process's one Salesforce REST client: one OAuth token, one retry policy and one API
    budget (``Sforce-Limit-Info``), as the daily quota is the org's. Pardot uses its token too."""

    def build() -> "SalesforceRest":
        from connectors.budget import ApiBudget
        from connectors.salesforce.auth import TokenProvider
        from connectors.salesforce.client import SalesforceRest

        config = context.config("salesforce")
        return SalesforceRest(config, TokenProvider(config), ApiBudget("salesforce"))

    return context.shared("salesforce.rest", build)  # type: ignore[no-any-return]


def _source(config: SalesforceConfig, context: ConnectorContext) -> "SalesforceCdcSource":
    from connectors.kafka_io import PositionStore, Publisher
    from connectors.salesforce.auth import TokenProvider
    from connectors.salesforce.client import SalesforceRest
    from connectors.salesforce.pubsub import PubSubClient
    from connectors.salesforce.source import SalesforceCdcSource

    tokens = TokenProvider(config)
    return SalesforceCdcSource(Publisher(context.target, client_id="salesforce-source"), PositionStore(context.target),
                               PubSubClient(config, tokens), SalesforceRest(config, tokens), config)


def _writer(config: SalesforceConfig, context: ConnectorContext) -> "SalesforceWriter":
    from connectors.salesforce.writer import SalesforceWriter

    return SalesforceWriter(shared_rest(context))


CONNECTOR = ConnectorSpec(
    name="salesforce", title="Salesforce", config=SalesforceConfig,
    entities=SalesforceConfig.model_fields["entities"].default,
    make_source=_source, make_writer=_writer, make_backfill=lazy("connectors.salesforce.backfill:run_backfill"),
)
