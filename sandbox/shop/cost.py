"""Calculated query cost and the restoring bucket, as Shopify's GraphQL Admin API meters them.

Shopify charges points, not requests: a scalar costs 0, an object 1, a connection 2 plus its
``first`` objects (nested connections multiply), a mutation 10. A query may run only when the
bucket holds its *requested* cost; it is then charged its *actual* cost (what it really
returned). The bucket refills at ``restore_rate`` points per second up to ``maximum``. Every
answer reports this under ``extensions.cost``; a query the bucket cannot pay is refused with
the error code ``THROTTLED``, one above the maximum with ``MAX_COST_EXCEEDED``.

The simulator's arithmetic is simplified (Shopify's own calculator also weighs some fields and
arguments); the shapes and the behaviour a client must handle are the real ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from graphql import DocumentNode, FieldNode, FragmentDefinitionNode, OperationDefinitionNode, value_from_ast_untyped
from graphql.language import FragmentSpreadNode, InlineFragmentNode, SelectionSetNode

__all__ = ["Bucket", "requested_cost", "actual_cost", "MUTATION_COST"]

MUTATION_COST = 10
_STRUCTURE = {"edges", "pageInfo"}
_NODES = {"node", "nodes"}


@dataclass
class Bucket:
    maximum: float = 1000.0
    restore_rate: float = 50.0
    clock: Callable[[], float] = time.monotonic
    available: float = field(init=False)
    _at: float = field(init=False)

    def __post_init__(self) -> None:
        self.available, self._at = self.maximum, self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self.available = min(self.maximum, self.available + (now - self._at) * self.restore_rate)
        self._at = now

    def take(self, requested: float) -> bool:
        """Charge ``requested`` when the bucket holds it; False (nothing charged) when it does not."""
        self._refill()
        if requested > self.available:
            return False
        self.available -= requested
        return True

    def refund(self, points: float) -> None:
        self.available = min(self.maximum, self.available + max(0.0, points))

    def configure(self, maximum: float | None = None, restore_rate: float | None = None,
                  available: float | None = None) -> None:
        self._refill()
        if maximum is not None:
            self.maximum = maximum
        if restore_rate is not None:
            self.restore_rate = restore_rate
        self.available = min(self.maximum, available if available is not None else self.available)

    def status(self) -> dict[str, float]:
        self._refill()
        return {"maximumAvailable": self.maximum, "currentlyAvailable": round(self.available, 1),
                "restoreRate": self.restore_rate}


def requested_cost(document: DocumentNode, operation: OperationDefinitionNode, variables: dict[str, Any]) -> int:
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    if operation.operation.value == "mutation":
        return MUTATION_COST * len(operation.selection_set.selections)
    return int(_cost(operation.selection_set, 1, fragments, variables))


def _cost(selection_set: SelectionSetNode | None, multiplier: float, fragments: dict[str, FragmentDefinitionNode],
          variables: dict[str, Any]) -> float:
    total = 0.0
    for selection in (selection_set.selections if selection_set else ()):
        if isinstance(selection, InlineFragmentNode):
            total += _cost(selection.selection_set, multiplier, fragments, variables)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            total += _cost(fragment.selection_set if fragment else None, multiplier, fragments, variables)
        elif isinstance(selection, FieldNode) and selection.selection_set is not None:
            total += _field_cost(selection, multiplier, fragments, variables)
    return total


def _field_cost(node: FieldNode, multiplier: float, fragments: dict[str, FragmentDefinitionNode],
                variables: dict[str, Any]) -> float:
    arguments = {a.name.value: value_from_ast_untyped(a.value, variables) for a in node.arguments or ()}
    first = arguments.get("first")
    if isinstance(first, int) and node.name.value not in ("trackingInfo",):
        return multiplier * 2 + _cost(node.selection_set, multiplier * first, fragments, variables)
    own = 0 if node.name.value in _STRUCTURE else multiplier
    return own + _cost(node.selection_set, multiplier, fragments, variables)


def actual_cost(data: Any) -> int:
    """What an answer really held: 2 per connection, 1 per object, as :func:`requested_cost` counts."""
    total = 0
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            if "pageInfo" in value or "edges" in value or "nodes" in value:
                total += 2
            elif not ("cursor" in value and "node" in value) and "hasNextPage" not in value:
                total += 1
            stack.extend(v for v in value.values() if isinstance(v, (dict, list)))
    return max(0, total - 1)  # the answer's own ``data`` object is free
