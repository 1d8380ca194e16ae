"""stream_app.codecs: what Faust hands the agents never raises, and what we keep stays bounded."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.codecs import KEEP_BYTES, SafeJson, Undecodable, bounded

CODEC = SafeJson()
json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=20)


@pytest.mark.parametrize(("raw", "why"), [
    (b"\xff\xfe not utf-8", "UTF-8"),
    (b'"\\ud800"', "surrogate"),
    (b"[" * 2000 + b"]" * 2000, "depth"),
    (b'{"a": ', "unexpected"),
    (b"", "empty"),
])
def test_what_cannot_be_read_arrives_as_undecodable(raw: bytes, why: str) -> None:
    value = CODEC.loads(raw)
    assert isinstance(value, Undecodable) and value.raw == raw and why.lower() in value.error.lower()


@given(st.binary(max_size=300))
def test_decoding_never_raises(raw: bytes) -> None:
    CODEC.loads(raw)


@given(json_values)
def test_json_round_trips(value: object) -> None:
    assert CODEC.loads(CODEC.dumps(value)) == value


def test_lone_surrogates_are_written_escaped_instead_of_failing() -> None:
    assert json.loads(CODEC.dumps({"name": "a\ud800b"})) == {"name": "a\ud800b"}


def test_an_undecodable_message_is_kept_with_its_bytes_size_and_hash() -> None:
    kept = bounded(CODEC.loads(b"\xff" * (KEEP_BYTES + 10)))
    assert kept["size"] == KEEP_BYTES + 10 and kept["truncated"] is True and len(kept["sha256"]) == 64
    assert base64.b64decode(kept["base64"]) == b"\xff" * (KEEP_BYTES * 3 // 4)


def test_a_huge_value_is_kept_as_its_size_hash_and_start() -> None:
    kept = bounded({"note": "x" * (2 * KEEP_BYTES)})
    assert kept["truncated"] is True and kept["size"] > 2 * KEEP_BYTES and kept["preview"].startswith('{"note":"xxx')
    small = {"note": "fine"}
    assert bounded(small) is small


def test_a_value_too_deep_to_encode_is_described_not_raised() -> None:
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    kept = bounded(deep)
    assert kept["type"] == "list" and "unencodable" in kept
