"""What a command says when it stops on a user's mistake (docs/adr/0022-clean-command-errors.md).

:func:`explain` turns the exceptions a command meets for reasons the user can fix (a broker that
does not answer, a setting, a missing argument, a port in use, a cluster operation the broker
refused) into a line that says what is wrong and what to do, and an exit code. Anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import logging
from typing import NamedTuple

__all__ = ["SETTINGS_HINT", "Explained", "broker_unreachable", "explain", "is_unreachable_broker", "quiet_connection_errors"]


SETTINGS_HINT = "Fix the environment variables above (or CONNECT_CONFIG_FILE) and run again."


class Explained(NamedTuple):
    message: str
    exit_code: int


def broker_unreachable(bootstrap: str) -> str:
    """What to say when the Kafka client could not bootstrap: the TLS or SASL problem when it is
    one (connectors/kafka_security.py), else that the broker does not answer."""
    from connectors.kafka_security import security_problem

    problem = security_problem(bootstrap)
    if problem is not None:
        return f"cannot use the Kafka broker at {bootstrap}: {problem}."
    return (f"the Kafka broker at {bootstrap} is not answering. Start the local one with `stream-app kafka up` "
            "(or run `make demo`), or point KAFKA_BOOTSTRAP_SERVERS at a running broker.")


class _ConnectionErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unable connect to")


def quiet_connection_errors() -> None:
    """Keep the Kafka client's "Unable connect to ..." lines out of a command's output: the
    command says it once, with what to do (:func:`broker_unreachable`)."""
    client_log = logging.getLogger("aiokafka")
    if not any(isinstance(f, _ConnectionErrors) for f in client_log.filters):
        client_log.addFilter(_ConnectionErrors())


def is_unreachable_broker(exc: BaseException) -> bool:
    """The client could not reach the broker (wherever in the chain of causes it says so)."""
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (KafkaConnectionError, NodeNotReadyError, KafkaTimeoutError, RequestTimedOutError)):
            return True
        current = current.__cause__ or current.__context__
    return False


def explain(exc: BaseException, bootstrap: str) -> Explained | None:
    """The message and exit code for a user's mistake; None for anything else (a bug)."""
    import click

    from connectors.errors import ConnectorError
    from connectors.kafka_admin import KafkaAdminError
    from stream_app.settings import SettingsError

    if is_unreachable_broker(exc):
        return Explained(broker_unreachable(bootstrap), 1)
    if isinstance(exc, SettingsError):
        return Explained(f"{exc}\n{SETTINGS_HINT}", 2)
    if isinstance(exc, click.UsageError):
        return Explained(f"{exc.format_message()} (see --help)", 2)
    if isinstance(exc, click.Abort):
        return Explained("stopped; nothing changed", 1)
    if isinstance(exc, (ConnectorError, KafkaAdminError)):
        return Explained(str(exc), 1)
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return Explained(f"{exc.strerror or exc}: a port it needs is in use. Free it, or choose another port "
                         "(see --help).", 1)
    return None
