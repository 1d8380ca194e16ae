"""The sandbox's one entry point for the app: what ``stream-app sandbox`` and ``stream-app demo``
call. The sandbox is for development and tests; nothing else in the app imports it."""

from sandbox.demo import DemoError, run_demo
from sandbox.run import serve_forever, start_sandbox

__all__ = ["DemoError", "run_demo", "serve_forever", "start_sandbox"]
