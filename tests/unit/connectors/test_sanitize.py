"""Text made safe at the edge, and the change recorded on the event."""

from __future__ import annotations

import json

import orjson
from hypothesis import given
from hypothesis import strategies as st

from connectors.envelope import SourceEvent
from connectors.sanitize import clean_text, sanitize


def test_lone_surrogates_and_control_characters_are_replaced_or_dropped() -> None:
    assert clean_text("Ada\ud800 Love\x00lace\tof\nLondon\x1b") == "Ada\ufffd Lovelace\tof\nLondon"
    value, changed = sanitize({"name": "ok", "notes": ["fine", "bad\x00"], "addr": {"city\ud83d": "Leeds"}})
    assert value == {"name": "ok", "notes": ["fine", "bad"], "addr": {"city\ufffd": "Leeds"}}
    assert changed == ["notes[1]", "addr.city\ufffd"]


def test_an_event_records_what_was_made_safe_and_encodes_everywhere() -> None:
    raw = json.loads('{"event_id": "e1", "source": "tims", "entity": "customer", "record_id": "C1", '
                     '"change_type": "UPDATE", "commit_timestamp": 1, "fields": {"name": "Ada\\ud800", "email": "a@b.co"}}')
    event = SourceEvent.model_validate(raw)
    assert event.fields == {"name": "Ada\ufffd", "email": "a@b.co"} and event.sanitized_fields == ["name"]
    orjson.dumps(event.model_dump(mode="json"))  # would raise on a lone surrogate
    again = SourceEvent.model_validate(event.model_dump(mode="json"))
    assert again == event, "sanitizing twice changes nothing"


@given(st.recursive(st.text(), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                    max_leaves=10))
def test_whatever_comes_in_can_be_encoded_as_utf8_json_afterwards(value: object) -> None:
    cleaned, _ = sanitize(value)
    orjson.dumps(cleaned)


@given(st.recursive(st.text(), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                    max_leaves=10))
def test_the_quick_check_agrees_with_a_full_pass(value: object) -> None:
    from connectors.sanitize import is_clean

    cleaned, changed = sanitize(value)
    assert is_clean(value) == (not changed)
    if not changed:
        assert cleaned is value  # nothing copied
