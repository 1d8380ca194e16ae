"""``stream-app privacy export``: everything the flows' tables hold about one person, as JSON.

The app names no flow: each enabled flow with a privacy tool (``Flow.privacy``) reads the person
out of its own tables, which the app hands it by name as their changelogs hold them (the group of
the current ``CONNECT_APP_VERSION``). Workers may keep running: nothing is written.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from connectors.kafka_admin import list_topics
from stream_app.flows import enabled_flows
from stream_app.rebuild import group_id, read_table

if TYPE_CHECKING:
    from stream_app.settings import Settings

__all__ = ["PrivacyError", "export_person"]


class PrivacyError(RuntimeError):
    """The export cannot be made; the message says what to do."""


async def export_person(settings: "Settings", *, email: str | None = None, customer: str | None = None) -> dict[str, Any]:
    if (email is None) == (customer is None):
        raise PrivacyError("give exactly one of --email or --customer")
    bootstrap, group = settings.kafka_bootstrap_servers, group_id(settings)
    topics = await list_topics(bootstrap)

    async def read(name: str) -> dict[bytes, bytes]:
        topic = f"{group}-{name}-changelog"
        return await read_table(bootstrap, topic) if topic in topics else {}

    found = {}
    for flow in enabled_flows(settings):
        if flow.privacy is not None:
            person = await flow.privacy.export(read, email=email, customer=customer)
            if person is not None:
                found[flow.name] = person
    if not found:
        who = f"customer {customer}" if customer else "that email"
        raise PrivacyError(f"no person with {who} in the tables of group {group} (CONNECT_APP_ID and "
                           "CONNECT_APP_VERSION name the group; the email is matched as the flows normalise it)")
    return {"group": group, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "flows": found}
