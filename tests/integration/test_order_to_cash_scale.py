"""Order to cash at scale (issue #13): 1,000 Closed Won Opportunities with 3 lines each and
2,000 TIMS invoices and payments (a tenth of the invoices corrected, a fifth of the payments
applied to no invoice) arriving at once for 100 customers; two workers, one SIGKILLed mid-run
and restarted. Done means exactly one TIMS sales order per won Opportunity, each Opportunity
showing its order, every Account's open balance and lifetime revenue equal to the cent to what
the TIMS sandbox's own records add up to, nothing dead-lettered or quarantined, and the systems
quiet once they agree (tests/support/order_to_cash_scale.py; bench/order_to_cash_bench.py
prints the same run's figures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.order_to_cash_scale import INVARIANTS, ScalePlan, run_order_to_cash_scale

# In one full CI run 116 of the 1,000 orders never reached TIMS. The likely cause, found by
# reading the code, is fixed (docs/adr/0021, "Waiting references", addendum;
# tests/unit/topologies/test_orders_waiting.py); should it fail again, the runner prints the
# quarantine reasons.
# `make scale` runs it, not `make test`: with the scale runs `make test` took 29.5 minutes on the
# 2-core machine (2026-12-06), at its 30-minute budget.
pytestmark = [pytest.mark.integration, pytest.mark.scale]


async def test_orders_and_receivables_through_a_worker_kill(app_env: dict[str, str], tmp_path: Path) -> None:
    result = await run_order_to_cash_scale(app_env, tmp_path, ScalePlan())
    print(f"\norder to cash scale: {result}")
    assert result["converged_s"] is not None, result
    assert {name: result[name] for name in INVARIANTS} == dict.fromkeys(INVARIANTS, 0), result
    assert result["tims_orders"] == result["won"] == 1_000, result
    assert result["quiet"], result
