"""The systems this installation connects: one line per built-in connector, plus entry points.

A site adds a system without forking by installing a package that declares, in its
``pyproject.toml``::

    [project.entry-points."pardot_tims_connect.connectors"]
    erp2 = "erp2_connector:CONNECTOR"

where ``CONNECTOR`` is a :class:`connectors.spec.ConnectorSpec` named like the entry point.
Everything that lists systems (settings, CLI choices, sinks, DLQ, dashboards) asks here.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from connectors.pardot import CONNECTOR as PARDOT
from connectors.salesforce import CONNECTOR as SALESFORCE
from connectors.shop import CONNECTOR as SHOP
from connectors.spec import ConnectorSpec
from connectors.tims import CONNECTOR as TIMS

__all__ = ["ENTRY_POINT_GROUP", "BUILT_IN", "connectors", "connector", "names"]

ENTRY_POINT_GROUP = "pardot_tims_connect.connectors"
BUILT_IN: tuple[ConnectorSpec, ...] = (
    SALESFORCE,
    TIMS,
    PARDOT,
    SHOP,
)


@functools.cache
def connectors() -> dict[str, ConnectorSpec]:
    """Every connector by name: the built-in ones, then those installed by entry point."""
    found = {spec.name: spec for spec in BUILT_IN}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        spec = point.load()
        if not isinstance(spec, ConnectorSpec) or spec.name != point.name:
            raise TypeError(f"entry point {point.name} = {point.value} is not a ConnectorSpec named {point.name!r}")
        if spec.name in found:
            raise ValueError(f"entry point {point.value}: a connector named {spec.name!r} is already registered")
        found[spec.name] = spec
    return found


def names() -> tuple[str, ...]:
    return tuple(connectors())


def connector(name: str) -> ConnectorSpec:
    """The spec of ``name``; KeyError names the systems there are."""
    try:
        return connectors()[name]
    except KeyError:
        raise KeyError(f"unknown system {name!r}; choose one of {', '.join(names())}") from None
