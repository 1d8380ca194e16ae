"""A TIMS sales order's status only moves forward: ``topologies.sales_order_status`` (shared with
the web orders flow, docs/adr/0035)."""

from topologies.sales_order_status import RANK, advances, rank

__all__ = ["RANK", "rank", "advances"]
