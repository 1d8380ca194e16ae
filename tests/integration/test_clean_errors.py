"""Every command, given a user's mistake, says what is wrong and what to do in a few lines and
exits non-zero: never a traceback (issue 20, docs/adr/0022). Each case runs the real
``stream-app`` entry point as a subprocess; the cases run a few at a time."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from connectors.kafka_admin import list_topics
from tests.support.worker import STREAM_APP, free_port
from tests.support.names import unique

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MAPPINGS = ROOT / "topologies" / "customer_sync" / "mappings"
DEAD_BROKER = "127.0.0.1:1"
NOT_ANSWERING = "is not answering"


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    exit_code: int
    says: str
    env: dict[str, str] = field(default_factory=dict)


def _spoil_mappings(root: Path) -> None:
    """Mapping folders with the shipped mappings, one file spoilt: ``{root}/yaml`` (a syntax
    error), ``{root}/cleanser`` (an unknown cleanser)."""
    for name, (old, new, tail) in {"yaml": ("", "", "\n  bad: [unclosed\n"),
                                   "cleanser": ("clean: email", "clean: nosuch", "")}.items():
        folder = root / name / "customer_sync"
        shutil.copytree(SHIPPED_MAPPINGS, folder)
        target = folder / "lead_onboarding.yaml"
        text = target.read_text()
        assert old in text
        target.write_text(text.replace(old, new, 1) + tail)


DEAD = {"KAFKA_BOOTSTRAP_SERVERS": DEAD_BROKER}
BROKEN_YAML = {"CONNECT_MAPPINGS_DIR": "{root}/yaml"}
#: the local broker's commands on a port and a home of their own: status reads, starts nothing
OWN_BROKER = {"CONNECT_KAFKA_PORT": "{free}", "CONNECT_KAFKA_HOME": "{root}/kafka-home"}
BAD_SETTING = {"CONNECT_WEB_PORT": "abc"}
CASES = [
    Case("dlq list, broker down", ("dlq", "list"), 1, NOT_ANSWERING, DEAD),
    Case("dlq list, unknown host", ("dlq", "list"), 1, NOT_ANSWERING, {"KAFKA_BOOTSTRAP_SERVERS": "nonsense:1"}),
    Case("replay dry run, broker down", ("replay", "--topic", "sink.tims.customer", "--from-offset", "0", "--dry-run"),
         1, NOT_ANSWERING, DEAD),
    Case("rebuild, broker down", ("rebuild", "--dry-run"), 1, NOT_ANSWERING, DEAD),
    Case("backfill, broker down", ("backfill", "tims"), 1, NOT_ANSWERING,
         {**DEAD, "CONNECT_TIMS_BASE_URL": "http://127.0.0.1:1", "CONNECT_TIMS_API_KEY": "k"}),
    Case("worker, broker down", ("worker",), 1, "stream-app kafka up", DEAD),
    Case("demo, broker down", ("demo", "--once"), 1, "make demo", DEAD),
    Case("mappings check, YAML syntax", ("mappings", "check"), 1, "not valid YAML", BROKEN_YAML),
    Case("mappings check, unknown cleanser", ("mappings", "check"), 1, "unknown cleanser",
         {"CONNECT_MAPPINGS_DIR": "{root}/cleanser"}),
    Case("mappings check, no such folder", ("mappings", "check"), 2, "CONNECT_MAPPINGS_DIR",
         {"CONNECT_MAPPINGS_DIR": "{root}/nowhere"}),
    # help and the local broker work whatever the mappings and the settings say
    Case("help, broken mappings and settings", ("--help",), 0, "Faust's own commands", {**BROKEN_YAML, **BAD_SETTING}),
    Case("kafka status, broken mappings and settings", ("kafka", "status"), 3, "stopped",
         {**BROKEN_YAML, **BAD_SETTING, **OWN_BROKER}),
    Case("worker, broken mappings", ("worker",), 2, "not valid YAML", {**BROKEN_YAML, **DEAD}),
    Case("mappings preview, no record", ("mappings", "preview"), 2, "preview needs FLOW"),
    Case("mappings suggest, unknown object", ("mappings", "suggest", "--source", "tims.customers", "--target",
                                              "salesforce.Contact"), 1, "unknown object 'tims.customers'"),
    Case("identity link, no such file", ("identity", "link", "--left", "{root}/a.csv", "--right", "{root}/b.csv",
                                         "--config", "{root}/fields.yaml", "--out", "{root}/pairs.csv"), 2, "no such file"),
    Case("privacy erase, nobody named", ("privacy", "erase"), 1, "exactly one of --email or --customer", DEAD),
    Case("privacy erase, broker down", ("privacy", "erase", "--email", "ada@example.com"), 1, NOT_ANSWERING, DEAD),
    Case("partitions, broker down", ("partitions", "--to", "4", "--dry-run"), 1, NOT_ANSWERING, DEAD),
    Case("dlq purge, no terminal", ("dlq", "purge"), 2, "pass --yes", DEAD),
    Case("rebuild --wipe, no terminal", ("rebuild", "--wipe"), 2, "pass --yes", DEAD),
    Case("sandbox, Pub/Sub port in use", ("sandbox", "--salesforce-port", "0", "--pardot-port", "0", "--tims-port",
                                          "0", "--shop-port", "0", "--pubsub-port", "{taken}"), 1, "port {taken}"),
    Case("sink without credentials", ("worker",), 2, "CONNECT_SALESFORCE",
         {**DEAD, "CONNECT_SINK_OBJECTS": "salesforce.Contact"}),
    Case("sink nonsense", ("worker",), 2, "CONNECT_SINK_OBJECTS", {**DEAD, "CONNECT_SINK_OBJECTS": "nonsense"}),
    Case("source without credentials", ("source", "salesforce"), 2, "CONNECT_SALESFORCE", DEAD),
    Case("invalid setting, a command", ("dlq", "list"), 2, "CONNECT_WEB_PORT", BAD_SETTING),
    Case("misspelt variable", ("mappings", "check"), 0, "did you mean CONNECT_WEB_PORT?", {"CONNECT_WEB_PROT": "1"}),
    Case("version", ("--version",), 0, "(pardot-tims-connect) 0."),
    # secrets from files and Kafka security (docs/adr/0023)
    Case("secret file missing", ("dlq", "list"), 2, "CONNECT_TIMS_API_KEY_FILE={root}/no-such-secret: cannot read",
         {"CONNECT_TIMS_API_KEY_FILE": "{root}/no-such-secret"}),
    Case("secret and its file both set", ("dlq", "list"), 2, "are both set",
         {"CONNECT_TIMS_API_KEY": "k", "CONNECT_TIMS_API_KEY_FILE": "{root}/no-such-secret"}),
    Case("SASL without a password", ("dlq", "list"), 2, "needs a SASL username and password",
         {"CONNECT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CONNECT_KAFKA_SASL_USERNAME": "u"}),
]


def _run(case: Case, **places: object) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONNECT_")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update({key: value.format(**places) for key, value in case.env.items()})
    return subprocess.run([STREAM_APP, *(arg.format(**places) for arg in case.args)], capture_output=True,
                          text=True, timeout=180, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, subprocess.CompletedProcess[str]]]:
    """Every case's output, run four at a time; ``{taken}`` is a port a socket listens on."""
    root = tmp_path_factory.mktemp("clean-errors")
    _spoil_mappings(root)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        places = {"root": root, "taken": taken.getsockname()[1], "free": free_port()}
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda case: _run(case, **places), CASES))
    return {case.name: (case.says.format(**places), result) for case, result in zip(CASES, results)}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_mistake_ends_in_a_few_lines_without_a_traceback(outcomes, case: Case) -> None:  # type: ignore[no-untyped-def]
    says, result = outcomes[case.name]
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == case.exit_code, output
    assert says in output, output
    if case.exit_code in (1, 2):  # a mistake (kafka status exits 3 for a stopped broker: a state, not one)
        said = [line for line in result.stderr.splitlines() if line.strip()]
        assert 1 <= len(said) <= 5, result.stderr


def test_debug_shows_the_traceback() -> None:
    result = _run(Case("debug", ("--debug", "dlq", "list"), 1, "", {"KAFKA_BOOTSTRAP_SERVERS": DEAD_BROKER}))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_worker_help_touches_nothing(kafka_bootstrap: str) -> None:
    prefix = unique("help") + "."
    result = _run(Case("worker help", ("worker", "--help"), 0, "", {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CONNECT_TOPIC_PREFIX": prefix,
        "CONNECT_APP_ID": prefix.rstrip(".")}))
    assert result.returncode == 0 and "--web-port" in result.stdout, result.stderr
    assert not [t for t in asyncio.run(list_topics(kafka_bootstrap)) if t.startswith(prefix)]
