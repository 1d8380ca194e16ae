"""The local broker manager's failure messages, without starting a broker."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from stream_app.kafka_local import KAFKA_VERSION, LocalKafka, LocalKafkaError, _java_major


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
