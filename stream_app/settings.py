"""Worker settings: the one place that reads the environment.

Every setting is an environment variable named ``CONNECT_<FIELD>`` (``KAFKA_BOOTSTRAP_SERVERS``
has no prefix, as Kafka tooling expects). The worker's own fields are declared here; each
registered connector adds one field ``<system>_<field>`` per field of its config class
(connectors/registry.py), so its settings are declared once, beside its code. ``CONNECT_CONFIG_FILE`` may name a YAML file holding
the same fields in lower case; the environment wins over the file. Settings are validated once,
at start-up; :func:`load_settings` turns a validation failure into :class:`SettingsError`, whose
message names each wrong setting by its environment variable.
"""

from __future__ import annotations

import difflib
import enum
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Mapping, Optional

import yaml
from pydantic import AliasChoices, Field, SecretStr, ValidationError, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from connectors import registry
from connectors.errors import ConfigError
from connectors.kafka_security import KafkaSecurity, SaslMechanism, SecurityProtocol
from connectors.spec import ConnectorSpec
from stream_app.kafka_local import LocalKafkaError, local_bootstrap

__all__ = ["Settings", "SettingsError", "StoreKind", "load_settings", "lenient_settings", "misspelt_variables",
           "env_name", "config_error", "secret_fields", "FILE_SUFFIX"]

ENV_PREFIX = "CONNECT_"
CONFIG_FILE_ENV = "CONNECT_CONFIG_FILE"
#: variables read outside the settings classes: the config file's name and the local broker's
OTHER_VARIABLES = (CONFIG_FILE_ENV, "CONNECT_KAFKA_PORT", "CONNECT_KAFKA_HOME", "CONNECT_DEMO_RUN")
#: ``<secret setting>_FILE`` names a file holding the secret (Kubernetes and Docker secrets)
FILE_SUFFIX = "_FILE"


class SettingsError(ValueError):
    """Raised when the configuration is invalid; the message names the settings to fix."""


class StoreKind(str, enum.Enum):
    rocksdb = "rocksdb://"
    memory = "memory://"


class LogLevel(str, enum.Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the optional file named by CONNECT_CONFIG_FILE."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = os.environ.get(CONFIG_FILE_ENV)
        self._data: dict[str, Any] = {}
        if not path:
            return
        file = Path(path)
        if not file.is_file():
            raise SettingsError(f"{CONFIG_FILE_ENV}={path}: no such file")
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SettingsError(f"{CONFIG_FILE_ENV}={path}: not valid YAML ({exc})") from exc
        if not isinstance(loaded, dict):
            raise SettingsError(f"{CONFIG_FILE_ENV}={path}: expected a mapping of setting: value")
        unknown = sorted(set(loaded) - set(settings_cls.model_fields))
        if unknown:
            raise SettingsError(f"{CONFIG_FILE_ENV}={path}: unknown settings {', '.join(unknown)}")
        self._data = loaded

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _is_secret(info: FieldInfo) -> bool:
    annotation = info.annotation
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


def secret_fields(settings_cls: type[BaseSettings]) -> list[str]:
    """The secret settings that ``<NAME>_FILE`` can set: every ``SecretStr`` field except those
    that already have a ``<name>_file`` setting of their own (the Salesforce private key)."""
    fields = settings_cls.model_fields
    return [name for name, info in fields.items() if _is_secret(info) and f"{name}_file" not in fields]


def _read_secret_file(variable: str, path: str) -> str:
    """The content of the secret file ``variable`` names, less a trailing newline; the error
    names the variable and the path, never what the file holds."""
    try:
        value = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SettingsError(f"{variable}={path}: cannot read the secret file ({reason})") from None
    value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise SettingsError(f"{variable}={path}: the secret file is empty")
    return value


class _SecretFileSource(PydanticBaseSettingsSource):
    """``CONNECT_<NAME>_FILE``: the value of a secret setting read from a file. Setting both the
    variable and its ``_FILE`` is refused, as it is ambiguous."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, str] = {}
        for name in secret_fields(settings_cls):
            variable = env_name(name)
            path = environ.get(variable + FILE_SUFFIX)
            if path is None:
                continue
            if variable in environ:
                raise SettingsError(f"{variable} and {variable}{FILE_SUFFIX} are both set; keep one")
            self._data[name] = _read_secret_file(variable + FILE_SUFFIX, path)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class WorkerSettings(BaseSettings):
    """The worker's own settings; :data:`Settings` adds the connectors' to them."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", case_sensitive=False
    )

    kafka_bootstrap_servers: str = Field(
        default_factory=local_bootstrap,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
        description="Kafka bootstrap servers, host:port[,host:port...]",
    )
    app_id: str = Field(default="pardot-tims-connect", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    #: from 2 on: a new consumer group, new changelogs and new local state (see `stream-app rebuild`)
    app_version: int = Field(default=1, ge=1)
    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prefix for every topic the app owns, to share one cluster between environments",
    )
    topic_partitions: int = Field(default=4, ge=1, le=1024)
    topic_replication_factor: int = Field(default=1, ge=1, le=16)
    store: StoreKind = StoreKind.rocksdb
    #: workers that keep a warm copy of each table partition besides its owner (Faust's
    #: table_standby_replicas): a worker taking a partition over then replays little or nothing
    table_standby_replicas: int = Field(default=1, ge=0, le=16)
    data_dir: Path = Path("./var/data")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    log_level: LogLevel = LogLevel.info
    broker_commit_interval: float = Field(default=2.0, gt=0, le=60)
    max_poll_records: int = Field(default=500, ge=1, le=100_000)
    #: how long a crashed worker keeps its partitions before the group moves them on
    broker_session_timeout: float = Field(default=30.0, ge=6, le=300)
    broker_heartbeat_interval: float = Field(default=3.0, gt=0, le=60)
    #: seconds Faust's producer waits to fill a batch: fewer, larger produce requests for less CPU
    #: per message, at up to this much latency per hop (docs/adr/0016)
    producer_linger: float = Field(default=0.005, ge=0, le=1)

    # Batched flow stages (the customer sync's merge, docs/adr/0011): most events per batch, and
    # seconds a batch waits to fill, which a lone event waits too (at least 1 ms: no busy loop)
    flow_batch_size: int = Field(default=500, ge=1, le=10_000)
    flow_linger: float = Field(default=0.02, ge=0.001, le=10)

    # Sinks (stream_app/sinks/registry.py): which sink agents this worker runs, and how they batch
    #: "<system>.<object>,..." e.g. "salesforce.Contact,salesforce.Account,tims.customer"; empty: none
    sink_objects: str = ""
    sink_batch_size: int = Field(default=500, ge=1, le=10_000)
    sink_linger: float = Field(default=0.5, gt=0, le=60)
    sink_max_attempts: int = Field(default=8, ge=1, le=100)
    sink_retry_base_delay: float = Field(default=0.2, gt=0, le=60)
    sink_retry_max_delay: float = Field(default=30.0, gt=0, le=3600)

    #: a source process serves Prometheus /metrics on this port (None: off)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    #: seconds between consumer-lag measurements (by the leader worker)
    metrics_lag_interval: float = Field(default=15.0, gt=0)
    #: seconds a held partition may have messages waiting with its committed offset standing
    #: still before the worker's watchdog calls it stalled and recovers it (stream_app/watchdog.py)
    stall_after: float = Field(default=120.0, ge=5, le=86_400)

    # Health endpoints (stream_app/health.py, docs/adr/0024)
    #: /healthz fails when the event loop answers this many seconds late
    health_loop_lag_limit: float = Field(default=5.0, gt=0, le=600)
    #: seconds between two checks that each sink's target accepts our credentials (/readyz)
    health_auth_interval: float = Field(default=300.0, ge=1, le=86_400)
    #: a source is not ready when its last successful read of its system is older than this
    source_read_stale_after: float = Field(default=600.0, ge=1, le=86_400)
    #: a worker asked to stop (SIGTERM, SIGINT) that has not finished after this many seconds
    #: exits with code 75 (stream_app/shutdown.py); keep it under the orchestrator's grace
    shutdown_grace: float = Field(default=30.0, ge=1, le=3_600)

    #: flows this worker runs, comma-separated names from the flow registry; empty: every one
    flows: str = Field(default="", pattern=r"^[A-Za-z0-9_, ]*$")
    #: folder with one subfolder of mapping files per flow (<dir>/customer_sync/*.yaml); a flow
    #: without a subfolder there uses the mappings it ships (topologies/<flow>/mappings)
    mappings_dir: Path | None = None
    #: the erasure policy of `stream-app privacy erase` (YAML: delete, anonymise or keep per
    #: target); empty: the shipped one (topologies/customer_sync/privacy_policy.yaml)
    privacy_policy: str = ""

    # The ops console, `stream-app console` (stream_app/console, docs/adr/0031)
    console_host: str = "127.0.0.1"
    console_port: int = Field(default=6070, ge=0, le=65535)
    #: JSON {"name": {"role": "viewer"|"operator", "password": "<stream-app console hash-password>"}};
    #: secret-like (a leaked hash can be attacked offline), so it may come from CONNECT_CONSOLE_USERS_FILE
    console_users: SecretStr | None = None
    #: key that encrypts and signs the login cookie; unset: a random key per start (logins end on restart)
    console_session_key: SecretStr | None = None
    #: seconds a login lasts
    console_session_max_age: int = Field(default=8 * 3600, ge=60, le=30 * 86_400)
    #: the console's address as browsers reach it (the worker links to it); empty: http://host:port
    console_url: str = ""
    #: send the login cookie over HTTPS only (set it when a TLS proxy fronts the console)
    console_secure_cookie: bool = False

    # How every Kafka client of the process reaches the brokers (docs/adr/0023)
    kafka_security_protocol: SecurityProtocol = SecurityProtocol.plaintext
    kafka_sasl_mechanism: SaslMechanism = SaslMechanism.scram_sha_512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    #: the CA that signed the brokers' certificates (PEM); empty: the system's trusted CAs
    kafka_ssl_cafile: Path | None = None
    #: a client certificate and its key (PEM), for brokers that require mutual TLS
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_check_hostname: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _SecretFileSource(settings_cls, os.environ), _YamlFileSource(settings_cls))

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        hosts = [part.strip() for part in value.split(",") if part.strip()]
        if not hosts:
            raise ValueError("must list at least one host:port")
        for host in hosts:
            name, sep, port = host.rpartition(":")
            if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{host!r} is not host:port")
        return ",".join(hosts)

    @field_validator("mappings_dir")
    @classmethod
    def _check_mappings_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not Path(value).is_dir():
            raise ValueError(f"{str(value)!r} is not a folder (it holds one subfolder of mapping files per flow)")
        return value

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> "WorkerSettings":
        if self.broker_heartbeat_interval * 3 > self.broker_session_timeout:
            raise ValueError(
                "CONNECT_BROKER_HEARTBEAT_INTERVAL must be at most a third of CONNECT_BROKER_SESSION_TIMEOUT"
            )
        return self

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> "WorkerSettings":
        try:
            self.kafka_security()
        except ValidationError as exc:
            reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            raise ValueError(f"Kafka security (CONNECT_KAFKA_SECURITY_PROTOCOL, CONNECT_KAFKA_SASL_*, "
                             f"CONNECT_KAFKA_SSL_*): {reasons}") from None
        return self

    def kafka_security(self) -> KafkaSecurity:
        """How this process's Kafka clients authenticate and encrypt."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol, mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username, password=self.kafka_sasl_password,
            ca_file=self.kafka_ssl_cafile, cert_file=self.kafka_ssl_certfile, key_file=self.kafka_ssl_keyfile,
            check_hostname=self.kafka_ssl_check_hostname)

    @property
    def broker_url(self) -> str:
        return ";".join(f"kafka://{host}" for host in self.kafka_bootstrap_servers.split(","))

    def topic(self, name: str) -> str:
        """The full name of one of our topics, with the environment prefix."""
        return f"{self.topic_prefix}{name}"

    def connector_config(self, system: str) -> Any:
        """``system``'s config class built from its ``<system>_*`` settings; SettingsError names
        each CONNECT_<SYSTEM>_<FIELD> to fix. Validated here rather than at load: a worker
        without a system's credentials still starts when it runs nothing of that system."""
        try:
            spec = registry.connector(system)
        except KeyError as exc:
            raise SettingsError(str(exc.args[0])) from None
        values = {name: getattr(self, f"{system}_{name}") for name in spec.config.model_fields}
        try:
            return spec.config.load(system, values)
        except ConfigError as exc:
            raise config_error(exc) from None


def _connector_field(info: FieldInfo) -> tuple[Any, FieldInfo]:
    """The setting for one connector field: its type and bounds, checked at load (NoDecode: a
    list is given comma-separated); a required field is None until set, so a worker starts
    without credentials it does not use. Field validators run in ``connector_config``."""
    annotation: Any = info.annotation
    default = None if info.is_required() else info.default
    if info.is_required():
        annotation = Optional[annotation]
    return Annotated[(annotation, NoDecode, *info.metadata)], Field(default=default, description=info.description)


def _compose(base: type[WorkerSettings], specs: list[ConnectorSpec]) -> type[WorkerSettings]:
    fields: dict[str, Any] = {}
    for spec in specs:
        for name, info in spec.config.model_fields.items():
            setting = f"{spec.name}_{name}"
            if setting in base.model_fields or setting in fields:
                raise TypeError(f"connector {spec.name}: setting {setting} is declared twice")
            fields[setting] = _connector_field(info)
    return create_model("Settings", __base__=base, __module__=__name__,  # type: ignore[call-overload, no-any-return]
                        __doc__="Validated configuration: the worker's and every registered connector's.",
                        **fields)


#: the worker's settings plus ``<system>_<field>`` for every field of every registered connector
#: (type checkers see the worker's own; connectors' fields are read through ``connector_config``)
if TYPE_CHECKING:
    Settings = WorkerSettings
else:
    Settings = _compose(WorkerSettings, list(registry.connectors().values()))


def config_error(exc: ConfigError) -> SettingsError:
    """A connector's ConfigError, each field named by its environment variable."""
    lines = [f"{env_name(f'{exc.system}_{field}') if field else f'{ENV_PREFIX}{exc.system.upper()}_*'}: {reason}"
             for field, reason in exc.problems]
    return SettingsError("invalid settings:\n  " + "\n  ".join(lines))


def env_name(field_name: str) -> str:
    """The environment variable that sets ``field_name``."""
    if field_name == "kafka_bootstrap_servers":
        return "KAFKA_BOOTSTRAP_SERVERS"
    return f"{ENV_PREFIX}{field_name.upper()}"


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        if not error["loc"]:
            lines.append(str(error["msg"]).removeprefix("Value error, "))
            continue
        field = str(error["loc"][0])
        value = error.get("input")
        secret = "secret" in field or "key" in field or "token" in field or "password" in field
        shown = "" if isinstance(value, dict) or secret else f" (got {value!r})"
        lines.append(f"{env_name(field)}: {str(error['msg']).removeprefix('Value error, ')}{shown}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings (a :data:`Settings`); raise SettingsError naming what is wrong."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    except LocalKafkaError as exc:  # CONNECT_KAFKA_PORT, read for the default bootstrap address
        raise SettingsError(f"invalid settings:\n  {exc}") from None


def lenient_settings() -> Settings:
    """The defaults, read from nothing: what help and the local-broker commands run on when the
    configured settings are invalid (they must work whatever the flow settings say)."""
    return Settings.model_construct(kafka_bootstrap_servers="127.0.0.1:9092")


def misspelt_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``CONNECT_*`` variable that no setting reads, with the nearest name."""
    known = ({env_name(field) for field in Settings.model_fields} | set(OTHER_VARIABLES)
             | {env_name(field) + FILE_SUFFIX for field in secret_fields(Settings)})
    warnings = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in known:
            continue
        near = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.8)
        hint = f"did you mean {near[0]}?" if near else "no setting has that name (README, Configuration)"
        warnings.append(f"{name} is ignored: {hint}")
    return warnings
