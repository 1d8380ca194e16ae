"""Accounts receivable: TIMS invoices and payments rolled up per customer (open balance,
overdue, last invoice and payment, lifetime revenue, credit hold) into the linked Salesforce
Account and Contact and the Pardot prospect (docs/adr/0032). Rules in ``mappings/receivables.yaml``.
"""

from topologies.flow import Flow
from topologies.mapping_file import OneFileMappings
from topologies.receivables.agents import FLOW_NAME, SOURCE_TOPICS, STAGE_TOPICS, TABLES, install
from topologies.receivables.messages import Release
from topologies.receivables.rollup import DEFAULT_MAPPING_DIR, ReceivablesMapping, preview

__all__ = ["FLOW"]


def _release(customer: str, subject: str, operator: str | None) -> tuple[str, str, dict[str, object]]:
    """The message that lets a change the anomaly rules held count (``stream-app anomalies release``)."""
    return f"{FLOW_NAME}.merge", customer, Release(kind="release", subject=subject, operator=operator).wire()


# Off unless named in CONNECT_FLOWS: it writes custom fields a site creates first (the ADR lists them)
FLOW = Flow(name=FLOW_NAME, source_topics=SOURCE_TOPICS, internal_topics=STAGE_TOPICS, tables=TABLES,
            direct_stages=(("ingest", SOURCE_TOPICS),),
            sources=("salesforce", "tims", "pardot"), install=install, mappings=DEFAULT_MAPPING_DIR,
            mapping_tool=OneFileMappings("receivables", ReceivablesMapping, preview),
            release=_release, by_default=False)
