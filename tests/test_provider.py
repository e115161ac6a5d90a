"""The Airflow provider registration: schema, entry point, what ProvidersManager and the connection UI see,
and the UI "Test" button of the UPS connection."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import warnings
from pathlib import Path

import airflow
import jsonschema
import pytest
from tests.conftest import UPS_ACCOUNT, ups_connection

from ml_connector.carriers.ups.hook import UpsHook
from ml_connector.provider import get_provider_info
from ml_connector_sandbox.credentials import UPS_CLIENT_ID, UPS_CLIENT_SECRET

AIRFLOW_DIR = Path(airflow.__file__).resolve().parent
PACKAGE = "ml-connector"
OUR_HOOKS = {
    "ups": "ml_connector.carriers.ups.hook.UpsHook",
    "business_central": "ml_connector.erp.business_central.hook.BusinessCentralHook",
    "acumatica": "ml_connector.erp.acumatica.hook.AcumaticaHook",
    "exact_online": "ml_connector.erp.exact_online.hook.ExactOnlineHook",
    "syspro": "ml_connector.erp.syspro.hook.SysproHook",
    "shipstation": "ml_connector.fulfilment.shipstation.hook.ShipStationHook",
}


def load_schema(name: str) -> dict:
    return json.loads((AIRFLOW_DIR / name).read_text())


def import_hook(dotted: str) -> type:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


# -- provider info ----------------------------------------------------------------------------------------


def test_provider_info_validates_against_airflows_schema():
    info = get_provider_info()
    jsonschema.Draft7Validator(load_schema("provider_info.schema.json")).validate(info)
    assert info["package-name"] == PACKAGE
    assert {c["connection-type"]: c["hook-class-name"] for c in info["connection-types"]} == OUR_HOOKS


def test_connection_types_validate_against_the_provider_yaml_schema():
    """provider_info.schema.json does not describe conn-fields/ui-field-behaviour; provider.yaml's does."""
    item_schema = load_schema("provider.yaml.schema.json")["properties"]["connection-types"]["items"]
    behaviour_schema = load_schema("customized_form_field_behaviours.schema.json")
    for conn in get_provider_info()["connection-types"]:
        jsonschema.Draft7Validator(item_schema).validate(conn)
        behaviour = conn["ui-field-behaviour"]
        jsonschema.Draft7Validator(behaviour_schema).validate({
            "hidden_fields": behaviour["hidden-fields"], "relabeling": behaviour["relabeling"],
            "placeholders": behaviour["placeholders"]})
        for name, field in conn["conn-fields"].items():
            # each field schema is a valid JSON schema that accepts its default and an empty value
            jsonschema.Draft7Validator.check_schema(field["schema"])
            validator = jsonschema.Draft7Validator(field["schema"])
            if "default" in field["schema"]:
                validator.validate(field["schema"]["default"])
            validator.validate(None)
            assert field["label"] and field["description"], name


@pytest.mark.parametrize("conn_type", sorted(OUR_HOOKS))
def test_hook_classes_import_and_honour_the_hook_contract(conn_type):
    conn = next(c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type)
    hook = import_hook(conn["hook-class-name"])
    assert hook.conn_type == conn_type
    assert hook.hook_name == conn["hook-name"]
    assert hook.default_conn_name == f"{conn_type}_default"
    assert hook.conn_name_attr == f"{conn_type}_conn_id"
    # Airflow builds hooks as hook_class(**{conn_name_attr: conn_id}) and calls test_connection() from the UI
    instance = hook(**{hook.conn_name_attr: "some_conn"})
    assert getattr(instance, hook.conn_name_attr) == "some_conn"
    assert instance.conn_id == "some_conn"
    assert callable(getattr(hook, "test_connection", None))
    # the conn-fields are the extras the hook reads
    assert all(isinstance(name, str) and not name.startswith("extra__") for name in conn["conn-fields"])


def test_distribution_exposes_the_provider_entry_point():
    ours = [ep for ep in importlib.metadata.entry_points(group="apache_airflow_provider")
            if ep.value.startswith("ml_connector.")]
    assert len(ours) == 1
    entry_point = ours[0]
    assert entry_point.value == "ml_connector.provider:get_provider_info"
    assert entry_point.dist is not None and entry_point.dist.metadata["Name"] == PACKAGE
    assert entry_point.load()() == get_provider_info()


# -- ProvidersManager ---------------------------------------------------------------------------------------


@pytest.fixture
def providers_manager(monkeypatch):
    """A fresh ProvidersManager (and task-runtime manager) for this test.

    Both are process-wide singletons that cache what they discovered; the test gets new instances and the
    previous singletons (whatever other tests initialised) are put back afterwards by monkeypatch.
    """
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    for cls in (ProvidersManager, ProvidersManagerTaskRuntime):
        monkeypatch.setattr(cls, "_instance", None)
        monkeypatch.setattr(cls, "_initialized", False)
        monkeypatch.setattr(cls, "_initialization_stack_trace", None)
    return ProvidersManager()


def test_providers_manager_discovers_our_provider(providers_manager, caplog):
    with caplog.at_level(logging.WARNING):
        providers = providers_manager.providers
        metadata = {m.connection_type: m for m in providers_manager.iter_connection_type_hook_ui_metadata()}
    assert PACKAGE in providers
    info = get_provider_info()
    assert providers[PACKAGE].version == info["versions"][0]
    assert providers[PACKAGE].data["connection-types"] == info["connection-types"]
    for conn_type, class_name in OUR_HOOKS.items():
        assert metadata[conn_type].hook_class_name == class_name
        assert metadata[conn_type].hook_name == import_hook(class_name).hook_name
    problems = [r.getMessage() for r in caplog.records
                if any(word in r.getMessage() for word in ("ml_connector", "ml-connector", *OUR_HOOKS))]
    assert problems == []


def test_providers_manager_registers_our_hooks(providers_manager):
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hooks = ProvidersManagerTaskRuntime().hooks  # what Connection.get_hook() resolves through
    for conn_type, class_name in OUR_HOOKS.items():
        info = hooks[conn_type]
        assert info is not None, f"{conn_type}: the hook failed to import"
        hook = import_hook(class_name)
        assert info.hook_class_name == class_name
        assert info.package_name == PACKAGE
        assert info.connection_type == conn_type
        assert info.connection_id_attribute_name == hook.conn_name_attr
        assert info.connection_testable is True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ProvidersManager.hooks is deprecated in favour of the runtime one
        assert providers_manager.hooks["ups"].hook_class_name == OUR_HOOKS["ups"]


def test_connection_form_widgets_and_field_behaviours(providers_manager):
    widgets = providers_manager.connection_form_widgets
    conn_fields = {c["connection-type"]: c["conn-fields"] for c in get_provider_info()["connection-types"]}
    for conn_type, fields in conn_fields.items():
        for name, field in fields.items():
            widget = widgets[f"extra__{conn_type}__{name}"]
            assert widget.package_name == PACKAGE
            assert widget.hook_class_name == OUR_HOOKS[conn_type]
            assert widget.field_name == name
            assert widget.field["schema"]["title"] == field["label"]
            assert widget.field["description"] == field["description"]

    account = widgets["extra__ups__account_number"]
    assert account.field["schema"]["title"] == "UPS account number"
    assert account.is_sensitive is False
    credential = widgets["extra__ups__track_alert_credential"]
    assert credential.field["schema"]["title"] == "Track Alert credential"
    assert credential.is_sensitive is True
    assert widgets["extra__ups__label_format"].field["value"] == "GIF"
    assert sorted(n for n, w in widgets.items() if w.package_name == PACKAGE and w.is_sensitive) == [
        "extra__acumatica__client_secret", "extra__acumatica__push_header_value",
        "extra__exact_online__refresh_token", "extra__exact_online__webhook_secret",
        "extra__shipstation__v2_api_key", "extra__shipstation__webhook_token",
        "extra__syspro__company_password", "extra__syspro__odata_password",
        "extra__ups__track_alert_credential", "extra__ups__track_alert_token_client_secret"]

    behaviours = providers_manager.field_behaviours
    assert behaviours["ups"]["relabeling"] == {"host": "API base URL", "login": "Client ID",
                                               "password": "Client secret"}
    assert set(behaviours["ups"]["hidden_fields"]) == {"schema"}  # port stays: the UI's Test button needs it
    assert behaviours["ups"]["placeholders"]["port"].startswith("443")
    assert set(behaviours["business_central"]["hidden_fields"]) == {"schema"}
    assert behaviours["business_central"]["relabeling"]["login"] == "Entra client ID"
    assert "host" in behaviours["business_central"]["placeholders"]


def test_connection_ui_metadata_lists_our_forms(providers_manager):
    """What the API server hands the connection form (HookMetaService backs /ui/connections/hook_meta)."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    meta = {m.connection_type: m for m in HookMetaService.hook_meta_data.__wrapped__()}
    ups = meta["ups"]
    assert ups.hook_class_name == OUR_HOOKS["ups"]
    assert ups.standard_fields.login.title == "Client ID"
    assert ups.standard_fields.port.hidden is False and ups.standard_fields.port.placeholder.startswith("443")
    assert ups.extra_fields["account_number"]["schema"]["title"] == "UPS account number"
    assert ups.extra_fields["track_alert_credential"]["schema"]["format"] == "password"
    bc = meta["business_central"]
    assert bc.hook_class_name == OUR_HOOKS["business_central"]
    forms = {c["connection-type"]: c for c in get_provider_info()["connection-types"]}
    assert set(bc.extra_fields) == set(forms["business_central"]["conn-fields"])


# -- the UI "Test" button --------------------------------------------------------------------------------


@pytest.fixture
def no_spec_violations(ups):
    yield
    assert ups.validation_errors("ups") == []


def test_ups_test_connection_names_the_account(ups_conn, sqlite_ledger, no_spec_violations):
    ok, message = UpsHook(ledger=sqlite_ledger).test_connection()
    assert ok is True, message
    assert UPS_ACCOUNT in message
    assert ups_conn.counters("ups")  # the sandbox answered


def test_ups_test_connection_with_a_wrong_secret_hides_it(ups_conn, sqlite_ledger, monkeypatch,
                                                          no_spec_violations):
    conn = json.loads(ups_connection(ups_conn.url("ups")))
    conn["password"] = "wrong-secret"
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", json.dumps(conn))
    ok, message = UpsHook(ledger=sqlite_ledger).test_connection()
    assert ok is False
    assert "wrong-secret" not in message
    assert "ups_default" in message


def test_ups_test_button_through_airflows_connection(ups, providers_manager, no_spec_violations):
    """The path the UI's Test button takes: Connection.test_connection() -> get_hook() -> our hook."""
    from airflow.sdk import Connection

    def connection(password: str) -> Connection:
        return Connection(conn_id="ups_from_ui", conn_type="ups", host=ups.url("ups"), login=UPS_CLIENT_ID,
                          password=password, extra=json.dumps({"account_number": UPS_ACCOUNT}))

    ok, message = connection(UPS_CLIENT_SECRET).test_connection()
    assert ok is True, message
    assert UPS_ACCOUNT in message
    ok, message = connection("wrong-secret").test_connection()
    assert ok is False
    assert "ups_from_ui" in message and "wrong-secret" not in message
