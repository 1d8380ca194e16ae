"""The customer master's links, as it tells the other flows (docs/adr/0035, addendum).

A flow cannot read the customer sync's tables (docs/adding-a-flow.md), and what the master
decided is not always visible in the systems it writes: a shop customer that the matching rules
joined to a TIMS customer under another email leaves no trace on that TIMS customer (its one
``external_id`` is the Salesforce Id). So the customer sync publishes, on :data:`TOPIC`, keyed by
the customer key, the ids a golden record holds in each system (link name → id:
``tims_customer`` → ``C000123``, ``shop_customer`` → ``shop:shopify:Customer:7``) whenever they
change. Ids only: no names, emails or phones.

Statements about one customer arrive in order (one key). A link that moves to another customer
(a merge, an unmerge: docs/adr/0036) arrives with that customer's version, which is above the
version of the customer it left: the newest version wins across customers.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from topologies.messages import StageMessage

__all__ = ["TOPIC", "CustomerLinks", "links_to_tell"]

TOPIC = "customer_master.links"
#: where a golden record remembers the links it told last
TOLD = "told_links"


class CustomerLinks(StageMessage):
    """A golden record's links now (none: the record was merged into another or erased)."""

    customer_key: str = Field(min_length=1)
    version: int = Field(ge=0)
    links: dict[str, str] = Field(default_factory=dict)


def links_to_tell(record: dict[str, Any]) -> CustomerLinks | None:
    """What to publish about this golden record, and remember that it was told; None when
    nothing changed since. A record with one link links nothing to anything: it is told once it
    has two, or when it loses what it told (a merged record tells that it holds nothing)."""
    links = {} if record.get("merged_into") else {name: str(value) for name, value in record["links"].items() if value}
    told = record.get(TOLD) or {}
    if links == told or (len(links) < 2 and not told):
        return None
    record[TOLD] = links
    return CustomerLinks(customer_key=record["key"], version=record["version"], links=links)
