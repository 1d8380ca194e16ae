"""What one worker's ``/metrics`` says about each flow, for the flows page: events in per source,
commands out per target, stage messages by outcome, conflicts; with rates between two reads.

One worker's counters (the one at ``CONNECT_WEB_HOST:CONNECT_WEB_PORT``): with several workers
Prometheus and the Grafana dashboards are the sum (docs/adr/0031).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["FlowFigures", "WorkerFigures", "parse"]


@dataclass
class FlowFigures:
    #: (what, count, per second or None): events in per source, commands out per target, stages
    rows: list[tuple[str, float, float | None]] = field(default_factory=list)


def parse(text: str) -> dict[str, dict[str, float]]:
    """flow → {"events in · salesforce.Contact": n, "commands out · tims.customer": n,
    "stage ingest · quarantined": n, "conflicts": n}."""
    flows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            flow = labels.get("flow")
            if flow is None or not sample.name.endswith("_total"):
                continue
            # the exposition names a counter's family with or without _total, depending on the writer
            counter = sample.name.removesuffix("_total")
            if counter == "connect_flow_events_in":
                flows[flow][f"events in · {labels['source']}.{labels['entity']}"] += value
            elif counter == "connect_flow_commands_out":
                flows[flow][f"commands out · {labels['system']}.{labels['object']}"] += value
            elif counter == "connect_flow_stage_messages":
                flows[flow][f"stage {labels['stage']} · {labels['outcome']}"] += value
            elif counter == "connect_flow_conflicts":
                flows[flow]["conflicts"] += value
    return {flow: dict(figures) for flow, figures in flows.items()}


class WorkerFigures:
    """Reads a worker's /metrics when asked; rates come from the change since the read before."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._previous: tuple[float, dict[str, dict[str, float]]] | None = None
        #: why the last read failed (shown on the page), or None
        self.problem: str | None = None
        #: one client for the console's life: making one costs 0.4 s or more (its TLS context)
        self._client: httpx.AsyncClient | None = None

    async def read(self) -> dict[str, FlowFigures]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=2.0)
        try:
            answer = await self._client.get(self.url)
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            self.problem = f"the worker's metrics at {self.url} did not answer ({type(exc).__name__})"
            return {}
        self.problem = None
        now, current = time.monotonic(), parse(answer.text)
        before = self._previous
        self._previous = (now, current)
        return {flow: self._figures(flow, figures, now, before) for flow, figures in current.items()}

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    @staticmethod
    def _figures(flow: str, figures: dict[str, float], now: float,
                 before: tuple[float, dict[str, dict[str, float]]] | None) -> FlowFigures:
        out = FlowFigures()
        elapsed = now - before[0] if before else 0.0
        for what, count in sorted(figures.items()):
            rate: Any = None
            if before is not None and elapsed >= 1.0 and what in before[1].get(flow, {}):
                rate = round(max(0.0, count - before[1][flow][what]) / elapsed, 2)
            out.rows.append((what, count, rate))
        return out
