"""An online shop (Shopify first; a platform is an adapter): docs/adr/0033-ecommerce-shopify-graphql.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connectors.errors import ConfigError
from connectors.shop.config import ShopConfig
from connectors.shop.records import ENTITIES
from connectors.spec import ConnectorContext, ConnectorSpec, lazy

if TYPE_CHECKING:
    from connectors.shop.source import ShopSource

__all__ = ["CONNECTOR"]


def _source(config: ShopConfig, context: ConnectorContext) -> "ShopSource":
    """Webhook receiver (when a webhook secret is set) plus reconciliation through the API."""
    from connectors.kafka_io import PositionStore, Publisher
    from connectors.shop.backfill import make_platform
    from connectors.shop.source import ShopSource

    return ShopSource(Publisher(context.target, client_id="shop-source"), PositionStore(context.target),
                      make_platform(config), config)


def _writer(config: ShopConfig, context: ConnectorContext) -> Any:
    """Fulfilments, variant prices and stock through the platform's API (docs/adr/0035)."""
    if config.platform == "shopify":
        from connectors.shop.shopify_writer import ShopifyWriter

        return ShopifyWriter(config)
    raise ConfigError("shop", [("platform", f"no writer for {config.platform!r}")])


CONNECTOR = ConnectorSpec(
    name="shop", title="Shop", config=ShopConfig, entities=ENTITIES,
    make_source=_source, make_writer=_writer, make_backfill=lazy("connectors.shop.backfill:run_backfill"),
)
