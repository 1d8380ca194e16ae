"""A local single-node Apache Kafka broker (KRaft) for development and tests, without Docker.

The official broker jars come from Maven Central through Maven (``mvn
dependency:copy-dependencies``) and are cached outside the repository, one folder per version.
The broker runs as a detached ``java`` process whose pid, logs and data live in a state folder.

Lifecycle: :meth:`LocalKafka.up` (fetch jars if missing → format storage once → start → wait
until it answers metadata requests; idempotent), :meth:`LocalKafka.status`,
:meth:`LocalKafka.down` (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["KAFKA_VERSION", "LocalKafka", "LocalKafkaError", "BrokerStatus", "wait_for_broker", "broker_answers", "local_port",
           "local_bootstrap"]

#: The one pinned broker version (see docs/adr/0001-kafka-broker-version.md).
KAFKA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
#: Kafka 4.x logs through log4j2 but ships no slf4j binding in kafka_2.13's dependencies.
_LOG4J_VERSION = "2.24.3"

# ``up`` waits this long past its timeout for a broker that is alive and still writing its log
# (reading its partitions), and gives up when the log stays still for LOADING_QUIET seconds.
LOADING_LIMIT = 600.0
LOADING_QUIET = 30.0
_DEFAULT_HOME = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pardot-tims-connect"


class LocalKafkaError(RuntimeError):
    """The local broker could not be provisioned, started or stopped; the message says why."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    bootstrap: str
    version: str
    pid: int | None
    external: bool = False

    def describe(self) -> str:
        if self.external:
            return f"external broker at {self.bootstrap} (KAFKA_BOOTSTRAP_SERVERS; not managed here)"
        state = f"running (pid {self.pid})" if self.running else "stopped"
        return f"Apache Kafka {self.version} at {self.bootstrap}: {state}"


_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.pardot-tims-connect</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


#: where the local broker listens: the one place its address is decided (the settings' default
#: KAFKA_BOOTSTRAP_SERVERS comes from here too, so ``CONNECT_KAFKA_PORT=29092 make demo`` works)
LOCAL_HOST = "127.0.0.1"
DEFAULT_PORT = 9092


def local_port() -> int:
    """The local broker's port: ``CONNECT_KAFKA_PORT``, else 9092 (the controller takes the next)."""
    text = os.environ.get("CONNECT_KAFKA_PORT", "").strip()
    if not text:
        return DEFAULT_PORT
    if not text.isdigit() or not 0 < int(text) < 65535:
        raise LocalKafkaError(f"CONNECT_KAFKA_PORT={text!r} is not a port number (1-65534; the controller uses port+1)")
    return int(text)


def local_bootstrap() -> str:
    """The local broker's bootstrap address, ``127.0.0.1:<CONNECT_KAFKA_PORT or 9092>``."""
    return f"{LOCAL_HOST}:{local_port()}"


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


async def _metadata_ok(bootstrap: str, timeout: float) -> bool:
    from aiokafka import AIOKafkaClient

    from connectors.kafka_security import client_options

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **client_options())
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return bool(client.cluster.brokers())
    except Exception:
        return False
    finally:
        await client.close()


async def broker_answers(bootstrap: str, timeout: float = 5.0) -> bool:
    """One metadata request: does the broker answer within ``timeout``? (the client's connection
    errors are expected here and kept out of the output)"""
    import logging

    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        return await _metadata_ok(bootstrap, timeout)
    finally:
        client_log.setLevel(level)


def wait_for_broker(bootstrap: str, timeout: float = 60.0) -> bool:
    """Poll until the broker answers a metadata request, or the timeout passes. The client's own
    connection errors are expected while a broker starts: they are kept out of the output."""
    import logging

    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if asyncio.run(_metadata_ok(bootstrap, 5.0)):
                return True
            time.sleep(0.5)
        return False
    finally:
        client_log.setLevel(level)


class LocalKafka:
    """Provision and run one local KRaft broker."""

    def __init__(
        self,
        home: Path | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        # 512m ran out after ~14,000 partitions (a dev broker kept across many test runs, each
        # test creating its own topics); the whole suite needs ~2,000
        heap: str = "1g",
        version: str = KAFKA_VERSION,
    ) -> None:
        self.home = Path(home or os.environ.get("CONNECT_KAFKA_HOME") or _DEFAULT_HOME / "kafka")
        self.port = int(port or local_port())
        self.controller_port = int(controller_port or self.port + 1)
        self.heap = heap
        self.version = version
        self.host = LOCAL_HOST

    # -- paths -------------------------------------------------------------------------------
    @property
    def libs_dir(self) -> Path:
        return self.home / "dist" / f"kafka_{SCALA_VERSION}-{self.version}" / "libs"

    @property
    def state_dir(self) -> Path:
        return self.home / "run" / f"{self.version}-{self.port}"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "broker.log"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def _pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self, timeout: float = 90.0, echo=print) -> BrokerStatus:
        """Start the broker unless it already runs; return its status once it answers."""
        current = self.status()
        if current.running and self._wait_answering(current.pid, timeout, echo):
            echo(f"already running: {current.describe()}")
            return current
        self._require_java()
        if _port_open(self.host, self.port) or _port_open(self.host, self.controller_port):
            raise LocalKafkaError(
                f"port {self.port} or {self.controller_port} on {self.host} is taken by another "
                "process. Stop it, or pick free ports with CONNECT_KAFKA_PORT=<port> "
                "(the controller uses port+1), or point KAFKA_BOOTSTRAP_SERVERS at a running broker."
            )
        self.fetch(echo=echo)
        self._format()
        self._start()
        if not self._wait_answering(self._live_pid(), timeout, echo):
            tail = self._log_tail()
            self.down(echo=lambda *_: None)
            raise LocalKafkaError(
                f"the broker did not answer on {self.bootstrap} within {timeout:.0f}s; "
                f"see {self.log_file}. Last lines:\n{tail}"
            )
        status = self.status()
        echo(f"started: {status.describe()}")
        return status

    def _wait_answering(self, pid: int | None, timeout: float, echo=print) -> bool:
        """Wait for the broker to answer. Past ``timeout`` keep waiting while it is alive and still
        writing its log: a broker with thousands of partitions reads them all before it answers
        (one kept across many test runs took over 90 s). Give up when it dies, when its log stays
        still for ``LOADING_QUIET`` seconds, or ``LOADING_LIMIT`` seconds past the timeout."""
        if wait_for_broker(self.bootstrap, timeout=timeout):
            return True
        limit = time.monotonic() + LOADING_LIMIT
        while pid is not None and self._alive(pid) and time.monotonic() < limit:
            quiet = time.time() - self._log_written()
            if quiet > LOADING_QUIET:
                return False
            echo(f"the broker is still starting (reading {self._partitions_on_disk()} partitions; "
                 f"`stream-app kafka reset` deletes them if they are only test data) ...")
            if wait_for_broker(self.bootstrap, timeout=15.0):
                return True
        return False

    def _log_written(self) -> float:
        """When the broker last wrote its log (0 if it has none)."""
        try:
            return max(p.stat().st_mtime for p in (self.log_file, self.state_dir / "stdout.log") if p.exists())
        except ValueError:
            return 0.0

    def _partitions_on_disk(self) -> int:
        data = self.state_dir / "data"
        return sum(1 for p in data.iterdir() if p.is_dir() and "-" in p.name) if data.is_dir() else 0

    def down(self, grace: float = 30.0, echo=print) -> None:
        pid = self._live_pid()
        if pid is None:
            echo(f"Apache Kafka {self.version} at {self.bootstrap}: not running")
            self._pid_file.unlink(missing_ok=True)
            return
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self._alive(pid):
            time.sleep(0.2)
        if self._alive(pid):
            os.killpg(pid, signal.SIGKILL)
            while self._alive(pid):
                time.sleep(0.1)
        self._pid_file.unlink(missing_ok=True)
        echo(f"stopped Apache Kafka {self.version} at {self.bootstrap} (pid {pid})")

    def status(self) -> BrokerStatus:
        pid = self._live_pid()
        return BrokerStatus(running=pid is not None, bootstrap=self.bootstrap, version=self.version, pid=pid)

    def reset(self, echo=print) -> None:
        """Stop the broker and delete its data (topics, offsets); the jar cache stays."""
        self.down(echo=echo)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        echo(f"deleted broker data in {self.state_dir}")

    # -- provisioning ------------------------------------------------------------------------
    def fetch(self, echo=print) -> Path:
        """Download the broker jars into the cache with Maven, once per version."""
        marker = self.libs_dir / ".complete"
        if marker.exists():
            return self.libs_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalKafkaError(
                "Maven (mvn) is not installed; it fetches the Kafka jars. Install it "
                "(Debian/Ubuntu: apt-get install maven) or set KAFKA_BOOTSTRAP_SERVERS to use a running broker."
            )
        echo(f"fetching Apache Kafka {self.version} jars with Maven into {self.libs_dir} ...")
        self.libs_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as work:
            pom = Path(work, "pom.xml")
            pom.write_text(_POM.format(scala=SCALA_VERSION, kafka=self.version, log4j=_LOG4J_VERSION))
            result = subprocess.run(
                [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
                 f"-DoutputDirectory={self.libs_dir}", "-DincludeScope=runtime"],
                capture_output=True, text=True,
            )
        if result.returncode != 0:
            raise LocalKafkaError(
                f"Maven could not fetch org.apache.kafka:kafka_{SCALA_VERSION}:{self.version} "
                f"(exit {result.returncode}). Check network access to Maven Central and ~/.m2/settings.xml.\n"
                f"{(result.stdout + result.stderr)[-2000:]}"
            )
        if not any(self.libs_dir.glob(f"kafka_{SCALA_VERSION}-{self.version}.jar")):
            raise LocalKafkaError(f"Maven finished but {self.libs_dir} has no Kafka jar")
        marker.touch()
        echo(f"fetched {len(list(self.libs_dir.glob('*.jar')))} jars")
        return self.libs_dir

    def _require_java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise LocalKafkaError(
                "Java is not installed; the Kafka broker needs Java 17 or newer "
                "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless), "
                "or set KAFKA_BOOTSTRAP_SERVERS to use a running broker."
            )
        out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
        major = _java_major(out)
        if major is not None and major < 17:
            raise LocalKafkaError(f"Kafka {self.version} needs Java 17 or newer; found Java {major} at {java}")
        return java

    def _properties(self) -> Path:
        data = self.state_dir / "data"
        props = self.state_dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{self.host}:{self.controller_port}",
                    f"listeners=PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://{self.host}:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "log.retention.hours=168",
                    "",
                ]
            )
        )
        (self.state_dir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_file))
        return props

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        return [
            self._require_java(), f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.state_dir / 'log4j2.properties'}",
            "-cp", f"{self.libs_dir}/*", main, *args,
        ]

    def _format(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        props = self._properties()
        if (self.state_dir / "data" / "meta.properties").exists():
            return
        result = subprocess.run(
            self._java_cmd("kafka.tools.StorageTool", "format", "--config", str(props),
                           "--cluster-id", _cluster_id(), "--ignore-formatted"),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise LocalKafkaError(f"formatting KRaft storage failed:\n{(result.stdout + result.stderr)[-2000:]}")

    def _start(self) -> None:
        props = self.state_dir / "server.properties"
        with open(self.state_dir / "stdout.log", "ab") as out:
            proc = subprocess.Popen(
                self._java_cmd("kafka.Kafka", str(props)),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.state_dir,
            )
        self._pid_file.write_text(str(proc.pid))

    # -- process bookkeeping -----------------------------------------------------------------
    def _live_pid(self) -> int | None:
        try:
            pid = int(self._pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if self._alive(pid) else None

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A zombie child (our own Popen, not yet reaped) counts as dead.
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                return False
        except ChildProcessError:
            pass
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            return stat.rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return True

    def _log_tail(self, lines: int = 30) -> str:
        texts = []
        for path in (self.state_dir / "stdout.log", self.log_file):
            if path.exists():
                texts.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(texts[-lines:])


def _cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64 without padding (22 characters).

    About one id in 64 starts with ``-``, which the storage tool reads as an option; Kafka's own
    ``Uuid.randomUuid`` draws again in that case, and so do we."""
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(random_bytes()).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _java_major(version_text: str) -> int | None:
    import re

    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_text)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major

