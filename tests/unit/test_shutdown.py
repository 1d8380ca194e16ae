"""The stop deadline: it ends the process once, with its code, naming what was still stopping."""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from stream_app.shutdown import EXIT_SHUTDOWN_DEADLINE, ShutdownDeadline, still_stopping


def service(name: str, state: str, *children: Any) -> Any:
    return SimpleNamespace(shortlabel=name, state=state, _children=list(children))


def test_the_services_still_stopping_are_named_deepest_first() -> None:
    tree = service("^Worker", "stopping",
                   service("^-ConnectApp", "stopping",
                           service("^--Consumer", "stopping", service("^---AIOKafkaConsumerThread", "stopping")),
                           service("^--TableManager", "shutdown"),
                           service("^--Web", "running", service("^---Server", "shutdown"))))
    assert still_stopping(tree) == ["AIOKafkaConsumerThread", "Web"]
    assert still_stopping(service("^Worker", "shutdown")) == []


def test_the_deadline_exits_once_with_its_code_and_says_what_it_abandoned(caplog: pytest.LogCaptureFixture) -> None:
    exited: list[int] = []
    done = threading.Event()

    def exit(code: int) -> None:
        exited.append(code)
        done.set()

    deadline = ShutdownDeadline(0.05, lambda: ["AIOKafkaConsumerThread", "4 assigned partitions"], exit=exit)
    with caplog.at_level(logging.INFO, logger="stream_app.shutdown"):
        deadline.arm("SIGTERM received")
        deadline.arm("SIGINT received")
        assert done.wait(5)
    assert exited == [EXIT_SHUTDOWN_DEADLINE] and deadline.armed
    last = caplog.records[-1]
    assert last.levelno == logging.ERROR
    assert "not done 0 s after SIGTERM received" in last.getMessage()
    assert "Abandoned while stopping: AIOKafkaConsumerThread, 4 assigned partitions" in last.getMessage()
    assert sum("shutdown: SIGTERM received" in r.getMessage() for r in caplog.records) == 1


def test_a_description_that_fails_still_lets_the_process_exit(caplog: pytest.LogCaptureFixture) -> None:
    exited: list[int] = []

    def broken() -> list[str]:
        raise RuntimeError("consumer gone")

    ShutdownDeadline(1, broken, exit=exited.append).expire("SIGTERM received")
    assert exited == [EXIT_SHUTDOWN_DEADLINE]
    assert "(not known: RuntimeError)" in caplog.records[-1].getMessage()


def test_a_disarmed_deadline_does_not_end_the_process() -> None:
    import time

    exits: list[int] = []
    deadline = ShutdownDeadline(0.2, lambda: [], exit=exits.append)
    deadline.arm("SIGTERM received")
    deadline.disarm()
    time.sleep(0.5)
    assert exits == []
