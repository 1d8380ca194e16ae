"""Which sinks run, their options, and the writer each one gets."""

from __future__ import annotations

import sys

import pytest

from connectors.salesforce import shared_rest
from connectors.salesforce.writer import SalesforceWriter
from stream_app.run_source import connector_context
from stream_app.settings import SettingsError, load_settings
from stream_app.sinks.registry import SinkOptions, SinkSpec, build_writer, enabled_sinks, sink_options

SALESFORCE = {"salesforce_client_id": "cid", "salesforce_auth_flow": "client_credentials",
              "salesforce_client_secret": "s3cret", "salesforce_login_url": "http://127.0.0.1:9"}


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONNECT_SINK_OBJECTS", "CONNECT_SINK_BATCH_SIZE", "CONNECT_SINK_LINGER",
                 "CONNECT_SINK_MAX_ATTEMPTS", "CONNECT_SINK_RETRY_BASE_DELAY", "CONNECT_SINK_RETRY_MAX_DELAY"):
        monkeypatch.delenv(name, raising=False)


def test_no_sink_runs_unless_listed() -> None:
    assert enabled_sinks(load_settings()) == []
    assert sink_options(load_settings()) == SinkOptions()


def test_listed_sinks_and_their_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECT_SINK_OBJECTS", " salesforce.Contact, tims.customer ,,pardot.prospect")
    specs = enabled_sinks(load_settings())
    assert specs == [SinkSpec("salesforce", "Contact"), SinkSpec("tims", "customer"), SinkSpec("pardot", "prospect")]
    assert [(s.topic, s.dlq_topic, s.links_topic) for s in specs] == [
        ("sink.salesforce.Contact", "dlq.salesforce", None),
        ("sink.tims.customer", "dlq.tims", "links.tims"),
        ("sink.pardot.prospect", "dlq.pardot", None)]


@pytest.mark.parametrize(("value", "problem"), [
    ("salesforce", "is not <system>.<object>"), ("sap.Customer", "is not <system>.<object>"),
    ("salesforce.Contact,salesforce.Contact", "listed twice")])
def test_a_wrong_sink_list_names_the_setting(monkeypatch: pytest.MonkeyPatch, value: str, problem: str) -> None:
    monkeypatch.setenv("CONNECT_SINK_OBJECTS", value)
    with pytest.raises(SettingsError, match=f"CONNECT_SINK_OBJECTS: .*{problem}"):
        enabled_sinks(load_settings())


def test_options_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECT_SINK_BATCH_SIZE", "50")
    monkeypatch.setenv("CONNECT_SINK_LINGER", "0.2")
    monkeypatch.setenv("CONNECT_SINK_MAX_ATTEMPTS", "3")
    options = sink_options(load_settings())
    assert (options.batch_size, options.linger, options.max_attempts) == (50, 0.2, 3)
    assert options.policy().max_attempts == 3 and options.policy().max_delay == 30.0
    monkeypatch.setenv("CONNECT_SINK_LINGER", "-1")
    with pytest.raises(SettingsError, match="CONNECT_SINK_LINGER: Input should be greater than 0"):
        load_settings()


def test_salesforce_writers_share_one_client() -> None:
    settings = load_settings(**SALESFORCE)
    context = connector_context(settings)
    contact, account = build_writer(SinkSpec("salesforce", "Contact"), settings, context), \
        build_writer(SinkSpec("salesforce", "Account"), settings, context)
    assert isinstance(contact, SalesforceWriter) and isinstance(account, SalesforceWriter)
    assert contact.rest is account.rest is shared_rest(context)


def test_salesforce_sinks_need_salesforce_settings() -> None:
    with pytest.raises(SettingsError, match="CONNECT_SALESFORCE"):
        build_writer(SinkSpec("salesforce", "Contact"), load_settings(), connector_context(load_settings()))


def test_a_missing_writer_module_stops_start_up_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "connectors.tims.writer", None)
    settings = load_settings(tims_base_url="http://127.0.0.1:9", tims_api_key="k")
    with pytest.raises(SettingsError, match=r"enables tims sinks, but their writer \(connectors.tims.writer\)"):
        build_writer(SinkSpec("tims", "customer"), settings, connector_context(settings))


def test_tims_and_pardot_writers_are_wired() -> None:
    settings = load_settings(tims_base_url="http://127.0.0.1:9", tims_api_key="k",
                             pardot_business_unit_id="0Uv000000000001AAA", **SALESFORCE)
    assert build_writer(SinkSpec("tims", "customer"), settings, connector_context(settings)).system == "tims"
    assert build_writer(SinkSpec("pardot", "prospect"), settings, connector_context(settings)).system == "pardot"
