"""The orders flow's stage messages, typed (docs/adr/0021); shared with the web orders flow, they
live in ``topologies.waiting_orders``.

``orders.merge`` (key: the order's row key) takes source events and rechecks; ``orders.waiting``
(key: a reference, ``account:<id>``, ``customer:<id>``, ``product2:<id>``, or ``total:<order>``
for lines that do not add up yet) takes the orders that wait for it, the news that it is
linked, and the end of a grace.
"""

from __future__ import annotations

from topologies.messages import EventMessage
from topologies.waiting_orders import MERGE, WAITING, Expire, Linked, Park, Recheck

__all__ = ["MergeEvent", "Recheck", "Park", "Linked", "Expire", "MERGE", "WAITING"]

MergeEvent = EventMessage
