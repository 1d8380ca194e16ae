"""Who made a change: us, someone else, or cannot tell (ADR 0014).

Salesforce puts the API client of a write in the CDC header's changeOrigin
(``com/salesforce/api/rest/62.0;client=<name>``, from the ``Sforce-Call-Options`` we send); TIMS
stamps ``modified_by`` with the API client's name. An empty origin (some Salesforce UI edits) or
a system whose origin cannot name us (Pardot names only a user) tells nothing.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

from connectors.envelope import SourceEvent

__all__ = ["written_by_us"]

_SALESFORCE_CLIENT = re.compile(r"(?:^|[,;\s])client=([^,;\s]+)")


def _salesforce_client(origin: str) -> str | None:
    match = _SALESFORCE_CLIENT.search(origin)
    return match.group(1) if match else None


#: how each system's origin names the client that wrote; systems absent here never tell
_CLIENT_OF: dict[str, Callable[[str], str | None]] = {
    "salesforce": _salesforce_client,
    "tims": lambda origin: origin,
}


def written_by_us(event: SourceEvent, our_clients: Mapping[str, str]) -> bool | None:
    """True when the origin names our client, False when it names another writer (an origin
    without a client name is not ours: we always send ours), None when it cannot tell."""
    reader = _CLIENT_OF.get(event.source)
    ours = our_clients.get(event.source)
    origin = (event.change_origin or "").strip()
    if reader is None or not ours or not origin:
        return None
    return reader(origin) == ours
