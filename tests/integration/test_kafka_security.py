"""Kafka over SASL_SSL (SCRAM-SHA-512) on a throwaway broker whose certificate a throwaway CA
signed (tests/support/secure_kafka.py), and secrets that never reach a log (docs/adr/0023).

- our admin client, producer (the sources' Publisher and PositionStore) and consumer round-trip;
- a wrong password, or a CA that did not sign the broker's certificate, ends a command in one line;
- a worker and the three sources, every secret given through ``<NAME>_FILE``, move a Contact from
  the Salesforce sandbox into the TIMS sandbox over that broker, all at debug log level; then
  neither a log nor the worker's web pages hold any of the secrets.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka.errors import GroupCoordinatorNotAvailableError
from pydantic import SecretStr

from connectors import kafka_security
from connectors.kafka_admin import KafkaAdmin, read_to_end
from connectors.kafka_io import KafkaTarget, PositionStore, Publisher
from connectors.kafka_security import KafkaSecurity, SecurityProtocol
from sandbox.demo import Processes
from sandbox.run import start_sandbox
from tests.support.flows import wait_until
from tests.support.secure_kafka import SecureBroker, make_ca_and_server_cert
from tests.support.worker import STREAM_APP, WorkerProcess, free_port

pytestmark = pytest.mark.integration

USER = "connect-app"
PASSWORD = f"scram-{uuid.uuid4().hex}"
WEBHOOK_SECRET = f"whsec-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    started = SecureBroker(tmp_path_factory.mktemp("sasl-ssl-broker"), USER, PASSWORD).start()
    try:
        yield started
    finally:
        started.stop()


def security_env(broker: SecureBroker, **changes: str) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "CONNECT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CONNECT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "CONNECT_KAFKA_SASL_USERNAME": USER,
            "CONNECT_KAFKA_SASL_PASSWORD": PASSWORD, "CONNECT_KAFKA_SSL_CAFILE": str(broker.certs.ca_file), **changes}


@pytest.fixture
def sasl_ssl(broker: SecureBroker) -> Iterator[None]:
    previous = kafka_security.use(KafkaSecurity(protocol=SecurityProtocol.sasl_ssl, username=USER,
                                                password=SecretStr(PASSWORD), ca_file=broker.certs.ca_file))
    try:
        yield
    finally:
        kafka_security.use(previous)


async def test_our_admin_producer_and_consumer_round_trip_over_sasl_ssl(broker: SecureBroker, sasl_ssl: None) -> None:
    target = KafkaTarget(broker.bootstrap, prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=2)
    publisher, positions = Publisher(target), PositionStore(target)
    await publisher.start()
    await positions.start()
    try:
        sent = await publisher.send_many("src.tims.customer", [(f"k{i}", {"n": i}) for i in range(20)])
        await positions.save("tims", {"cursor": "c20"})
        assert await positions.load() == {"tims": {"cursor": "c20"}}
    finally:
        await publisher.stop()
        await positions.stop()
    topic = target.topic("src.tims.customer")
    read = [record.key.decode() async for record in read_to_end(broker.bootstrap, [topic])]
    assert sent == 20 and sorted(read) == sorted(f"k{i}" for i in range(20))
    async with KafkaAdmin(broker.bootstrap) as kafka:
        ends = await kafka.end_offsets([topic])
        for _ in range(60):  # a new cluster creates its offsets topic on the first group request
            try:
                await kafka.commit_offsets("sasl-test-group", ends)
                break
            except GroupCoordinatorNotAvailableError:
                await asyncio.sleep(0.5)
        assert await kafka.committed_offsets("sasl-test-group") == ends and sum(ends.values()) == 20


@pytest.mark.parametrize(("case", "complaint"), [
    ("wrong password", "refused the SASL SCRAM-SHA-512 login of user 'connect-app'"),
    ("another CA", "TLS certificate was not accepted"),
])
def test_wrong_credentials_or_an_unknown_ca_end_a_command_in_one_line(
        broker: SecureBroker, tmp_path: Path, case: str, complaint: str) -> None:
    wrong = {"CONNECT_KAFKA_SASL_PASSWORD": "not-" + PASSWORD} if case == "wrong password" else \
        {"CONNECT_KAFKA_SSL_CAFILE": str(make_ca_and_server_cert(tmp_path).ca_file)}
    env = {name: value for name, value in os.environ.items() if not name.startswith("CONNECT_")}
    done = subprocess.run([STREAM_APP, "dlq", "list"], env={**env, **security_env(broker, **wrong)},
                          capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    assert complaint in output and PASSWORD not in output, output


def secrets_as_files(env: dict[str, str], folder: Path) -> dict[str, str]:
    """``env`` with every secret moved into a file named by ``<NAME>_FILE``."""
    moved = dict(env)
    for name in ("CONNECT_SALESFORCE_CLIENT_SECRET", "CONNECT_TIMS_API_KEY", "CONNECT_TIMS_WEBHOOK_SECRET",
                 "CONNECT_KAFKA_SASL_PASSWORD"):
        file = folder / name.lower()
        file.write_text(moved.pop(name) + "\n")
        file.chmod(0o600)
        moved[name + "_FILE"] = str(file)
    return moved


@pytest.fixture
async def sandbox() -> AsyncIterator[object]:
    started = await start_sandbox(ports={"salesforce-rest": 0, "salesforce-pubsub": 0, "pardot": 0, "tims": 0},
                                  keepalive_seconds=5)
    try:
        yield started
    finally:
        await started.stop()


async def test_worker_and_sources_run_over_sasl_ssl_and_log_no_secret(
        broker: SecureBroker, sandbox: object, tmp_path: Path) -> None:
    sandbox_env = sandbox.worker_env()  # type: ignore[attr-defined]
    secrets = [sandbox_env["CONNECT_SALESFORCE_CLIENT_SECRET"], sandbox_env["CONNECT_TIMS_API_KEY"],
               WEBHOOK_SECRET, PASSWORD]
    run = uuid.uuid4().hex[:8]
    env = secrets_as_files({
        **security_env(broker), **sandbox_env, "CONNECT_TIMS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CONNECT_APP_ID": f"sasl-{run}", "CONNECT_TOPIC_PREFIX": f"t{run}.", "CONNECT_DATA_DIR": str(tmp_path / "data"),
        "CONNECT_TOPIC_PARTITIONS": "2", "CONNECT_WEB_PORT": str(free_port()), "CONNECT_LOG_LEVEL": "debug",
        "CONNECT_SINK_OBJECTS": "tims.customer", "CONNECT_SINK_LINGER": "0.2", "CONNECT_TIMS_POLL_INTERVAL": "1",
        "CONNECT_PARDOT_POLL_INTERVAL": "1", "CONNECT_BROKER_SESSION_TIMEOUT": "10",
        "CONNECT_BROKER_HEARTBEAT_INTERVAL": "1"}, tmp_path)
    base = {name: value for name, value in os.environ.items() if not name.startswith("CONNECT_")}
    worker = WorkerProcess({**base, **env}, tmp_path / "worker.log", loglevel="debug")
    sources = Processes({**base, **env}, tmp_path)
    org, tims = sandbox.org, sandbox.tims  # type: ignore[attr-defined]
    found: dict[str, str] = {}

    def onboarded() -> bool:
        try:
            found.update(tims.customer_by_external_id(found["contact"]))
        except Exception:  # noqa: BLE001 - not there yet
            return False
        return True

    try:
        await asyncio.to_thread(worker.start, 90.0)
        for system in ("salesforce", "tims", "pardot"):
            sources.start(f"source-{system}", "source", system)
        found["contact"] = org.create("Contact", {"FirstName": "Sasha", "LastName": "Secure",
                                                  "Email": "sasha.secure@sasl.example",
                                                  "pi__score__c": 150.0, "pi__grade__c": "A"})
        await wait_until("the Contact reached TIMS through the SASL_SSL broker", onboarded, sources, worker,
                         lambda: found, timeout=90)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{env['CONNECT_WEB_PORT']}") as web:
            pages = {path: (await web.get(path)).text for path in ("/metrics", "/sinks/stats/")}
    finally:
        await asyncio.gather(asyncio.to_thread(sources.stop), asyncio.to_thread(worker.stop, 30.0))
    logs = {path.name: path.read_text(errors="replace") for path in tmp_path.glob("*.log")}
    assert "connect_" in pages["/metrics"] and pages["/sinks/stats/"].startswith("{")
    assert set(logs) == {"worker.log", "source-salesforce.log", "source-tims.log", "source-pardot.log"}
    assert all(len(text) > 1000 for text in logs.values()), {name: len(text) for name, text in logs.items()}
    leaks = {(name, secret[:4] + "…") for name, text in {**logs, **pages}.items() for secret in secrets
             if secret in text}
    assert not leaks, f"secrets in the logs: {sorted(leaks)}"
