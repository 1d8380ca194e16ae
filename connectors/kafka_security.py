"""How every Kafka client of a process authenticates and encrypts: PLAINTEXT, SSL, SASL_PLAINTEXT or
SASL_SSL, with SCRAM-SHA-512 (or -256, or PLAIN) as the SASL mechanism (docs/adr/0023).

The app builds one :class:`KafkaSecurity` from its settings at start-up and hands it to
:func:`use`; :func:`client_options` then gives the keyword arguments every aiokafka client we
create takes (producers, consumers, the admin client), so no call site can forget them. The
Faust worker gets the same as its ``broker_credentials`` (stream_app/app.py). One process talks
to one cluster, which is why this is process-wide rather than passed along with each bootstrap
address.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

__all__ = ["KafkaSecurity", "SecurityProtocol", "SaslMechanism", "use", "current", "client_options",
           "security_problem"]


class SecurityProtocol(str, enum.Enum):
    plaintext = "PLAINTEXT"
    ssl = "SSL"
    sasl_plaintext = "SASL_PLAINTEXT"
    sasl_ssl = "SASL_SSL"


class SaslMechanism(str, enum.Enum):
    scram_sha_512 = "SCRAM-SHA-512"
    scram_sha_256 = "SCRAM-SHA-256"
    plain = "PLAIN"


class KafkaSecurity(BaseModel):
    """The security settings of one cluster; the default is PLAINTEXT (the local broker)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: SecurityProtocol = SecurityProtocol.plaintext
    mechanism: SaslMechanism = SaslMechanism.scram_sha_512
    username: str | None = None
    password: SecretStr | None = None
    #: the CA that signed the brokers' certificates; None: the system's trusted CAs
    ca_file: Path | None = None
    #: a client certificate and its key, for brokers that require mutual TLS
    cert_file: Path | None = None
    key_file: Path | None = None
    check_hostname: bool = True

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in (SecurityProtocol.sasl_plaintext, SecurityProtocol.sasl_ssl)

    @property
    def uses_tls(self) -> bool:
        return self.protocol in (SecurityProtocol.ssl, SecurityProtocol.sasl_ssl)

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecurity:
        if self.uses_sasl and (not self.username or self.password is None):
            raise ValueError(f"{self.protocol.value} needs a SASL username and password")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name} {str(path)!r} is not a readable file")
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for SSL and SASL_SSL (None otherwise): verifies the brokers against
        ``ca_file`` (or the system's CAs), their host names unless switched off."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        context.check_hostname = self.check_hostname
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        options: dict[str, Any] = {"security_protocol": self.protocol.value}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            assert self.password is not None
            options.update(sasl_mechanism=self.mechanism.value, sasl_plain_username=self.username,
                           sasl_plain_password=self.password.get_secret_value())
        return options


_current = KafkaSecurity()


def use(security: KafkaSecurity) -> KafkaSecurity:
    """Make ``security`` the process's Kafka security; returns the one it replaces."""
    global _current
    previous, _current = _current, security
    return previous


def current() -> KafkaSecurity:
    return _current


def client_options() -> dict[str, Any]:
    """The process's security as aiokafka keyword arguments (see :func:`use`)."""
    return _current.client_options()


def security_problem(bootstrap: str, timeout: float = 10.0) -> str | None:
    """Why the first broker of ``bootstrap`` refuses us, when the reason is our TLS or SASL
    settings: one sentence naming the settings to check (never their secret values). None when
    the process uses PLAINTEXT, or the connection fails for another reason (or succeeds).

    The Kafka client only says it could not bootstrap; this opens one connection itself to learn
    why. It runs on a thread of its own, so callers inside an event loop can use it too."""
    security = _current
    if security.protocol is SecurityProtocol.plaintext:
        return None
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    found: list[str | None] = [None]

    def probe() -> None:
        found[0] = asyncio.run(_probe(security, host, int(port), timeout))

    thread = threading.Thread(target=probe, name="kafka-security-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5)
    return found[0]


async def _probe(security: KafkaSecurity, host: str, port: int, timeout: float) -> str | None:
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError

    options = security.client_options()
    try:
        conn = await asyncio.wait_for(create_conn(host, port, request_timeout_ms=int(timeout * 1000), **options),
                                      timeout)
    except ssl.SSLCertVerificationError as exc:
        return (f"the broker's TLS certificate was not accepted ({exc.verify_message}): check "
                "CONNECT_KAFKA_SSL_CAFILE (the CA that signed it) and CONNECT_KAFKA_SSL_CHECK_HOSTNAME")
    except ssl.SSLError as exc:
        return (f"the TLS handshake with the broker failed ({exc.reason or type(exc).__name__}): check that its "
                f"listener speaks {security.protocol.value} (CONNECT_KAFKA_SECURITY_PROTOCOL) and the CONNECT_KAFKA_SSL_* "
                "settings")
    except KafkaError as exc:
        if security.uses_sasl and "auth" in f"{type(exc).__name__} {exc}".lower():
            return (f"the broker refused the SASL {security.mechanism.value} login of user {security.username!r}: "
                    "check CONNECT_KAFKA_SASL_USERNAME, CONNECT_KAFKA_SASL_PASSWORD (or its _FILE) and "
                    "CONNECT_KAFKA_SASL_MECHANISM")
        return None
    except (OSError, asyncio.TimeoutError):
        return None
    conn.close()
    return None
