"""``stream-app privacy export|erase``: one person's data, as JSON or gone (docs/adr/0034).

The app names no flow: each enabled flow with a privacy tool (``Flow.privacy``) reads the person
out of its own tables, which the app hands it by name as their changelogs hold them (the group of
the current ``CONNECT_APP_VERSION``). Export writes nothing.

Erase carries out the flows' erasure plans with the workers running: first the entries of each
flow's lasting ``erased`` map (every worker then drops the person's events, late or replayed),
then the identity entries' tombstones and the messages that make the workers delete the golden
record and what waits under the person's references, then the sink commands that delete or
anonymise the person's records in each system (through the workers' sinks: retried, version
guarded, dead-lettered on failure), and last an audit record on ``audit.privacy`` with ids and
actions, no personal data.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer

from connectors.kafka_admin import ensure_topics, list_topics
from stream_app.flows import enabled_flows, replicated_topic
from stream_app.rebuild import group_id, read_table

if TYPE_CHECKING:
    from stream_app.settings import Settings

__all__ = ["PrivacyError", "export_person", "erase_person", "AUDIT_PRIVACY"]

#: where each erasure is recorded (ids and actions, no personal data); kept forever
AUDIT_PRIVACY = "audit.privacy"
#: seconds between the erased map's entries and the rest: the workers read them first
ERASED_HEAD_START = 1.0


class PrivacyError(RuntimeError):
    """The export cannot be made; the message says what to do."""


def _reader(bootstrap: str, group: str, topics: set[str]) -> Any:
    async def read(name: str) -> dict[bytes, bytes]:
        topic = f"{group}-{name}-changelog"
        return await read_table(bootstrap, topic) if topic in topics else {}
    return read


def _nobody(group: str, customer: str | None) -> PrivacyError:
    who = f"customer {customer}" if customer else "that email"
    return PrivacyError(f"no person with {who} in the tables of group {group} (CONNECT_APP_ID and "
                        "CONNECT_APP_VERSION name the group; the email is matched as the flows normalise it)")


async def export_person(settings: "Settings", *, email: str | None = None, customer: str | None = None) -> dict[str, Any]:
    if (email is None) == (customer is None):
        raise PrivacyError("give exactly one of --email or --customer")
    bootstrap, group = settings.kafka_bootstrap_servers, group_id(settings)
    read = _reader(bootstrap, group, await list_topics(bootstrap))

    found = {}
    for flow in enabled_flows(settings):
        if flow.privacy is not None:
            person = await flow.privacy.export(read, email=email, customer=customer)
            if person is not None:
                found[flow.name] = person
    if not found:
        raise _nobody(group, customer)
    return {"group": group, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "flows": found}


def _sinks(settings: "Settings") -> set[str]:
    return {name.strip() for name in settings.sink_objects.split(",") if name.strip()}


async def erase_person(settings: "Settings", *, email: str | None = None, customer: str | None = None,
                       dry_run: bool = False) -> dict[str, Any]:
    """Erase one person (see the module's docstring); returns what was done (ids, no personal data)."""
    if (email is None) == (customer is None):
        raise PrivacyError("give exactly one of --email or --customer")
    bootstrap, group = settings.kafka_bootstrap_servers, group_id(settings)
    read = _reader(bootstrap, group, await list_topics(bootstrap))
    erasure = uuid.uuid4().hex
    policy = Path(settings.privacy_policy) if settings.privacy_policy else None
    plans = {}
    for flow in enabled_flows(settings):
        if flow.privacy is not None and hasattr(flow.privacy, "erase_plan"):
            try:
                plan = await flow.privacy.erase_plan(read, email=email, customer=customer, policy_file=policy,
                                                     erasure=erasure)
            except ValueError as exc:  # the policy file
                raise PrivacyError(f"{exc} (CONNECT_PRIVACY_POLICY)") from None
            if plan is not None:
                plans[flow.name] = plan
    if not plans:
        raise _nobody(group, customer)
    missing = sorted({f"{c.system}.{c.object}" for plan in plans.values() for c in plan.commands} - _sinks(settings))
    if missing:
        raise PrivacyError(f"the erasure writes to {', '.join(missing)}, which CONNECT_SINK_OBJECTS does not name: "
                           "add them (the workers' sinks make the writes) or set the policy to keep them")
    report = {"erasure": erasure, "group": group, "dry_run": dry_run,
              "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "flows": {name: {"customer_key_sha256": hashlib.sha256(plan.customer_key.encode()).hexdigest(),
                               "actions": plan.actions, "identity_entries_forgotten": len(plan.forget),
                               "erased_entries": len(plan.erased)} for name, plan in plans.items()}}
    if dry_run:
        return report
    await _carry_out(settings, group, plans, report)
    return report


async def _carry_out(settings: "Settings", group: str, plans: dict[str, Any], report: dict[str, Any]) -> None:
    """The plans' messages in their order, then the audit record, through one producer."""
    bootstrap = settings.kafka_bootstrap_servers
    erased = {name: replicated_topic(settings, name, "erased", lasting=True) for name in plans}
    audit = settings.topic(AUDIT_PRIVACY)
    await ensure_topics(bootstrap, erased.values(), partitions=1, compacted=True)
    await ensure_topics(bootstrap, [audit], partitions=1, keep_forever=[audit])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for name, plan in plans.items():
            for key, value in plan.erased.items():
                await producer.send(erased[name], value.encode(), key=key.encode())
        await producer.flush()
        await asyncio.sleep(ERASED_HEAD_START)
        for name, plan in plans.items():
            identity = replicated_topic(settings, name, "identity", lasting=False, group=group)
            for entry in plan.forget:
                await producer.send(identity, None, key=entry.encode())
            for topic, key, value in plan.messages:
                await producer.send(settings.topic(topic), json.dumps(value).encode(), key=key.encode())
            for command in plan.commands:
                await producer.send(settings.topic(f"sink.{command.system}.{command.object}"),
                                    command.model_dump_json().encode(), key=command.partition_key.encode())
        await producer.flush()
        await producer.send_and_wait(audit, json.dumps(report).encode(), key=report["erasure"].encode())
    finally:
        await producer.stop()
