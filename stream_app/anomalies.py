"""``stream-app anomalies list|release``: what the flows' anomaly rules flagged, and letting a
held change count (docs/adr/0030, 0032).

A flow that watches its money streams writes each flag to ``audit.anomalies`` (the rule, the
score, the evidence, whether the change is held). ``list`` reads them, newest last, and marks
the ones released since. ``release`` sends the flow the message that lets a held change count
(``Flow.release`` builds it: the app names no flow) and records the operator's act on
``audit.anomalies`` too.
"""

from __future__ import annotations

import getpass
import json
import time
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer

from connectors.kafka_admin import list_topics, read_to_end
from stream_app.flows import enabled_flows

if TYPE_CHECKING:
    from stream_app.settings import Settings

__all__ = ["AnomalyError", "list_anomalies", "release_held", "AUDIT_ANOMALIES"]

AUDIT_ANOMALIES = "audit.anomalies"


class AnomalyError(RuntimeError):
    """The command cannot do what was asked; the message says what to do."""


async def list_anomalies(settings: "Settings", *, customer: str | None = None, held_only: bool = False) -> list[dict[str, Any]]:
    topic = settings.topic(AUDIT_ANOMALIES)
    if topic not in await list_topics(settings.kafka_bootstrap_servers):
        return []
    flags: list[dict[str, Any]] = []
    released: set[tuple[str, str, str]] = set()
    async for record in read_to_end(settings.kafka_bootstrap_servers, [topic]):
        try:
            entry = json.loads(record.value)
        except (TypeError, ValueError):
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("kind") == "release":
            released.add((str(entry.get("flow")), str(entry.get("customer_id")), str(entry.get("subject"))))
        elif customer is None or entry.get("customer_id") == customer:
            flags.append(entry)
    for flag in flags:
        flag["released"] = (str(flag.get("flow")), str(flag.get("customer_id")), str(flag.get("subject"))) in released
    return [f for f in flags if not held_only or (f.get("held") and not f["released"])]


async def release_held(settings: "Settings", *, flow: str, customer: str, subject: str) -> dict[str, Any]:
    found = {f.name: f for f in enabled_flows(settings)}
    if flow not in found:
        raise AnomalyError(f"no flow {flow!r} runs here (CONNECT_FLOWS); flows: {', '.join(found)}")
    if found[flow].release is None:
        raise AnomalyError(f"the {flow} flow holds nothing back")
    operator = getpass.getuser()
    topic, key, message = found[flow].release(customer, subject, operator)
    act = {"kind": "release", "flow": flow, "customer_id": customer, "subject": subject, "operator": operator,
           "at_ms": int(time.time() * 1000)}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic(topic), json.dumps(message).encode(), key=key.encode())
        await producer.send_and_wait(settings.topic(AUDIT_ANOMALIES), json.dumps(act).encode(), key=customer.encode())
    finally:
        await producer.stop()
    return act
