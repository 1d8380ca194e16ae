"""A worker asked to stop is gone within ``CONNECT_SHUTDOWN_GRACE`` seconds, broker or not
(docs/adr/0024, addendum).

Faust stops a worker service by service, and some of them wait for the broker on the way: the
consumer's thread waits for its last fetch and its leave-group request (60 s each, in
``mode``), the producer flushes what it holds. With the broker gone a SIGTERM then took a
minute or more, past ``docker stop``'s and Kubernetes' grace, which end it with SIGKILL anyway,
and a rolling restart waited that long for each worker.

:class:`ConnectWorker` arms a :class:`ShutdownDeadline` when the first SIGTERM or SIGINT
arrives. When the stop has not ended when it expires, the deadline logs what was still stopping
and ends the process with :data:`EXIT_SHUTDOWN_DEADLINE`. Nothing is lost: what the worker
processed and did not commit is delivered again from the group's last committed offsets
(at-least-once; the sinks' version guard makes the repeated writes harmless). It runs on a
thread of its own, so a blocked event loop does not hold it up.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any, Callable

from faust.worker import Worker

__all__ = ["ConnectWorker", "ShutdownDeadline", "EXIT_SHUTDOWN_DEADLINE", "still_stopping"]

#: the exit code of a worker that did not finish stopping in time (sysexits' EX_TEMPFAIL: start
#: it again; nothing uncommitted is lost)
EXIT_SHUTDOWN_DEADLINE = 75
#: services named in the last log line, at most
_NAMED = 12
log = logging.getLogger(__name__)


class ShutdownDeadline:
    """Ends the process ``grace`` seconds after :meth:`arm`, unless it ended before."""

    def __init__(self, grace: float, abandoned: Callable[[], list[str]],
                 exit: Callable[[int], Any] = os._exit) -> None:
        self.grace, self.abandoned, self._exit = grace, abandoned, exit
        self._timer: threading.Timer | None = None

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def arm(self, reason: str) -> None:
        """Start counting (once: a second signal changes nothing)."""
        if self._timer is not None:
            return
        log.info("shutdown: %s; stopping, and exiting with code %d if not done within %.0f s "
                 "(CONNECT_SHUTDOWN_GRACE)", reason, EXIT_SHUTDOWN_DEADLINE, self.grace)
        self._timer = threading.Timer(self.grace, self.expire, args=(reason,))
        self._timer.name, self._timer.daemon = "shutdown-deadline", True
        self._timer.start()

    def disarm(self) -> None:
        """The stop ended in time (a process that goes on, as a test calling a source in-process)."""
        if self._timer is not None:
            self._timer.cancel()

    def expire(self, reason: str) -> None:
        try:
            left = ", ".join(self.abandoned()) or "nothing named"
        except Exception as exc:  # noqa: BLE001 - the exit must happen whatever the description does
            left = f"(not known: {type(exc).__name__})"
        log.error("shutdown: not done %.0f s after %s (is the broker reachable?); exiting with code %d. "
                  "Abandoned while stopping: %s. Nothing committed is lost: what was processed and not "
                  "committed is delivered again from the last committed offsets.",
                  self.grace, reason, EXIT_SHUTDOWN_DEADLINE, left)
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._exit(EXIT_SHUTDOWN_DEADLINE)


def still_stopping(root: Any) -> list[str]:
    """The services under ``root`` (a ``mode`` service tree) that have not shut down, deepest first:
    the ones the stop waits for."""
    found: list[str] = []

    def walk(service: Any) -> bool:
        waiting = [child for child in getattr(service, "_children", []) if child is not None and walk(child)]
        if getattr(service, "state", "shutdown") in ("shutdown", "init", "crashed") and not waiting:
            return False
        if not waiting:
            found.append(str(service.shortlabel).strip("^-"))
        return True

    walk(root)
    return found if len(found) <= _NAMED else [*found[:_NAMED], f"{len(found) - _NAMED} more services"]


class ConnectWorker(Worker):
    """Faust's worker with a deadline on its stop (the app's ``Worker`` class)."""

    def __init__(self, app: Any, *services: Any, **kwargs: Any) -> None:
        super().__init__(app, *services, **kwargs)
        self.deadline = ShutdownDeadline(app.settings.shutdown_grace, self._abandoned)

    def _repr_name(self) -> str:
        """Faust's own name in the log: tools wait for its ``[^Worker]: Ready`` line."""
        return "Worker"

    def _abandoned(self) -> list[str]:
        services = still_stopping(self)
        try:
            held = len(self.app.consumer.assignment())
        except Exception:  # noqa: BLE001 - the consumer may be gone already
            return services
        return [*services, f"{held} assigned partitions (their uncommitted offsets)"]

    def _on_sigterm(self) -> None:
        self.deadline.arm(f"{signal.Signals.SIGTERM.name} received")
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self.deadline.arm(f"{signal.Signals.SIGINT.name} received")
        super()._on_sigint()
