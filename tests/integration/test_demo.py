"""Flows 1 to 5 end to end, as `make demo` plays them: the real broker, the sandbox, a worker
subprocess and the four source processes; `--once` exits 0 only if every expected record arrived
in every system and the systems went quiet afterwards."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.names import unique
from tests.support.worker import STREAM_APP, free_port

pytestmark = pytest.mark.integration


def test_demo_once_plays_both_flows(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CONNECT_WEB_PORT": str(free_port()),
           "CONNECT_DEMO_RUN": unique("test")}  # its topics are deleted after the test
    result = subprocess.run([STREAM_APP, "demo", "--once"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=400)
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-3000:]
    assert out.count("TIMS customer created with ExternalID") == 3
    assert out.count("on Contact and Account") == 3
    assert "not onboarded (by design)" in out
    assert "has phone +14155550134 and city Sheffield" in out
    assert "Salesforce Contact and Account show NET60 and 25,000" in out
    assert "the systems are quiet once they agree" in out
    assert "TIMS records: 3 customers" in out
    assert "a Campaign and a Pardot list, with Ada in both" in out
    assert out.count("Task on Ada's Contact with TIMS context") == 2
    assert "each item is a Product2 with a standard price" in out
    assert "one TIMS sales order for the Opportunity, to the cent" in out
    assert "the Opportunity shows the order invoiced, with ship date and tracking" in out
    assert "(what TIMS's invoices add up to) on the Account and in Pardot" in out
    assert "the TIMS price change shows in the shop" in out
    assert "TIMS's stock at MAIN shows in the shop's main warehouse" in out
    assert "one TIMS sales order for web order" in out
    assert "the shop order is fulfilled with TIMS's tracking number" in out
    assert "the abandoned cart on her Pardot prospect, and she is on the nurture list" in out
    assert "the cart fields are cleared and she has left the nurture list" in out
    assert "✓ no Opportunity was made from the web order" in out
    assert "✗" not in out
