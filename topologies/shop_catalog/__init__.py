"""Shop catalogue: TIMS item prices and stock levels reach the shop's variants with the same
SKU; TIMS owns price and stock, the shop its titles and images (docs/adr/0035); promoted items
reach Pardot as custom redirects (docs/adr/0039). Rules in ``mappings/shop_catalog.yaml``.
"""

from topologies.flow import Flow
from topologies.mapping_file import OneFileMappings
from topologies.shop_catalog.agents import FLOW_NAME, SOURCE_TOPICS, STAGE_TOPICS, TABLES, install
from topologies.shop_catalog.catalog import DEFAULT_MAPPING_DIR, CatalogMapping

__all__ = ["FLOW"]

FLOW = Flow(name=FLOW_NAME, source_topics=SOURCE_TOPICS, internal_topics=STAGE_TOPICS, tables=TABLES,
            direct_stages=(("ingest", SOURCE_TOPICS),),
            sources=("shop", "tims"), install=install, mappings=DEFAULT_MAPPING_DIR,
            mapping_tool=OneFileMappings("shop_catalog", CatalogMapping),
            # it needs the shop connector set up (its source and shop.* sinks): named in CONNECT_FLOWS
            by_default=False)
