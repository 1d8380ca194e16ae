"""Which topic a name given to replay means when CONNECT_TOPIC_PREFIX is set (issue 20)."""

from __future__ import annotations

import pytest

from stream_app.replay import ReplayError, owned_topic


def test_the_apps_own_prefixed_topic_wins_over_another_environments() -> None:
    topics = {"sink.tims.customer", "dev.sink.tims.customer"}
    assert owned_topic(topics, "sink.tims.customer", "dev.") == "dev.sink.tims.customer"
    assert owned_topic(topics, "dev.sink.tims.customer", "dev.") == "dev.sink.tims.customer"
    assert owned_topic(topics, "sink.tims.customer", "") == "sink.tims.customer"


def test_an_ambiguous_name_is_refused_with_both_candidates() -> None:
    topics = {"dev.sink.x", "dev.dev.sink.x"}
    with pytest.raises(ReplayError) as refused:
        owned_topic(topics, "dev.sink.x", "dev.")
    assert "'dev.sink.x'" in str(refused.value) and "'dev.dev.sink.x'" in str(refused.value)
    assert owned_topic(topics, "sink.x", "dev.") == "dev.sink.x"
    assert owned_topic(topics, "dev.dev.sink.x", "dev.") == "dev.dev.sink.x"


def test_another_environments_topic_alone_is_refused() -> None:
    with pytest.raises(ReplayError, match="another environment"):
        owned_topic({"sink.tims.customer"}, "sink.tims.customer", "dev.")
    with pytest.raises(ReplayError, match="did you mean dev.sink.tims.customer"):
        owned_topic({"dev.sink.tims.customer"}, "tims.customer", "dev.")


def test_dlq_reads_only_the_apps_own_prefixed_topics() -> None:
    from stream_app.dlq import _topics

    assert _topics("dev.") and all(topic.startswith("dev.dlq.") for topic in _topics("dev."))
