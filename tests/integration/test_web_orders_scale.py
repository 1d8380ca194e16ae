"""Web orders at scale through crashes (issue #15): 500 shop orders for 50 buyers, two workers and
the shop source, worker b and the shop source SIGKILLed mid-run (the deliveries of the shop
source's downtime fail and the sandbox gives up on them) and started again. Done means exactly
500 TIMS sales orders, one per shop order, and, as TIMS ships them, exactly 500 fulfilments back
in the shop, each with its TIMS order's tracking number; nothing dead-lettered or quarantined;
the systems quiet once they agree (tests/support/web_orders_scale.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.web_orders_scale import INVARIANTS, WebOrdersPlan, run_web_orders_scale

# `make scale` runs it, not `make test` (whose 30-minute budget the scale runs would pass).
pytestmark = [pytest.mark.integration, pytest.mark.scale]


async def test_500_web_orders_through_a_worker_and_shop_source_kill(app_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    result = await run_web_orders_scale(app_env, tmp_path, WebOrdersPlan(), progress=print)
    print(f"\nweb orders scale: {result}")
    assert result["converged_s"] is not None, result
    assert {name: result[name] for name in INVARIANTS} == dict.fromkeys(INVARIANTS, 0), result
    assert result["tims_sales_orders"] == result["shop_orders"] == result["fulfilments"] == 500, result
    assert result["quiet"], result
    assert result["webhooks"].get("gave_up", 0) >= 1, "the shop source's downtime lost deliveries: " + str(result)
