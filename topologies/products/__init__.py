"""Products: TIMS items ⇄ Salesforce Product2, with the standard PricebookEntry (docs/adr/0021).

TIMS masters the catalogue (code, name, family, unit, price, active); Salesforce may own the
marketing description. Ownership is in ``mappings/products.yaml``. The flow keeps the product
map (Product2 Id → TIMS item) that orders need.
"""

from topologies.flow import Flow
from topologies.mapping_file import OneFileMappings
from topologies.products.agents import FLOW_NAME, SOURCE_TOPICS, STAGE_TOPICS, TABLES, install
from topologies.products.catalog import DEFAULT_MAPPING_DIR, ProductMapping

__all__ = ["FLOW"]

FLOW = Flow(name=FLOW_NAME, source_topics=SOURCE_TOPICS, internal_topics=STAGE_TOPICS, tables=TABLES,
            direct_stages=(("ingest", SOURCE_TOPICS),),
            sources=("salesforce", "tims"), install=install, mappings=DEFAULT_MAPPING_DIR,
            mapping_tool=OneFileMappings("products", ProductMapping))
