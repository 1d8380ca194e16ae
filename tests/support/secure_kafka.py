"""A throwaway single-node broker with a SASL_SSL (SCRAM-SHA-512) listener, for the security tests.

Its TLS certificate comes from a throwaway CA made here with the ``cryptography`` package; the
SCRAM user is created when the KRaft storage is formatted (``--add-scram``). It runs from the
same cached jars as the local broker (stream_app/kafka_local.py), on ports and a data folder of
its own, and is stopped by the test that started it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from stream_app.kafka_local import _LOG4J2 as _LOCAL_LOG4J2
from stream_app.kafka_local import LocalKafka, _cluster_id
from tests.support.worker import free_port

__all__ = ["SecureBroker", "make_ca_and_server_cert"]

#: the local broker's logging, plus the line that says the server is up
_LOG4J2 = _LOCAL_LOG4J2 + "logger.started.name = kafka.server.KafkaRaftServer\nlogger.started.level = INFO\n"


@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    #: the broker's key (PKCS#8) followed by its certificate and the CA's: Kafka's PEM keystore
    keystore: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_ca_and_server_cert(folder: Path) -> Certificates:
    """A CA, and a certificate it signed for ``localhost`` and ``127.0.0.1``."""
    ca_key, server_key = _key(), _key()
    ca = _cert("connect test CA", ca_key, None, ca_key, ca=True)
    server = _cert("localhost", server_key, ca.subject, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    keystore = folder / "broker-keystore.pem"
    keystore.write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + server.public_bytes(pem) + ca.public_bytes(pem))
    return Certificates(ca_file, keystore)


class SecureBroker:
    """One KRaft node: SASL_SSL for clients on ``port``, PLAINTEXT between broker and controller
    on loopback ports of their own."""

    def __init__(self, folder: Path, username: str, password: str) -> None:
        self.folder = folder
        self.username, self.password = username, password
        self.port, self.internal_port, self.controller_port = free_port(), free_port(), free_port()
        self.certs = make_ca_and_server_cert(folder)
        self._local = LocalKafka()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.folder / "broker.out"

    def _properties(self) -> Path:
        props = self.folder / "server.properties"
        host = "127.0.0.1"
        props.write_text("\n".join([
            "process.roles=broker,controller", "node.id=1",
            f"controller.quorum.voters=1@{host}:{self.controller_port}",
            f"listeners=SASL_SSL://{host}:{self.port},INTERNAL://{host}:{self.internal_port},"
            f"CONTROLLER://{host}:{self.controller_port}",
            f"advertised.listeners=SASL_SSL://{host}:{self.port},INTERNAL://{host}:{self.internal_port}",
            "controller.listener.names=CONTROLLER", "inter.broker.listener.name=INTERNAL",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type=PEM", f"ssl.keystore.location={self.certs.keystore}",
            f"log.dirs={self.folder / 'data'}", "num.partitions=1",
            "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=1",
            "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1", "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0", "auto.create.topics.enable=false", ""]))
        return props

    def _java(self, main: str, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("the SASL_SSL test needs Java 17+ for its throwaway broker (apt-get install "
                               "openjdk-17-jre-headless)")
        log4j = self.folder / "log4j2.properties"
        log4j.write_text(_LOG4J2.format(log=self.log_file))
        return [java, "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{self._local.fetch(echo=lambda *_: None)}/*", main, *args]

    def start(self, timeout: float = 60.0) -> "SecureBroker":
        props = self._properties()
        scram = f"SCRAM-SHA-512=[name={self.username},password={self.password}]"
        formatted = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "--config", str(props), "--cluster-id",
                       _cluster_id(), "--add-scram", scram), capture_output=True, text=True)
        if formatted.returncode != 0:
            raise RuntimeError(f"formatting the SASL_SSL broker's storage failed:\n{formatted.stdout}{formatted.stderr}")
        with open(self.folder / "broker.stdout", "ab") as out:
            self._proc = subprocess.Popen(self._java("kafka.Kafka", str(props)), stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.folder)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the SASL_SSL broker exited ({self._proc.returncode}):\n{self.log_tail()}")
            if self.log_file.exists() and "Kafka Server started" in self.log_file.read_text(errors="replace"):
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the SASL_SSL broker did not start within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        texts = [path.read_text(errors="replace") for path in (self.folder / "broker.stdout", self.log_file)
                 if path.exists()]
        return "\n".join("\n".join(texts).splitlines()[-lines:])

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(10)

