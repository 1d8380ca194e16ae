"""``/metrics``, ``/healthz`` and ``/readyz`` for a source process, which has no Faust web server.

The worker serves these on its web port (stream_app/metrics.py, stream_app/health.py). A source
runs alone (docs/adr/0004-sources-as-processes.md), so it gets a small WSGI server on a port of
its own, in a daemon thread: every scrape first reads the source's counters (``refresh``), and
the health answers are read from the source and the loop probe, never by calling the source's
event loop (a blocked loop is what ``/healthz`` must report, not wait for).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from typing import Any, Callable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.core import Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from stream_app import metrics
from stream_app.health import Report

__all__ = ["serve_source_metrics"]

log = logging.getLogger(__name__)


class _RefreshingRegistry(Collector):
    """The metrics registry, brought up to date on every collection."""

    def collect(self) -> Iterable[Metric]:
        metrics.refresh()
        return metrics.REGISTRY.collect()

    def restricted_registry(self, names: Iterable[str]) -> Any:
        metrics.refresh()
        return metrics.REGISTRY.restricted_registry(names)


class _QuietHandler(WSGIRequestHandler):
    """No access log line per probe or scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _app(reports: dict[str, Callable[[], Report]]) -> Callable[..., Iterable[bytes]]:
    """``/healthz`` and ``/readyz`` from ``reports``; any other path is the metrics page."""
    metrics_app = make_wsgi_app(_RefreshingRegistry())

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        report = reports.get(environ.get("PATH_INFO", ""))
        if report is None:
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        result = report()
        body = json.dumps(result.body()).encode()
        start_response(f"{result.status} {'OK' if result.ok else 'Service Unavailable'}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    return app


def serve_source_metrics(source: Any, port: int, host: str = "127.0.0.1",
                         health: dict[str, Callable[[], Report]] | None = None) -> int:
    """Watch ``source`` and serve the registry on ``host:port`` (0 picks a free port), with
    ``health`` as ``{"/healthz": report, "/readyz": report}``; returns the port it listens on."""
    metrics.watch_source(source)
    server = make_server(host, port, _app(health or {}), ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="source-metrics", daemon=True).start()
    bound = int(server.server_address[1])
    log.info("source %s: metrics on http://%s:%d/metrics, health on /healthz and /readyz", source.system, host, bound)
    return bound
