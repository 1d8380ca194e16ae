"""Web orders: a shop order becomes one TIMS sales order (the buyer by the customer master's link
of its shop customer, else by email; lines by SKU); TIMS shipping comes back as the shop order's
fulfilment, forward only (docs/adr/0035). Money is Decimal (``topologies.money``); rules in
``mappings/web_orders.yaml``.
"""

from topologies.flow import Flow
from topologies.mapping_file import OneFileMappings
from topologies.web_orders.agents import FLOW_NAME, LINK_TOPICS, SOURCE_TOPICS, STAGE_TOPICS, TABLES, install
from topologies.web_orders.order import DEFAULT_MAPPING_DIR, WebOrderMapping

__all__ = ["FLOW"]

FLOW = Flow(name=FLOW_NAME, source_topics=SOURCE_TOPICS, link_topics=LINK_TOPICS, internal_topics=STAGE_TOPICS,
            tables=TABLES, direct_stages=(("ingest", (*SOURCE_TOPICS, *LINK_TOPICS)),),
            sources=("shop", "tims"), install=install, mappings=DEFAULT_MAPPING_DIR,
            mapping_tool=OneFileMappings("web_orders", WebOrderMapping),
            # it needs the shop connector set up (its source and shop.* sinks): named in CONNECT_FLOWS
            by_default=False)
