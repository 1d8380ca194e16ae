"""Which topics keep their history (a rebuild reads them from the start)."""

from __future__ import annotations

from connectors.kafka_io import _topic_configs


def test_source_topics_and_links_are_kept_for_rebuilds() -> None:
    assert _topic_configs("t1.src.tims.customer", False) == {"retention.ms": "-1"}
    assert _topic_configs("src.salesforce.Lead", False) == {"retention.ms": "-1"}
    assert _topic_configs("prod.links.tims", False) == {"retention.ms": "-1"}
    assert _topic_configs("prod.sink.tims.customer", False) == {}
    assert _topic_configs("prod.dlq.salesforce", False) == {}
    assert _topic_configs("connect.positions", True) == {"cleanup.policy": "compact"}
