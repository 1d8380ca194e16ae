"""Which topics keep their history (a rebuild reads them from the start)."""

from __future__ import annotations

from connectors.kafka_admin import topic_configs
from connectors.kafka_io import keeps_history
from stream_app.app import settings
from stream_app.topics import kept_forever


def test_source_topics_are_kept_for_rebuilds() -> None:
    assert keeps_history("t1.src.tims.customer")
    assert keeps_history("src.salesforce.Lead")
    assert not keeps_history("prod.sink.tims.customer")
    assert not keeps_history("prod.dlq.salesforce")
    assert not keeps_history("quarantine.tims")
    assert not keeps_history("connect.positions")


def test_the_worker_keeps_the_links_topics_for_rebuilds() -> None:
    links, sink, dlq = (settings.topic(name) for name in ("links.tims", "sink.tims.customer", "dlq.salesforce"))
    assert kept_forever([sink, links, dlq]) == [links]


def test_configs_of_a_new_topic() -> None:
    assert topic_configs(keep_forever=True) == {"retention.ms": "-1"}
    assert topic_configs() == {}
    assert topic_configs(compacted=True) == {"cleanup.policy": "compact"}
