"""The PromQL of the committed dashboards and alert rules, in the shapes the tests need.

- :func:`dashboard_queries` / :func:`alert_queries`: every expression, with where it comes from.
- :func:`instant`: Grafana's ``$__rate_interval`` (and friends) replaced by a fixed range, so
  Prometheus and promtool accept the query as is.
- :func:`as_bool`: comparisons turned into ``bool`` comparisons, which return 0 or 1 per series
  instead of dropping the series that do not match. An alert's expression queried this way
  returns one series for each thing the alert watches, firing or not: "it returns data" then
  means every metric it reads is there, not that the alert fires.
- :func:`metric_names`: the metric names an expression reads (for the exported-metrics check).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

__all__ = ["ROOT", "dashboard_queries", "alert_queries", "instant", "as_bool", "metric_names",
           "recording_rules_file"]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"
ALERTS = ROOT / "grafana" / "alerts.yml"

_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "inf", "nan", "atan2"}
_COMPARISON = re.compile(r"(==|!=|>=|<=|>(?!=)|<(?!=))(\s*)(?!\s*bool\b)")


def dashboard_queries(directory: Path = DASHBOARDS) -> list[tuple[str, str]]:
    """(``file: panel [refId]``, expr) for every target of every panel, rows included."""
    found = []
    for path in sorted(directory.glob("*.json")):
        stack = list(json.loads(path.read_text())["panels"])
        while stack:
            panel = stack.pop(0)
            stack.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']} [{target['refId']}]", target["expr"]))
    return found


def alert_queries(path: Path = ALERTS) -> list[tuple[str, str]]:
    """(``alert name``, expr) for every rule."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return [(rule.get("alert") or rule["record"], str(rule["expr"]).strip())
            for group in groups for rule in group["rules"]]


def instant(expr: str) -> str:
    for variable, value in _GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def as_bool(expr: str) -> str:
    """``a > 0 and b > 1000`` → ``a > bool 0 and b > bool 1000`` (label matchers left alone)."""
    out: list[str] = []
    outside: list[str] = []
    depth, quote = 0, ""

    def flush() -> None:
        out.append(_COMPARISON.sub(lambda m: f"{m.group(1)} bool ", "".join(outside)))
        outside.clear()

    for i, char in enumerate(expr):
        if quote:
            out.append(char)
            if char == quote and expr[i - 1] != "\\":
                quote = ""
            continue
        if depth == 0 and char not in "{\"'`":
            outside.append(char)
            continue
        flush()
        out.append(char)
        if char in "\"'`":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
    flush()
    return "".join(out)


def metric_names(expr: str) -> set[str]:
    """Names of the metrics an expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', instant(expr))
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def recording_rules_file(queries: list[tuple[str, str]], path: Path) -> Path:
    """The expressions as recording rules, so ``promtool check rules`` parses each one."""
    rules = [{"record": f"connect:dashboard_check_{i}", "expr": instant(expr)} for i, (_, expr) in enumerate(queries)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, sort_keys=False))
    return path


def check_alert_rules(tmp_path: Path, series: list[dict[str, str]], alert_tests: list[dict[str, Any]]) -> None:
    """Run promtool's rule unit tests on grafana/alerts.yml: ``series`` (one sample a minute) and
    the expected alerts at each ``eval_time``; fails the test with promtool's report."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install the Debian package `prometheus`")
    tests = {"rule_files": [str(ALERTS)], "evaluation_interval": "1m",
             "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": alert_tests}]}
    path = tmp_path / "alert_rules_test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
