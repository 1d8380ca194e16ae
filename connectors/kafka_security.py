"""How every Kafka client of a process authenticates and encrypts: PLAINTEXT, SSL, SASL_PLAINTEXT or
SASL_SSL, with SCRAM-SHA-512 (or -256, or PLAIN) as the SASL mechanism (docs/adr/0023).

The app builds one :class:`KafkaSecurity` from its settings at start-up and hands it to
:func:`use`; :func:`client_options` then gives the keyword arguments every aiokafka client we
create takes (producers, consumers, the admin client), so no call site can forget them. The
Faust worker gets the same through :meth:`KafkaSecurity.faust_credentials`. One process talks
to one cluster, which is why this is process-wide rather than passed along with each bootstrap
address.
"""

from __future__ import annotations

import enum
import ssl
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

__all__ = ["KafkaSecurity", "SecurityProtocol", "SaslMechanism", "use", "current", "client_options"]


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

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` for these settings (None for PLAINTEXT)."""
        import faust
        from faust.types.auth import SASLMechanism

        if self.uses_sasl:
            assert self.password is not None
            return faust.SASLCredentials(username=self.username, password=self.password.get_secret_value(),
                                         mechanism=SASLMechanism(self.mechanism.value),
                                         ssl_context=self.ssl_context())
        if self.uses_tls:
            return faust.SSLCredentials(self.ssl_context())
        return None


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
