"""``/metrics`` for a source process, which has no Faust web server of its own.

The worker serves the registry on its web port (stream_app/metrics.py). A source runs alone
(docs/adr/0004-sources-as-processes.md), so it gets prometheus_client's HTTP server on a port of
its own, in a daemon thread; every scrape first reads the source's counters (``refresh``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from stream_app import metrics

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


def serve_source_metrics(source: Any, port: int, host: str = "127.0.0.1") -> int:
    """Watch ``source`` and serve the registry on ``host:port`` (0 picks a free port); returns
    the port it listens on."""
    metrics.watch_source(source)
    server, _thread = start_http_server(port, addr=host, registry=_RefreshingRegistry())
    bound = int(server.server_address[1])
    log.info("source %s: metrics on http://%s:%d/metrics", source.system, host, bound)
    return bound
