"""Abandoned carts: a shop checkout without an order after a wait reaches the buyer's Pardot
prospect (cart value, items, recovery URL, when) and a nurture list; the order clears both
(docs/adr/0035). Rules in ``mappings/abandoned_carts.yaml``.
"""

from topologies.abandoned_carts.agents import FLOW_NAME, SOURCE_TOPICS, STAGE_TOPICS, TABLES, install
from topologies.abandoned_carts.cart import DEFAULT_MAPPING_DIR, CartMapping
from topologies.flow import Flow
from topologies.mapping_file import OneFileMappings

__all__ = ["FLOW"]

FLOW = Flow(name=FLOW_NAME, source_topics=SOURCE_TOPICS, internal_topics=STAGE_TOPICS, tables=TABLES,
            direct_stages=(("ingest", SOURCE_TOPICS),),
            sources=("shop", "pardot"), install=install, mappings=DEFAULT_MAPPING_DIR,
            mapping_tool=OneFileMappings("abandoned_carts", CartMapping),
            # it writes custom prospect fields that must exist in Pardot first (as the engagement flows)
            by_default=False)
