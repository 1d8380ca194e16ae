"""The chaos run, full size: the customer sync under API faults and kills (tests/support/chaos.py).

1,000 people through the customer sync paths while 10 % of the API calls fail and tokens expire;
two workers and the three sources SIGKILLed again and again (each restarted), and the broker
SIGKILLed once: the run's own broker, on a free port with its own data dir (deleted afterwards),
never the one at KAFKA_BOOTSTRAP_SERVERS. Then the invariants are counted against the sandbox.

Usage: .venv/bin/python bench/chaos.py [--people 1000] [--worker-kills 10] [--source-kills 3]
           [--broker-kills 1] [--error-rate 0.1] [--seed 18]
With --broker-kills 0 it uses KAFKA_BOOTSTRAP_SERVERS (or the local broker at 127.0.0.1:9092).
Needs Java and Maven for its own broker (the jars are cached once, like `stream-app kafka up`).
The last line is one JSON object: the invariants (missing, duplicated, wrong_ids,
edits_not_converged, writes_after_quiet, dead_letters, quarantined, unexpected_exits; all 0 when
the connector held up) and the run's figures. Exit status 0 only when every invariant is 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.chaos import INVARIANTS, ChaosPlan, run_chaos  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--worker-kills", type=int, default=10)
    parser.add_argument("--source-kills", type=int, default=3)
    parser.add_argument("--broker-kills", type=int, default=1)
    parser.add_argument("--error-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--logs", type=Path, default=None, help="keep the processes' logs here")
    args = parser.parse_args()
    plan = ChaosPlan(people=args.people, worker_kills=args.worker_kills, source_kills=args.source_kills,
                     broker_kills=args.broker_kills, error_rate=args.error_rate, seed=args.seed,
                     arrival_seconds=max(10.0, args.people / 10), window=max(20, args.people // 15),
                     kill_every=8.0, converge_timeout=max(120.0, args.people * 0.3), settle_timeout=120.0,
                     quiet_window=8.0)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    with tempfile.TemporaryDirectory(prefix="chaos-") as scratch:
        workdir = args.logs or Path(scratch)
        print(f"chaos: {plan.people} people, logs in {workdir}", file=sys.stderr)
        figures = asyncio.run(run_chaos(plan, workdir, bootstrap))
    print(json.dumps(figures))
    return 0 if not any(figures[name] for name in INVARIANTS) else 1


if __name__ == "__main__":
    sys.exit(main())
