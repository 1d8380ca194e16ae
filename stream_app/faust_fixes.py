"""Corrections to faust-streaming behaviour that loses messages; applied when the app is built.

**Resuming flow that is not suspended clears no queue.** Faust's flow control
(``mode.utils.queues.FlowControlEvent``) empties every agent's input queue on ``resume()``,
meant for the moment a rebalance is over: what was queued before it is stale, and the seek to
the committed offsets delivers it again. But recovery resumes the flow twice. When a worker
has tables to restore, recovery resumes it and starts the fetcher early; messages of the
stream partitions then reach the agents' queues while ``Recovery.on_recovery_completed`` seeks
those partitions, and that method then calls ``resume()`` again. The second call empties
queues of messages that are current, already counted as read: the seek has happened, nothing
delivers them again, and their offsets are committed once later messages are processed.

Seen as a worker restarted after a SIGKILL never processing a block of 2 to 20 consecutive
offsets per partition (``tests/integration/test_worker.py::test_killed_worker_loses_nothing``,
about one run in two here): traced, every lost message had been put into the agent's queue
and was gone after "Resume stream partitions". docs/adr/0012.

The fix: ``resume()`` clears the queues only when the flow was suspended. A real rebalance
suspends the flow first (and Faust clears the queues then too), so it still starts clean.
"""

from __future__ import annotations

from mode.utils.queues import FlowControlEvent

__all__ = ["apply"]

_MARK = "_connect_clears_only_when_suspended"


def apply() -> None:
    """Install the corrections (idempotent)."""
    if getattr(FlowControlEvent.resume, _MARK, False):
        return

    def resume(self: FlowControlEvent) -> None:
        """Resume production into the managed queues; empty them only if it was suspended."""
        was_suspended = not self.is_active()
        self._suspend.clear()
        self._resume.set()
        if was_suspended:
            self.clear()

    setattr(resume, _MARK, True)
    FlowControlEvent.resume = resume  # type: ignore[method-assign]
