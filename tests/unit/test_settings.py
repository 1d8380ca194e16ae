"""Settings: defaults, the environment, the optional file, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stream_app.app import create_app
from stream_app.settings import Settings, SettingsError, StoreKind, env_name, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("CONNECT_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)


def test_defaults_are_safe_for_production() -> None:
    settings = load_settings()
    assert settings.store is StoreKind.rocksdb
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.broker_url == "kafka://127.0.0.1:9092"


def test_environment_is_read_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "a:1, b:2")
    monkeypatch.setenv("CONNECT_STORE", "memory://")
    monkeypatch.setenv("CONNECT_WEB_PORT", "7001")
    monkeypatch.setenv("CONNECT_TOPIC_PREFIX", "staging.")
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "a:1,b:2"
    assert settings.broker_url == "kafka://a:1;kafka://b:2"
    assert settings.store is StoreKind.memory
    assert settings.web_port == 7001
    assert settings.topic("src.tims.customer") == "staging.src.tims.customer"


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("CONNECT_WEB_PORT", "seventy", "valid integer"),
        ("CONNECT_WEB_PORT", "70000", "less than or equal to 65535"),
        ("CONNECT_STORE", "redis://", "rocksdb://"),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "not host:port"),
        ("CONNECT_TOPIC_PARTITIONS", "0", "greater than or equal to 1"),
        ("CONNECT_APP_ID", "has space", "pattern"),
        ("CONNECT_LOG_LEVEL", "loud", "debug"),
    ],
)
def test_a_wrong_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, complaint: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert f"{variable}:" in message
    assert complaint in message


def test_several_errors_are_reported_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECT_WEB_PORT", "x")
    monkeypatch.setenv("CONNECT_TOPIC_PARTITIONS", "-3")
    message = str(pytest.raises(SettingsError, load_settings).value)
    assert "CONNECT_WEB_PORT" in message and "CONNECT_TOPIC_PARTITIONS" in message


def test_config_file_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    file = tmp_path / "connect.yaml"
    file.write_text("app_id: from-file\nweb_port: 7100\n")
    monkeypatch.setenv("CONNECT_CONFIG_FILE", str(file))
    monkeypatch.setenv("CONNECT_WEB_PORT", "7200")
    settings = load_settings()
    assert settings.app_id == "from-file"
    assert settings.web_port == 7200


def test_config_file_problems_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONNECT_CONFIG_FILE", str(tmp_path / "missing.yaml"))
    assert "CONNECT_CONFIG_FILE" in str(pytest.raises(SettingsError, load_settings).value)
    file = tmp_path / "bad.yaml"
    file.write_text("web_prot: 1\n")
    monkeypatch.setenv("CONNECT_CONFIG_FILE", str(file))
    assert "web_prot" in str(pytest.raises(SettingsError, load_settings).value)
    file.write_text("web_port: nope\n")
    assert "CONNECT_WEB_PORT" in str(pytest.raises(SettingsError, load_settings).value)


def test_every_field_has_an_environment_name() -> None:
    names = {env_name(field) for field in Settings.model_fields}
    assert "KAFKA_BOOTSTRAP_SERVERS" in names
    assert all(n == "KAFKA_BOOTSTRAP_SERVERS" or n.startswith("CONNECT_") for n in names)


def test_heartbeat_must_fit_the_session_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECT_BROKER_SESSION_TIMEOUT", "10")
    monkeypatch.setenv("CONNECT_BROKER_HEARTBEAT_INTERVAL", "5")
    message = str(pytest.raises(SettingsError, load_settings).value)
    assert "CONNECT_BROKER_HEARTBEAT_INTERVAL" in message


def test_connector_settings_name_the_variable_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    def salesforce_config(settings: Settings) -> Any:
        return settings.connector_config("salesforce")

    monkeypatch.setenv("CONNECT_SALESFORCE_CLIENT_ID", "consumer-key")
    monkeypatch.setenv("CONNECT_SALESFORCE_AUTH_FLOW", "client_credentials")
    message = str(pytest.raises(SettingsError, salesforce_config, load_settings()).value)
    assert "client_secret" in message
    monkeypatch.setenv("CONNECT_SALESFORCE_CLIENT_SECRET", "hush-hush")
    monkeypatch.setenv("CONNECT_SALESFORCE_API_VERSION", "sixty")
    message = str(pytest.raises(SettingsError, salesforce_config, load_settings()).value)
    assert "CONNECT_SALESFORCE_API_VERSION" in message and "hush-hush" not in message
    monkeypatch.setenv("CONNECT_SALESFORCE_API_VERSION", "62.0")
    assert salesforce_config(load_settings()).client_secret.get_secret_value() == "hush-hush"

    monkeypatch.setenv("CONNECT_PARDOT_BUSINESS_UNIT_ID", "nope")
    settings = load_settings()
    assert "CONNECT_PARDOT_BUSINESS_UNIT_ID" in str(pytest.raises(SettingsError, settings.connector_config, "pardot").value)
    message = str(pytest.raises(SettingsError, settings.connector_config, "tims").value)
    assert "CONNECT_TIMS_BASE_URL" in message and "CONNECT_TIMS_API_KEY" in message


def test_secrets_are_never_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECT_TIMS_API_KEY", "k" * 5)
    assert "kkkkk" not in repr(load_settings())
    monkeypatch.setenv("CONNECT_WEB_PORT", "bad")
    message = str(pytest.raises(SettingsError, load_settings).value)
    assert "kkkkk" not in message


def test_flow_batches_have_defaults_and_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.flow_batch_size, settings.flow_linger) == (500, 0.02)
    monkeypatch.setenv("CONNECT_FLOW_BATCH_SIZE", "50")
    monkeypatch.setenv("CONNECT_FLOW_LINGER", "0.2")
    settings = load_settings()
    assert (settings.flow_batch_size, settings.flow_linger) == (50, 0.2)


@pytest.mark.parametrize(("variable", "value"), [
    ("CONNECT_FLOW_BATCH_SIZE", "0"), ("CONNECT_FLOW_BATCH_SIZE", "10001"), ("CONNECT_FLOW_BATCH_SIZE", "many"),
    ("CONNECT_FLOW_LINGER", "0"), ("CONNECT_FLOW_LINGER", "0.0001"), ("CONNECT_FLOW_LINGER", "11"),
])
def test_wrong_flow_batches_name_the_setting(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    assert f"{variable}:" in str(pytest.raises(SettingsError, load_settings).value)


def test_producer_linger_defaults_to_5_ms_and_reaches_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().producer_linger == 0.005
    monkeypatch.setenv("CONNECT_PRODUCER_LINGER", "0.05")
    app = create_app(load_settings(), flows=False, sinks=False, metrics=False)
    assert app.conf.producer_linger == 0.05


@pytest.mark.parametrize("value", ["-0.001", "1.5", "soon"])
def test_wrong_producer_linger_names_the_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CONNECT_PRODUCER_LINGER", value)
    assert "CONNECT_PRODUCER_LINGER:" in str(pytest.raises(SettingsError, load_settings).value)


def test_the_local_broker_port_is_the_default_bootstrap_address(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_app.commands import _export_line

    monkeypatch.setenv("CONNECT_KAFKA_PORT", "29092")
    assert load_settings().kafka_bootstrap_servers == "127.0.0.1:29092"
    assert _export_line("127.0.0.1:29092").endswith("# optional while CONNECT_KAFKA_PORT=29092 stays set")
    assert "needed" in _export_line("127.0.0.1:39092")
    monkeypatch.setenv("CONNECT_KAFKA_PORT", "nope")
    with pytest.raises(SettingsError, match="CONNECT_KAFKA_PORT='nope' is not a port number"):
        load_settings()


def test_misspelt_variables_are_named_with_the_nearest_setting() -> None:
    from stream_app.settings import misspelt_variables

    warnings = misspelt_variables({"CONNECT_WEB_PROT": "1", "CONNECT_WEB_PORT": "1", "CONNECT_KAFKA_PORT": "1",
                                   "CONNECT_NOTHING_LIKE_IT": "1", "PATH": "/bin"})
    assert warnings == ["CONNECT_NOTHING_LIKE_IT is ignored: no setting has that name (README, Configuration)",
                        "CONNECT_WEB_PROT is ignored: did you mean CONNECT_WEB_PORT?"]


def test_a_mappings_folder_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="CONNECT_MAPPINGS_DIR: .*is not a folder"):
        load_settings(mappings_dir=tmp_path / "nowhere")


def test_table_standby_replicas_reach_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    assert create_app(load_settings(), flows=False, sinks=False, metrics=False).conf.table_standby_replicas == 1
    monkeypatch.setenv("CONNECT_TABLE_STANDBY_REPLICAS", "2")
    assert create_app(load_settings(), flows=False, sinks=False, metrics=False).conf.table_standby_replicas == 2
    monkeypatch.setenv("CONNECT_TABLE_STANDBY_REPLICAS", "-1")
    assert "CONNECT_TABLE_STANDBY_REPLICAS:" in str(pytest.raises(SettingsError, load_settings).value)


def test_the_engagement_flows_run_only_when_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_app.flows import enabled_flows

    default = [flow.name for flow in enabled_flows(load_settings())]
    assert "customer_sync" in default and "activities" not in default and "lists" not in default
    monkeypatch.setenv("CONNECT_FLOWS", "activities,lists")
    assert [flow.name for flow in enabled_flows(load_settings())] == ["activities", "lists"]
