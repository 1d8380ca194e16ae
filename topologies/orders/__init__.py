"""Orders: a Closed Won Opportunity becomes one TIMS sales order; TIMS order status comes back
to the Opportunity, forward only; an order entered in TIMS becomes a Closed Won Opportunity
(docs/adr/0021). Money is Decimal (``topologies.money``); rules in ``mappings/orders.yaml``.
"""

from topologies.flow import Flow
from topologies.mapping_file import OneFileMappings
from topologies.orders.agents import FLOW_NAME, SOURCE_TOPICS, STAGE_TOPICS, TABLES, install
from topologies.orders.order import DEFAULT_MAPPING_DIR, OrderMapping

__all__ = ["FLOW"]

FLOW = Flow(name=FLOW_NAME, source_topics=SOURCE_TOPICS, internal_topics=STAGE_TOPICS, tables=TABLES,
            direct_stages=(("ingest", SOURCE_TOPICS),),
            sources=("salesforce", "tims"), install=install, mappings=DEFAULT_MAPPING_DIR,
            mapping_tool=OneFileMappings("orders", OrderMapping))
