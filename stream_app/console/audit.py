"""``audit.operator``: one message per operator action in the console (who, role, when, what).

The action is written before the console answers: an action whose audit record cannot be
written is reported as failed to the operator, so nothing is done unrecorded (docs/adr/0031).
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from connectors.kafka_admin import ensure_topics
from connectors.kafka_security import client_options
from connectors.redact import redact_fields
from stream_app.console.auth import User

__all__ = ["OperatorAudit"]


class OperatorAudit:
    def __init__(self, bootstrap: str, topic: str, partitions: int = 1, replication: int = 1) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.partitions, self.replication = partitions, replication
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        await ensure_topics(self.bootstrap, [self.topic], partitions=self.partitions, replication=self.replication,
                            keep_forever=[self.topic])
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
                                          **client_options())
        await self._producer.start()

    async def record(self, user: User, action: str, **detail: Any) -> dict[str, Any]:
        """Write the action and wait for the broker's ack; returns what was written."""
        assert self._producer is not None, "start() first"
        entry = {"who": user.name, "role": user.role.value, "action": action,
                 "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "at_ms": int(time.time() * 1000),
                 "detail": redact_fields(detail)}
        await self._producer.send_and_wait(self.topic, json.dumps(entry).encode(), key=user.name.encode())
        return entry

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
