"""The registry, the specs and the settings composed from them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from connectors import registry
from connectors.envelope import SinkCommand
from connectors.spec import ConnectorSpec
from stream_app.run_source import build
from stream_app.sinks.registry import enabled_sinks
from stream_app.settings import Settings, SettingsError, load_settings


def test_every_connector_field_is_a_setting_of_the_same_name() -> None:
    for spec in registry.connectors().values():
        assert {f"{spec.name}_{field}" for field in spec.config.model_fields} <= set(Settings.model_fields)
    assert registry.names() == ("salesforce", "tims", "pardot", "shop")
    assert [spec.links_topic for spec in registry.connectors().values()] == [None, "links.tims", None, None]


def test_connector_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECT_SALESFORCE_ENTITIES", "Contact, Account")
    monkeypatch.setenv("CONNECT_TIMS_TIMEOUT", "5")
    settings = load_settings(tims_base_url="http://127.0.0.1:9", tims_api_key="k")
    assert settings.salesforce_entities == ("Contact", "Account")
    assert settings.connector_config("tims").timeout == 5.0


def test_a_factory_config_error_names_the_variable() -> None:
    settings = load_settings(tims_base_url="http://127.0.0.1:9", tims_api_key="k", tims_source_mode="webhook")
    with pytest.raises(SettingsError, match="CONNECT_TIMS_WEBHOOK_SECRET: required in webhook mode"):
        build("tims", settings)


def test_an_unknown_system_is_refused() -> None:
    with pytest.raises(SettingsError, match="unknown system 'sap'"):
        load_settings().connector_config("sap")
    with pytest.raises(SettingsError, match="CONNECT_SINK_OBJECTS: 'sap.x'"):
        enabled_sinks(load_settings(sink_objects="sap.x"))
    with pytest.raises(ValueError, match="pattern"):  # not even a system's name
        SinkCommand(system="Sap!", object="x", external_id_field="Id", external_id="1", version=1, record_key="k")


def test_entry_points_add_connectors(monkeypatch: pytest.MonkeyPatch) -> None:
    tims = registry.connector("tims")
    extra = ConnectorSpec("erp2", "ERP 2", tims.config, (), tims.make_source, tims.make_writer, tims.make_backfill)
    point = SimpleNamespace(name="erp2", value="erp2_connector:CONNECTOR", load=lambda: extra)
    monkeypatch.setattr(registry, "entry_points", lambda group: [point] if group == registry.ENTRY_POINT_GROUP else [])
    registry.connectors.cache_clear()
    try:
        assert registry.names() == ("salesforce", "tims", "pardot", "shop", "erp2")
        assert registry.connector("erp2").dlq_topic == "dlq.erp2"
    finally:
        registry.connectors.cache_clear()
