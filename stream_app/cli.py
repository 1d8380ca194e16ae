"""Console entry point ``stream-app``: builds the app from the settings and runs its Faust CLI.

What a command line needs decides what is built (docs/adr/0022-clean-command-errors.md):

- help, ``--version`` and ``stream-app kafka``: neither the settings nor the flows may stop
  them; with invalid settings they run on the defaults, and nothing is installed or connected.
- the project's commands (``stream_app.commands``): valid settings, nothing installed (they read
  what they need from the settings).
- ``worker`` and Faust's own commands: valid settings and every part installed (flows, sinks).

A user mistake ends with one or two lines and a non-zero exit; the traceback shows only with
``--debug`` or at debug log level.
"""

from __future__ import annotations

import asyncio
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Sequence

from stream_app.errors import SETTINGS_HINT
from stream_app.settings import SettingsError, lenient_settings, load_settings, misspelt_variables

if TYPE_CHECKING:
    import click

    from stream_app.app import ConnectApp

__all__ = ["main", "Invocation", "apply_log_level"]

#: Faust's top-level options that take a value (so the word after them is not the command)
_VALUE_OPTIONS = {"-A", "--app", "-W", "--workdir", "-D", "--datadir", "-L", "--loop", "-f", "--logfile",
                  "-l", "--loglevel", "--blocking-timeout", "--console-port"}
_FAUST_LEVELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARN", "error": "ERROR"}
#: commands that run for long and log as they go: CONNECT_LOG_LEVEL applies even at its default
_LONG_RUNNING = {"worker", "source"}


class Invocation:
    """What one ``stream-app`` command line asks for, read before Faust parses it."""

    def __init__(self, args: Sequence[str]) -> None:
        self.args = list(args)
        self.command = self._command()
        self.help = any(arg in ("--help", "-h") for arg in self.args) or self.command is None
        self.version = "--version" in self.args
        self.loglevel = self._option("-l", "--loglevel")

    def _command(self) -> str | None:
        skip = False
        for arg in self.args:
            if skip:
                skip = False
            elif arg in _VALUE_OPTIONS:
                skip = True
            elif not arg.startswith("-"):
                return arg
        return None

    def _option(self, short: str, long: str) -> str | None:
        for i, arg in enumerate(self.args):
            if arg in (short, long) and i + 1 < len(self.args):
                return self.args[i + 1]
            if arg.startswith(long + "="):
                return arg.partition("=")[2]
        return None

    @property
    def lenient(self) -> bool:
        """True when invalid settings must not stop the command (help, version, the local broker)."""
        return self.help or self.version or self.command == "kafka"

    @property
    def debug(self) -> bool:
        return "--debug" in self.args or (self.loglevel or "").lower() == "debug"


def our_version() -> str:
    try:
        return version("pardot-tims-connect")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def version_line() -> str:
    from faust import __version__ as faust_version

    return f"stream-app (pardot-tims-connect) {our_version()}, on Faust {faust_version}"


def main(argv: Sequence[str] | None = None) -> None:
    call = Invocation(sys.argv[1:] if argv is None else argv)
    if call.version and call.command is None:
        print(version_line())
        return
    for warning in misspelt_variables(os.environ):
        print(f"stream-app: warning: {warning}", file=sys.stderr)
    try:
        settings = load_settings()
    except SettingsError as exc:
        if not call.lenient:
            _fail(f"{exc}\n{SETTINGS_HINT}", 2)
        settings = lenient_settings()
    apply_log_level(call, settings)
    app = _build(settings, call)
    if call.command == "worker" and not call.help:
        _create_topics_first(app, call)
    _run_cli(app, call)


def apply_log_level(call: Invocation, settings: Any) -> None:
    """CONNECT_LOG_LEVEL as Faust's --loglevel (Faust's log handlers take their level from that
    option): for the long-running processes always, for other commands when it is set; an
    explicit --loglevel wins."""
    if call.loglevel is None and (call.command in _LONG_RUNNING or "log_level" in settings.model_fields_set):
        call.args[:0] = ["--loglevel", _FAUST_LEVELS[settings.log_level.value]]
        call.loglevel = settings.log_level.value


def _build(settings: Any, call: Invocation) -> "ConnectApp":
    from stream_app.app import create_app
    from stream_app.commands import project_commands

    full = not call.lenient and call.command not in project_commands()
    try:
        return create_app(settings, flows=full, sinks=full)
    except ValueError as exc:  # SettingsError and the flows' mapping errors: what the user configured
        if call.debug:
            raise
        _fail(f"{exc}\nFix the configuration above and run again.", 2)


def _fail(message: str, code: int) -> None:
    print(f"stream-app: {message}", file=sys.stderr)
    sys.exit(code)


def _create_topics_first(app: "ConnectApp", call: Invocation) -> None:
    """Create the app's topics, so the first group assignment includes them; a broker that does
    not answer ends the worker here, with what to do."""
    from stream_app.errors import broker_unreachable, is_unreachable_broker, quiet_connection_errors

    if not call.debug:
        quiet_connection_errors()
    try:
        asyncio.run(app.owned.create())
    except Exception as exc:
        if is_unreachable_broker(exc) and not call.debug:
            _fail(broker_unreachable(app.settings.kafka_bootstrap_servers), 1)
        print(f"stream-app worker: could not create topics up front ({type(exc).__name__}: {exc}); "
              "the worker will create them", file=sys.stderr)


def _run_cli(app: "ConnectApp", call: Invocation) -> None:
    """Faust's CLI (``app.main()``) under our name and version, our commands listed first."""
    from faust.cli.faust import cli

    from stream_app.commands import project_commands

    app.finalize()
    app.worker_init()
    app.discover()
    app.worker_init_post_autodiscover()
    group = _grouped(cli, project_commands())
    group.main(args=call.args, prog_name="stream-app", app=app)


def _grouped(faust_cli: "click.Group", ours: set[str]) -> "click.Group":
    import click

    class ConnectCli(type(faust_cli)):  # type: ignore[misc]
        def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            limit = formatter.width - 6 - max(map(len, self.commands))
            for title, names in (("Commands", sorted(ours | {"worker"})),
                                 ("Faust's own commands", sorted(set(self.commands) - ours - {"worker"}))):
                rows = [(name, self.commands[name].get_short_help_str(limit))
                        for name in names if name in self.commands and not self.commands[name].hidden]
                if rows:
                    with formatter.section(title):
                        formatter.write_dl(rows)

    def show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value and not ctx.resilient_parsing:
            click.echo(version_line())
            ctx.exit()

    params = [p for p in faust_cli.params if p.name != "version"]
    params.insert(0, click.Option(["--version"], is_flag=True, expose_value=False, is_eager=True,
                                  callback=show_version, help="Show the version and exit."))
    return ConnectCli(name="stream-app", commands=faust_cli.commands, params=params, callback=faust_cli.callback,
                      help="Pardot/Salesforce ⇄ TIMS Connect. `stream-app COMMAND --help` tells more about one.")


if __name__ == "__main__":
    main()
