"""Customer sync: one golden customer per person across Pardot, Salesforce and TIMS.

Pure parts (identity, cleansing, mapping, merge) live in plain modules beside the Faust agents
(``agents.py``), which stay thin around them. Its mapping files are in ``mappings/``.
"""

from topologies.customer_sync.agents import (
    FLOW_NAME, LINK_TOPICS, SOURCE_TOPICS, STAGE_TOPICS, TABLES, install,
)
from topologies.customer_sync.mapping import DEFAULT_MAPPING_DIR
from topologies.customer_sync.preview import CustomerSyncMappings
from topologies.customer_sync.privacy import CustomerSyncPrivacy
from topologies.flow import Flow

__all__ = ["FLOW"]

FLOW = Flow(
    name=FLOW_NAME,
    source_topics=SOURCE_TOPICS,
    link_topics=LINK_TOPICS,
    internal_topics=STAGE_TOPICS,
    tables=TABLES,
    direct_stages=(("ingest", SOURCE_TOPICS), ("merge", (f"{FLOW_NAME}.merge",)),
                   ("matching", (f"{FLOW_NAME}.matching",)), ("identify", (f"{FLOW_NAME}.identify",))),
    sources=("salesforce", "pardot", "tims", "shop"),
    install=install,
    mappings=DEFAULT_MAPPING_DIR,
    mapping_tool=CustomerSyncMappings(),
    privacy=CustomerSyncPrivacy(),
)
