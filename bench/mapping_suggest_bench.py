"""How many of the field pairs we wrote by hand `stream-app mappings suggest` finds (docs/adr/0030).

The hand-written pairs: every inbound rule of the customer sync's mappings (source field →
canonical field; a ``split`` rule counts as a pair too), every outbound ``from``/``concat`` rule
(canonical field → target field; a concat is found when any of its fields is proposed), and the
products flow's field list (TIMS item field ↔ Product2 field). Links and constant values are not
field pairs. A pair is recovered when the suggestion for its target field names its source.

Usage: .venv/bin/python bench/mapping_suggest_bench.py
The last line is one JSON object; exit status 0 when the share reaches the goal (0.90).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from quality.suggest import suggest  # noqa: E402
from topologies.customer_sync.mapping import load_mappings  # noqa: E402

GOAL = 0.90
CANONICAL = "canonical.customer"


def hand_written() -> dict[tuple[str, str], list[tuple[frozenset[str], str]]]:
    """(source object, target object) → [(the source fields any of which is right, target field)]."""
    pairs: dict[tuple[str, str], list[tuple[frozenset[str], str]]] = defaultdict(list)
    mappings = load_mappings(ROOT / "topologies" / "customer_sync" / "mappings")
    for source, rules in mappings.inbound.items():
        for canonical, rule in rules.items():
            pairs[(source, CANONICAL)].append((frozenset({rule.source or ""}), canonical))
    for target, spec in mappings.outbound.items():
        for field, rule in spec.fields.items():
            if rule.source:
                pairs[(CANONICAL, target)].append((frozenset({rule.source}), field))
            elif rule.concat:
                pairs[(CANONICAL, target)].append((frozenset(rule.concat), field))
    products = yaml.safe_load((ROOT / "topologies" / "products" / "mappings" / "products.yaml").read_text())
    for row in products["fields"]:
        pairs[("tims.item", "salesforce.Product2")].append((frozenset({row["tims"]}), row["salesforce"]))
    return pairs


def main() -> int:
    found = total = proposed = 0
    missed = []
    for (source, target), expected in sorted(hand_written().items()):
        suggestions = {s.target: s for s in suggest(source, target)}
        proposed += len(suggestions)
        hits = 0
        for sources, field in expected:
            got = suggestions.get(field)
            if got is not None and got.source in sources:
                hits += 1
            else:
                missed.append(f"{source}.{'|'.join(sorted(sources))} -> {target}.{field} "
                              f"(suggested {got.source if got else 'nothing'})")
        print(f"{source} -> {target}: {hits}/{len(expected)} recovered, {len(suggestions)} proposed")
        found += hits
        total += len(expected)
    for line in missed:
        print(f"  missed: {line}")
    share = found / total
    print(f"recovered {found} of {total} hand-written field pairs: {share:.1%} (goal {GOAL:.0%})")
    print(json.dumps({"recovered": found, "pairs": total, "share": round(share, 4), "proposed": proposed, "goal": GOAL}))
    return 0 if share >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
