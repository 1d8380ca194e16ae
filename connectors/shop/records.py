"""The platform-neutral shop record and the SourceEvent it becomes (docs/adr/0033).

Every platform adapter maps its payloads (webhook bodies and API answers alike) to
:class:`ShopRecord`: one of :data:`ENTITIES`, the platform's global id, ``updated_at`` in UTC
(``YYYY-MM-DDTHH:MM:SSZ``) and neutral fields (snake_case, money as decimal strings beside a
``currency``, statuses in lower case). The flows read only these.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from connectors.envelope import SourceEvent

__all__ = ["ENTITIES", "RECONCILED", "ShopRecord", "utc"]

ENTITIES = ("order", "checkout", "product", "inventory_level", "customer")
#: what reconciliation reads by updated_at (stock comes with the products' variants)
RECONCILED = ("order", "checkout", "product", "customer")


def utc(text: str) -> str:
    """An ISO 8601 time in any offset → UTC with whole seconds and a ``Z``; ValueError if not one."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ShopRecord:
    entity: str
    id: str
    updated_at: str
    fields: dict[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        canonical = json.dumps(self.fields, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def event_id(self) -> str:
        """The same for the same state, whether a webhook or the API brought it; two changes in
        the same second (platform times have whole seconds) still differ by their digest."""
        return f"shop:{self.entity}:{self.id}:{self.updated_at}:{self.digest()}"

    def event(self, platform: str, via: str,
              kind: Literal["CREATE", "UPDATE", "SNAPSHOT"] | None = None) -> SourceEvent:
        stamp = int(datetime.fromisoformat(self.updated_at.replace("Z", "+00:00")).timestamp() * 1000)
        created = self.fields.get("created_at")
        change = kind or ("CREATE" if created and created == self.updated_at else "UPDATE")
        return SourceEvent(event_id=self.event_id, source="shop", entity=self.entity, record_id=self.id,
                           change_type=change, fields=self.fields, full_state=True, commit_timestamp=max(0, stamp),
                           position={"platform": platform, "via": via, "updated_at": self.updated_at})
