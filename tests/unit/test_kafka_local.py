"""The local broker manager's failure messages, without starting a broker."""

from __future__ import annotations

import base64
import re
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.kafka_local import KAFKA_VERSION, LocalKafka, LocalKafkaError, _cluster_id, _java_major

KAFKA_CLUSTER_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}")


def test_missing_java_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    broker = LocalKafka(home=tmp_path, port=1)
    with pytest.raises(LocalKafkaError, match="Java is not installed.*KAFKA_BOOTSTRAP_SERVERS"):
        broker.up(timeout=1, echo=lambda *_: None)


def test_missing_maven_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalKafkaError, match=r"Maven \(mvn\) is not installed"):
        LocalKafka(home=tmp_path).fetch(echo=lambda *_: None)


def test_taken_port_is_reported(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        broker = LocalKafka(home=tmp_path, port=port)
        with pytest.raises(LocalKafkaError, match=f"port {port}.*taken.*CONNECT_KAFKA_PORT"):
            broker.up(timeout=1, echo=lambda *_: None)


def test_status_of_a_broker_never_started(tmp_path: Path) -> None:
    status = LocalKafka(home=tmp_path, port=19092).status()
    assert not status.running
    assert status.bootstrap == "127.0.0.1:19092"
    assert status.version == KAFKA_VERSION
    assert "stopped" in status.describe()


@pytest.mark.parametrize(
    ("text", "major"),
    [('openjdk version "17.0.15" 2025-04-15', 17), ('java version "1.8.0_392"', 8), ("nonsense", None)],
)
def test_java_version_parsing(text: str, major: int | None) -> None:
    assert _java_major(text) == major


def _is_valid_cluster_id(cluster_id: str) -> bool:
    padded = cluster_id + "=="
    return bool(KAFKA_CLUSTER_ID.fullmatch(cluster_id)) and len(base64.urlsafe_b64decode(padded)) == 16


def test_generated_cluster_ids_are_valid_and_never_read_as_an_option() -> None:
    ids = [_cluster_id() for _ in range(20_000)]
    assert all(_is_valid_cluster_id(cluster_id) for cluster_id in ids)
    assert len(set(ids)) == len(ids)


def test_an_id_that_would_start_with_a_dash_is_drawn_again() -> None:
    draws = iter([b"\xf8" + bytes(15), b"\x01" * 16])  # the first encodes to "-A…"
    assert _cluster_id(lambda: next(draws)) == base64.urlsafe_b64encode(b"\x01" * 16).decode().rstrip("=")


@given(st.lists(st.binary(min_size=16, max_size=16), min_size=1).filter(
    lambda draws: not base64.urlsafe_b64encode(draws[-1]).startswith(b"-")))
def test_the_cluster_id_is_the_first_draw_that_does_not_start_with_a_dash(draws: list[bytes]) -> None:
    encoded = [base64.urlsafe_b64encode(draw).decode().rstrip("=") for draw in draws]
    expected = next(cluster_id for cluster_id in encoded if not cluster_id.startswith("-"))
    source = iter(draws)
    cluster_id = _cluster_id(lambda: next(source))
    assert cluster_id == expected and _is_valid_cluster_id(cluster_id)


def _sleeping_process():  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_broker_still_reading_its_partitions_is_waited_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import stream_app.kafka_local as kafka_local

    broker = LocalKafka(home=tmp_path, port=19092)
    broker.state_dir.mkdir(parents=True)
    (broker.state_dir / "data" / "orders-0").mkdir(parents=True)
    answers = iter([False, False, True])

    def wait_for_broker(bootstrap: str, timeout: float) -> bool:
        broker.log_file.write_text("Creating new partition ...\n")  # the broker is busy loading
        return next(answers)

    monkeypatch.setattr(kafka_local, "wait_for_broker", wait_for_broker)
    said: list[str] = []
    process = _sleeping_process()
    try:
        assert broker._wait_answering(process.pid, timeout=1, echo=said.append)
    finally:
        process.kill()
        process.wait()
    assert len(said) == 2 and "reading 1 partitions" in said[0] and "kafka reset" in said[0]


def test_a_broker_whose_log_stays_still_or_that_died_is_given_up(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    import os

    import stream_app.kafka_local as kafka_local

    broker = LocalKafka(home=tmp_path, port=19092)
    broker.state_dir.mkdir(parents=True)
    broker.log_file.write_text("started\n")
    os.utime(broker.log_file, (1, 1))  # written long ago
    calls: list[float] = []
    monkeypatch.setattr(kafka_local, "wait_for_broker", lambda bootstrap, timeout: calls.append(timeout) or False)
    process = _sleeping_process()
    try:
        assert not broker._wait_answering(process.pid, timeout=1, echo=lambda *_: None)
    finally:
        process.kill()
        process.wait()
    assert calls == [1]
    broker.log_file.write_text("still writing\n")
    assert not broker._wait_answering(process.pid, timeout=1, echo=lambda *_: None)  # dead: not waited on
    assert calls == [1, 1]
