"""Activities: Pardot visitor activities → Salesforce Tasks with the TIMS customer's ERP context
(docs/adr/0025).

Which activity types become a Task of their own, which roll up into one Task per prospect and
day, and which are left out is in ``mappings/activities.yaml``.
"""

from topologies.activities.agents import FLOW_NAME, SOURCE_TOPICS, STAGE_TOPICS, TABLES, install
from topologies.activities.tasks import DEFAULT_MAPPING_DIR, ActivityMapping
from topologies.flow import Flow
from topologies.mapping_file import OneFileMappings

__all__ = ["FLOW"]

FLOW = Flow(name=FLOW_NAME, source_topics=SOURCE_TOPICS, internal_topics=STAGE_TOPICS, tables=TABLES,
            direct_stages=(("ingest", SOURCE_TOPICS),),
            sources=("pardot", "tims"), install=install, mappings=DEFAULT_MAPPING_DIR,
            mapping_tool=OneFileMappings("activities", ActivityMapping),
            by_default=False)
