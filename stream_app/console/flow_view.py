"""The flows page's picture of one flow (docs/adr/0037): sources → stages → sinks, each box
with its figures, laid out on the server as SVG coordinates (no script draws it).

Sources are the systems a flow reads (with their topics' lag and the newest event's time),
stages its stage topics and direct stages, sinks the targets it wrote commands for (from the
worker's counters) or, before any, the sink topics its mapping files name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

__all__ = ["Box", "Edge", "Drawing", "draw", "BOX_WIDTH", "BOX_HEIGHT"]

BOX_WIDTH, BOX_HEIGHT = 230, 58
_COLUMNS = (10, 300, 590)
_GAP = 16


@dataclass
class Box:
    column: int
    title: str
    lines: list[str]
    #: "" or "warn" (lag, errors, paused): drawn with a warning border
    state: str = ""
    x: int = 0
    y: int = 0


@dataclass(frozen=True)
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass
class Drawing:
    boxes: list[Box] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    width: int = _COLUMNS[-1] + BOX_WIDTH + 10
    height: int = 0


def _ago(at_ms: int | None, now: float) -> str:
    if not at_ms:
        return "no event yet"
    seconds = max(0.0, now - at_ms / 1000)
    if seconds < 120:
        return f"last event {seconds:.0f} s ago"
    if seconds < 7200:
        return f"last event {seconds / 60:.0f} min ago"
    return "last event " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at_ms / 1000))


def _sum(figures: Iterable[tuple[str, float, float | None]], prefix: str) -> tuple[float, float | None]:
    count, rate, any_rate = 0.0, 0.0, False
    for what, value, per_second in figures:
        if what.startswith(prefix):
            count += value
            if per_second is not None:
                rate, any_rate = rate + per_second, True
    return count, (round(rate, 2) if any_rate else None)


def _rate(rate: float | None) -> str:
    return f"{rate}/s" if rate is not None else "–/s"


def _source_boxes(flow: Mapping[str, Any], figures: list[tuple[str, float, float | None]],
                  newest: Mapping[str, int], now: float) -> list[Box]:
    boxes = []
    for system in flow["systems"]:
        topics = [(name, lag) for name, lag in flow["sources"] if f".{system}." in f".{name}"]
        lag = sum(lag or 0 for _, lag in topics)
        count, rate = _sum(figures, f"events in · {system}.")
        last = max((newest.get(name, 0) for name, _ in topics), default=0)
        boxes.append(Box(0, system, [f"{count:.0f} events in, {_rate(rate)}", f"lag {lag}", _ago(last, now)],
                         "warn" if lag else ""))
    return boxes


def _stage_boxes(flow: Mapping[str, Any], figures: list[tuple[str, float, float | None]]) -> list[Box]:
    boxes = []
    stages = [(name, None) for name in flow["direct"]] + [(name, lag) for name, lag in flow["stages"]]
    for name, lag in stages:
        stage = name.rsplit(".", 1)[-1]
        done, rate = _sum(figures, f"stage {stage} · processed")
        errors, _ = _sum(figures, f"stage {stage} · quarantined")
        lines = [f"{done:.0f} handled, {_rate(rate)}", f"{errors:.0f} quarantined"
                 + (f" · lag {lag}" if lag is not None else " · direct stage")]
        boxes.append(Box(1, stage, lines, "warn" if errors or lag or flow["paused"] else ""))
    if not boxes:
        boxes.append(Box(1, flow["name"], ["one stage"], "warn" if flow["paused"] else ""))
    if flow["paused"]:
        boxes[0].lines.append("PAUSED")
    return boxes


def _sink_boxes(flow: Mapping[str, Any], figures: list[tuple[str, float, float | None]]) -> list[Box]:
    targets = sorted({what.split(" · ", 1)[1] for what, _, _ in figures if what.startswith("commands out · ")}
                     | set(flow.get("targets", ())))
    boxes = []
    for target in targets:
        count, rate = _sum(figures, f"commands out · {target}")
        boxes.append(Box(2, target, [f"{count:.0f} commands, {_rate(rate)}", f"sink.{target}"]))
    return boxes or [Box(2, "sinks", ["no command yet"])]


def draw(flow: Mapping[str, Any], figures: list[tuple[str, float, float | None]], newest: Mapping[str, int],
         now: float | None = None) -> Drawing:
    """The boxes and arrows of one flow: every source into the first stage, the stages in a
    chain, the last stage into every sink."""
    now = time.time() if now is None else now
    columns = [_source_boxes(flow, figures, newest, now), _stage_boxes(flow, figures), _sink_boxes(flow, figures)]
    drawing = Drawing()
    for index, boxes in enumerate(columns):
        for row, box in enumerate(boxes):
            box.x, box.y = _COLUMNS[index], 10 + row * (BOX_HEIGHT + _GAP)
            drawing.boxes.append(box)
    drawing.height = 20 + max(len(boxes) for boxes in columns) * (BOX_HEIGHT + _GAP)
    sources, stages, sinks = columns
    middle = BOX_HEIGHT // 2
    first, last = stages[0], stages[-1]
    drawing.edges += [Edge(s.x + BOX_WIDTH, s.y + middle, first.x, first.y + middle) for s in sources]
    drawing.edges += [Edge(a.x + BOX_WIDTH // 2, a.y + BOX_HEIGHT, b.x + BOX_WIDTH // 2, b.y)
                      for a, b in zip(stages, stages[1:])]
    drawing.edges += [Edge(last.x + BOX_WIDTH, last.y + middle, s.x, s.y + middle) for s in sinks]
    return drawing
