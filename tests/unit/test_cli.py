"""Reading a stream-app command line before Faust does (stream_app/cli.py, docs/adr/0022)."""

from __future__ import annotations

from stream_app.cli import Invocation


def test_the_command_is_the_first_word_that_is_not_an_option_or_its_value() -> None:
    assert Invocation(["--loglevel", "info", "-W", "/tmp", "dlq", "list"]).command == "dlq"
    assert Invocation(["--debug", "worker", "--web-port", "1"]).command == "worker"
    assert Invocation(["--version"]).command is None


def test_help_version_and_the_local_broker_run_whatever_the_settings_say() -> None:
    assert Invocation([]).lenient and Invocation(["dlq", "--help"]).lenient
    assert Invocation(["--version"]).lenient and Invocation(["kafka", "status"]).lenient
    assert not Invocation(["dlq", "list"]).lenient and not Invocation(["worker"]).lenient


def test_debug_is_the_flag_or_the_debug_level() -> None:
    assert Invocation(["--debug", "dlq", "list"]).debug
    assert Invocation(["-l", "debug", "dlq", "list"]).debug and Invocation(["--loglevel=DEBUG", "dlq"]).debug
    assert not Invocation(["--loglevel", "info", "dlq", "list"]).debug


def test_connect_log_level_reaches_faust_for_sources_and_workers(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from stream_app.cli import apply_log_level
    from stream_app.settings import load_settings

    for name in ("CONNECT_LOG_LEVEL", "CONNECT_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    defaults = load_settings()
    source = Invocation(["source", "tims"])
    apply_log_level(source, defaults)
    assert source.args == ["--loglevel", "INFO", "source", "tims"]
    command = Invocation(["dlq", "list"])
    apply_log_level(command, defaults)  # a one-shot command keeps Faust's quiet default...
    assert command.args == ["dlq", "list"]
    monkeypatch.setenv("CONNECT_LOG_LEVEL", "warning")
    apply_log_level(command, load_settings())  # ...unless CONNECT_LOG_LEVEL is set
    assert command.args == ["--loglevel", "WARN", "dlq", "list"]
    explicit = Invocation(["worker", "-l", "debug"])
    apply_log_level(explicit, load_settings())
    assert explicit.args == ["worker", "-l", "debug"]
