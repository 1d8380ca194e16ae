"""Which topics keep their history (a rebuild reads them from the start)."""

from __future__ import annotations

from connectors.kafka_admin import topic_configs
from connectors.kafka_io import keeps_history
from stream_app.app import create_app
from stream_app.settings import load_settings


def test_source_topics_are_kept_for_rebuilds() -> None:
    assert keeps_history("t1.src.tims.customer")
    assert keeps_history("src.salesforce.Lead")
    assert not keeps_history("prod.sink.tims.customer")
    assert not keeps_history("prod.dlq.salesforce")
    assert not keeps_history("quarantine.tims")
    assert not keeps_history("connect.positions")


def test_the_worker_keeps_the_flows_inputs_for_rebuilds() -> None:
    app = create_app(load_settings(topic_prefix="t1."), sinks=False, metrics=False)
    assert "t1.links.tims" in app.owned.kept and "t1.src.tims.customer" in app.owned.kept
    assert not {"t1.sink.tims.customer", "t1.customer_sync.merge", "t1.quarantine.customer_sync"} & app.owned.kept
    assert app.owned.kept <= set(app.owned.names)


def test_configs_of_a_new_topic() -> None:
    assert topic_configs(keep_forever=True) == {"retention.ms": "-1"}
    assert topic_configs() == {}
    assert topic_configs(compacted=True) == {"cleanup.policy": "compact"}
