"""Secrets from files (``<NAME>_FILE``) and the Kafka security settings (docs/adr/0023)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors import kafka_security
from connectors.kafka_security import KafkaSecurity, SecurityProtocol
from stream_app.app import create_app
from stream_app.settings import Settings, SettingsError, load_settings, misspelt_variables, secret_fields

SECRET = "s3cr3t-value-Zq9"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CONNECT_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)


def test_every_secret_setting_takes_a_file() -> None:
    assert set(secret_fields(Settings)) == {
        "kafka_sasl_password", "salesforce_client_secret", "salesforce_refresh_token", "tims_api_key",
        "tims_webhook_secret", "console_users", "console_session_key", "shop_access_token", "shop_webhook_secret"}
    # the Salesforce private key has its own file setting, read when it is used
    assert "salesforce_private_key_file" in Settings.model_fields


@pytest.mark.parametrize("content", [SECRET, SECRET + "\n", SECRET + "\r\n"])
def test_a_secret_file_gives_the_value_without_its_trailing_newline(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str) -> None:
    file = tmp_path / "api-key"
    file.write_bytes(content.encode())
    monkeypatch.setenv("CONNECT_TIMS_API_KEY_FILE", str(file))
    monkeypatch.setenv("CONNECT_KAFKA_SASL_PASSWORD_FILE", str(file))
    settings = load_settings()
    assert settings.tims_api_key.get_secret_value() == SECRET  # type: ignore[attr-defined]
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == SECRET
    assert SECRET not in repr(settings) and SECRET not in str(settings.kafka_security())


def test_the_file_wins_over_the_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("tims_webhook_secret: from-yaml\n")
    (tmp_path / "secret").write_text(SECRET)
    monkeypatch.setenv("CONNECT_CONFIG_FILE", str(tmp_path / "c.yaml"))
    monkeypatch.setenv("CONNECT_TIMS_WEBHOOK_SECRET_FILE", str(tmp_path / "secret"))
    assert load_settings().tims_webhook_secret.get_secret_value() == SECRET  # type: ignore[attr-defined]


def test_both_the_variable_and_its_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text(SECRET)
    monkeypatch.setenv("CONNECT_SALESFORCE_CLIENT_SECRET", "other-" + SECRET)
    monkeypatch.setenv("CONNECT_SALESFORCE_CLIENT_SECRET_FILE", str(tmp_path / "secret"))
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert "CONNECT_SALESFORCE_CLIENT_SECRET and CONNECT_SALESFORCE_CLIENT_SECRET_FILE are both set" in message
    assert SECRET not in message


@pytest.mark.parametrize("problem", ["missing", "unreadable", "empty", "a folder"])
def test_a_secret_file_that_cannot_be_read_names_the_variable_not_the_content(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, problem: str) -> None:
    file = tmp_path / "secret"
    if problem == "unreadable":
        file.write_text(SECRET)
        file.chmod(0)
        if os.access(file, os.R_OK):  # root reads anything: make it unreadable another way
            file.unlink()
            file.write_bytes(b"\xff\xfe" + SECRET.encode())
    elif problem == "empty":
        file.write_text("\n")
    elif problem == "a folder":
        file.mkdir()
    monkeypatch.setenv("CONNECT_TIMS_API_KEY_FILE", str(file))
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert message.startswith(f"CONNECT_TIMS_API_KEY_FILE={file}: ")
    assert SECRET not in message


def test_file_variables_are_not_called_misspelt() -> None:
    assert misspelt_variables({"CONNECT_TIMS_API_KEY_FILE": "/x", "CONNECT_KAFKA_SASL_PASSWORD_FILE": "/y"}) == []
    assert "did you mean CONNECT_TIMS_API_KEY_FILE" in misspelt_variables({"CONNECT_TIMS_API_KEY_FLE": "/x"})[0]


def test_sasl_needs_a_username_and_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CONNECT_KAFKA_SASL_USERNAME", "connect")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "CONNECT_KAFKA_SECURITY_PROTOCOL" in str(error.value)
    assert "SASL_SSL needs a SASL username and password" in str(error.value)


def test_a_ca_file_that_does_not_exist_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONNECT_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("CONNECT_KAFKA_SSL_CAFILE", str(tmp_path / "nope.pem"))
    with pytest.raises(SettingsError, match="nope.pem"):
        load_settings()


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    security = load_settings().kafka_security()
    assert security.protocol is SecurityProtocol.plaintext
    assert security.client_options() == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_reaches_our_clients_and_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CONNECT_KAFKA_SASL_USERNAME", "connect")
    monkeypatch.setenv("CONNECT_KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("CONNECT_KAFKA_SSL_CHECK_HOSTNAME", "false")
    settings = load_settings(store="memory://")
    options = settings.kafka_security().client_options()
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == SECRET
    assert isinstance(options["ssl_context"], ssl.SSLContext) and not options["ssl_context"].check_hostname
    previous = kafka_security.current()
    try:
        app = create_app(settings, flows=False, sinks=False, metrics=False)
        assert kafka_security.client_options()["sasl_plain_username"] == "connect"
        credentials = app.conf.broker_credentials
        assert credentials.protocol.value == "SASL_SSL" and credentials.mechanism.value == "SCRAM-SHA-512"
        assert SECRET not in repr(credentials)
    finally:
        kafka_security.use(previous)


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    with pytest.raises(ValueError, match="needs its key"):
        KafkaSecurity(protocol=SecurityProtocol.ssl, cert_file=tmp_path / "cert.pem")


def test_secrets_are_hidden_in_reprs() -> None:
    security = KafkaSecurity(protocol=SecurityProtocol.sasl_plaintext, username="u", password=SecretStr(SECRET))
    assert SECRET not in repr(security) and SECRET not in str(security)
