"""``stream-app identity review list|accept|reject``: a person decides the borderline matches
(docs/adr/0036).

A flow that finds two records that may be one person writes a review to ``audit.match_review``
(keyed by its id) with what to send to accept it (``accept``: merge the two customers) and to
undo that (``undo``: unmerge them): the app names no flow, it sends what the review says, to
the topics it names, with the reviewer's name added. Each decision is one more record under the
review's id on the same topic (who, when, what), so the topic is the review's history and the
audit of the operator's action. ``reject`` of an open review only records it; ``reject`` of an
accepted one (the merge was wrong) sends its ``undo``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer

from connectors.kafka_admin import list_topics, read_to_end
from stream_app.topics import AUDIT_MATCH_REVIEW

if TYPE_CHECKING:
    from stream_app.settings import Settings

__all__ = ["ReviewError", "Review", "read_reviews", "decide_review", "AUDIT_MATCH_REVIEW"]

#: review status → what ``accept`` and ``reject`` do from it: (new status, actions sent)
_TRANSITIONS = {("open", "accept"): ("accepted", "accept"), ("open", "reject"): ("rejected", None),
                ("accepted", "reject"): ("unmerged", "undo")}


class ReviewError(RuntimeError):
    """The decision cannot be made; the message says why."""


@dataclass
class Review:
    review_id: str
    proposal: dict[str, Any]
    status: str = "open"
    history: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        p = self.proposal
        return (f"{self.review_id}  {self.status:<8}  score {p.get('score', 0):.4f}  {p.get('reference', '?')} → "
                f"customer {p.get('candidate_key', '?')} (new customer {p.get('customer_key', '?')})")


async def read_reviews(settings: "Settings") -> dict[str, Review]:
    """Every review on the topic with its latest status, in the order they were proposed."""
    bootstrap, topic = settings.kafka_bootstrap_servers, settings.topic(AUDIT_MATCH_REVIEW)
    if topic not in await list_topics(bootstrap):
        return {}
    reviews: dict[str, Review] = {}
    async for record in read_to_end(bootstrap, [topic]):
        try:
            value = json.loads(record.value)
        except (TypeError, ValueError):
            continue
        if not isinstance(value, dict) or not isinstance(value.get("review_id"), str):
            continue
        rid = value["review_id"]
        if "accept" in value and rid not in reviews:
            reviews[rid] = Review(rid, value)
        elif rid in reviews and value.get("decision"):
            reviews[rid].status = str(value.get("status"))
            reviews[rid].history.append(value)
    return reviews


async def decide_review(settings: "Settings", review_id: str, decision: str, by: str) -> Review:
    """Accept or reject one review: send what it says, then record the decision."""
    review = (await read_reviews(settings)).get(review_id)
    if review is None:
        raise ReviewError(f"no review {review_id} on {settings.topic(AUDIT_MATCH_REVIEW)} "
                          "(`stream-app identity review list` shows them)")
    step = _TRANSITIONS.get((review.status, decision))
    if step is None:
        raise ReviewError(f"review {review_id} is {review.status}: it cannot be {decision}ed now")
    status, actions = step
    messages = review.proposal.get(actions, []) if actions else []
    bootstrap = settings.kafka_bootstrap_servers
    audit = settings.topic(AUDIT_MATCH_REVIEW)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for message in messages:
            value = dict(message["value"]) | {"by": by}
            await producer.send(settings.topic(message["topic"]), json.dumps(value).encode(),
                                key=str(message["key"]).encode())
        await producer.flush()
        entry = {"review_id": review_id, "decision": decision, "status": status, "by": by,
                 "at": int(time.time() * 1000), "sent": len(messages)}
        await producer.send_and_wait(audit, json.dumps(entry).encode(), key=review_id.encode())
    finally:
        await producer.stop()
    review.status = status
    review.history.append(entry)
    return review
