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
    raise ConfigError("shop", [(None, "the shop writer is not built yet (issue #15); "
                                      "leave shop.* out of CONNECT_SINK_OBJECTS")])


CONNECTOR = ConnectorSpec(
    name="shop", title="Shop", config=ShopConfig, entities=ENTITIES,
    make_source=_source, make_writer=_writer, make_backfill=lazy("connectors.shop.backfill:run_backfill"),
)
