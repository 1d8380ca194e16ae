"""Record linkage on a synthetic pair of customer files (tests/support/linkage_data.py): F1,
precision and recall of the links, and the time per 1,000 records (docs/adr/0029).

The files share no email and no id; their damage and households are described in
linkage_data.py. The matcher runs as `stream-app identity link` runs it (stream_app/linkage.py),
with the shipped model (trained on another seed: see the ADR), one-to-one and many-to-many.

Usage: .venv/bin/python bench/matching_bench.py [--people 5000] [--seed 2026] [--model FILE]
       .venv/bin/python bench/matching_bench.py --write DIR [--seed 1]   (only write the files)
The last line is one JSON object; exit status 0 when the one-to-one F1 reaches the goal (0.97).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream_app.linkage import run_link  # noqa: E402
from tests.support.linkage_data import write_files  # noqa: E402

GOAL_F1 = 0.97


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--write", type=Path, default=None, help="only write the files into this folder")
    args = parser.parse_args()
    if args.write:
        left, right, fields, matches = write_files(args.write, args.people, args.seed)
        print(f"wrote {left}, {right}, {fields} ({matches} true pairs)")
        return 0
    results: dict[str, object] = {"people": args.people, "seed": args.seed}
    with tempfile.TemporaryDirectory() as folder:
        left, right, fields, matches = write_files(Path(folder), args.people, args.seed)
        for name, unique in (("one_to_one", True), ("many_to_many", False)):
            run = run_link(left, right, fields, Path(folder) / "pairs.csv", truth="person", model_path=args.model,
                           unique=unique)
            assert run.scores is not None
            print(f"{name}: {run.scores.line()}; {1000 * run.seconds / run.records * 1000:.0f} ms per 1,000 records "
                  f"({run.records} records, {run.seconds:.2f} s)")
            results[name] = {"f1": round(run.scores.f1, 4), "precision": round(run.scores.precision, 4),
                             "recall": round(run.scores.recall, 4), "links": run.scores.links,
                             "reviews": run.scores.reviews, "true_pairs": run.scores.true_pairs,
                             "ms_per_1000_records": round(1000 * run.seconds / run.records * 1000, 1)}
        results["records"] = run.records
        results["model"] = f"{run.model.version} {run.model.fingerprint}"
    results["goal_f1"] = GOAL_F1
    print(json.dumps(results))
    return 0 if results["one_to_one"]["f1"] >= GOAL_F1 else 1  # type: ignore[index]


if __name__ == "__main__":
    sys.exit(main())
