"""The flows: one line per flow package shipped here, plus those sites add by entry point.

A site adds a flow without forking: a package exporting a :class:`~topologies.flow.Flow`, and in
its distribution metadata an entry point in the group ``pardot_tims_connect.flows``, e.g.
``[project.entry-points."pardot_tims_connect.flows"] orders = "acme_flows.orders:FLOW"``.
``CONNECT_FLOWS`` picks which of them a worker runs (docs/adding-a-flow.md).
"""

from __future__ import annotations

from importlib.metadata import entry_points

from topologies.abandoned_carts import FLOW as ABANDONED_CARTS
from topologies.activities import FLOW as ACTIVITIES
from topologies.customer_sync import FLOW as CUSTOMER_SYNC
from topologies.flow import Flow
from topologies.lists import FLOW as LISTS
from topologies.orders import FLOW as ORDERS
from topologies.products import FLOW as PRODUCTS
from topologies.receivables import FLOW as RECEIVABLES
from topologies.shop_catalog import FLOW as SHOP_CATALOG
from topologies.web_orders import FLOW as WEB_ORDERS

__all__ = ["ENTRY_POINT_GROUP", "all_flows", "flow_named"]

ENTRY_POINT_GROUP = "pardot_tims_connect.flows"

#: the flows this project ships, one line each
SHIPPED: tuple[Flow, ...] = (CUSTOMER_SYNC, PRODUCTS, ORDERS, RECEIVABLES, ACTIVITIES, LISTS, WEB_ORDERS,
                             ABANDONED_CARTS, SHOP_CATALOG)


def all_flows() -> list[Flow]:
    """The shipped flows, then the ones installed packages declare; a name used twice is an error."""
    flows = list(SHIPPED)
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        flow = entry.load()
        if not isinstance(flow, Flow):
            raise TypeError(f"entry point {entry.name} = {entry.value} ({ENTRY_POINT_GROUP}) is not a Flow")
        flows.append(flow)
    names = [flow.name for flow in flows]
    doubles = sorted({name for name in names if names.count(name) > 1})
    if doubles:
        raise ValueError(f"two flows are named {', '.join(doubles)}; flow names must be unique")
    return flows


def flow_named(name: str) -> Flow:
    for flow in all_flows():
        if flow.name == name:
            return flow
    raise KeyError(name)
