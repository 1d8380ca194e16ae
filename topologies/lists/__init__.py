"""Lists: Pardot lists ⇄ Salesforce Campaigns ⇄ TIMS customer segments (docs/adr/0026).

Which Pardot list is linked to which Campaign, and how TIMS segments are published, is in
``mappings/lists.yaml``; the removal semantics are in ``membership``'s docstring.
"""

from topologies.flow import Flow
from topologies.mapping_file import OneFileMappings
from topologies.lists.agents import FLOW_NAME, SOURCE_TOPICS, STAGE_TOPICS, TABLES, install
from topologies.lists.membership import DEFAULT_MAPPING_DIR, ListsMapping

__all__ = ["FLOW"]

FLOW = Flow(name=FLOW_NAME, source_topics=SOURCE_TOPICS, internal_topics=STAGE_TOPICS, tables=TABLES,
            direct_stages=(("ingest", SOURCE_TOPICS),),
            sources=("pardot", "salesforce", "tims"), install=install, mappings=DEFAULT_MAPPING_DIR,
            mapping_tool=OneFileMappings("lists", ListsMapping),
            by_default=False)
