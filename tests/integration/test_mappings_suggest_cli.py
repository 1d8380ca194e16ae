"""``stream-app mappings suggest`` as a user runs it: the draft it writes passes ``mappings check``
(docs/adr/0030). The commands connect to nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.worker import STREAM_APP

pytestmark = pytest.mark.integration


def _run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STREAM_APP, "mappings", *map(str, args)], capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def test_the_draft_passes_mappings_check(tmp_path: Path) -> None:
    folder = tmp_path / "mappings" / "customer_sync"
    folder.mkdir(parents=True)
    samples = tmp_path / "samples.json"
    samples.write_text(json.dumps({"tims.customer": [{"email": "ada@example.com", "phone": "+14155550134"}],
                                   "salesforce.Contact": [{"Email": "ada@example.com"}]}))
    done = _run("suggest", "--source", "tims.customer", "--target", "salesforce.Contact", "--samples", samples,
                "--out", folder / "tims_contact.yaml")
    assert done.returncode == 0, done.stderr
    assert "billing_address.postal_code -> MailingPostalCode" in done.stdout
    checked = _run("check", env={"CONNECT_MAPPINGS_DIR": str(tmp_path / "mappings")})
    assert checked.returncode == 0, checked.stderr
    assert "inbound  tims.customer" in checked.stdout and "outbound salesforce.Contact" in checked.stdout


@pytest.mark.parametrize(("args", "says"), [
    (("--source", "tims.customers", "--target", "salesforce.Contact"), "unknown object 'tims.customers'"),
    (("--source", "tims.customer"), "needs --source SYSTEM.OBJECT and --target"),
    (("--source", "tims.customer", "--target", "salesforce.Contact", "--samples", "/nonexistent.json"), "cannot read"),
])
def test_a_mistake_is_one_line_and_a_non_zero_exit(args: tuple[str, ...], says: str) -> None:
    done = _run("suggest", *args)
    assert done.returncode != 0
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
