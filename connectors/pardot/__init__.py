"""Pardot (Account Engagement) API v5: prospects, visitor activities, lists."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.pardot.config import ENTITIES, PardotConfig
from connectors.spec import ConnectorContext, ConnectorSpec, lazy

if TYPE_CHECKING:
    from connectors.pardot.source import PardotSource
    from connectors.pardot.writer import PardotWriter

__all__ = ["CONNECTOR"]


def _source(config: PardotConfig, context: ConnectorContext) -> "PardotSource":
    """Pardot signs in with a Salesforce token: the source has a token provider of its own."""
    from connectors.kafka_io import PositionStore, Publisher
    from connectors.pardot.client import PardotClient, share_quota, shared_budget
    from connectors.pardot.source import PardotSource
    from connectors.retry import RetryPolicy
    from connectors.salesforce.auth import TokenProvider

    tokens = TokenProvider(context.config("salesforce"))
    budget = shared_budget(config)
    share_quota(budget, config, context.target)
    client = PardotClient(config, tokens, budget, policy=RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0))
    closing = (tokens,) if budget.sharing is None else (tokens, budget.sharing)
    return PardotSource(Publisher(context.target, client_id="pardot-source"), PositionStore(context.target),
                        client, config, closing=closing)


def _writer(config: PardotConfig, context: ConnectorContext) -> "PardotWriter":
    """Pardot writers share the process's Salesforce token with the Salesforce writers."""
    from connectors.pardot.client import share_quota, shared_budget
    from connectors.pardot.writer import PardotWriter
    from connectors.salesforce import shared_rest

    share_quota(shared_budget(config), config, context.target)
    return PardotWriter(config, shared_rest(context).tokens)


CONNECTOR = ConnectorSpec(
    name="pardot", title="Pardot", config=PardotConfig, entities=ENTITIES,
    make_source=_source, make_writer=_writer, make_backfill=lazy("connectors.pardot.backfill:run_backfill"),
)
