"""Pipeline settings: validated at parse time, errors name the file, the pipeline and the setting."""

from __future__ import annotations

import pytest
import yaml

from ml_connector.erp.business_central.source import BusinessCentralSettings
from ml_connector.errors import ConfigurationError
from ml_connector.settings import load_settings


def write(tmp_path, **pipeline):
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump({"p": {"erp": "business_central", **pipeline}}))
    return path


def test_the_erps_own_settings_model_is_used_and_defaults_come_from_the_registry(tmp_path):
    settings = load_settings("p", write(tmp_path))
    assert isinstance(settings, BusinessCentralSettings)
    assert settings.carrier == "ups" and settings.shipping_agent_code == "UPS"
    assert settings.erp_connection_id == "business_central_default"
    assert settings.carrier_connection_id == "ups_default"


def test_connection_ids_can_be_set_and_ups_conn_id_still_works(tmp_path):
    assert load_settings("p", write(tmp_path, ups_conn_id="ups_east")).carrier_connection_id == "ups_east"
    assert load_settings("p", write(tmp_path, carrier_conn_id="ups_west")).carrier_connection_id == "ups_west"
    assert load_settings("p", write(tmp_path, erp_conn_id="bc_eu")).erp_connection_id == "bc_eu"


def test_unknown_erp_lists_the_known_ones(tmp_path):
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump({"p": {"erp": "sap"}}))
    with pytest.raises(ConfigurationError, match=r"setting 'erp': .*unknown ERP 'sap'; known: acumatica, business_central"):
        load_settings("p", path)


def test_a_ship_method_mapped_to_no_ups_service_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match=r"pipeline 'p'.*'FAST' maps to '99', which is not a UPS"):
        load_settings("p", write(tmp_path, ship_method_map={"FAST": "99"}))


def test_invalid_cron_names_the_setting_and_the_file(tmp_path):
    path = write(tmp_path, schedule="every tuesday")
    with pytest.raises(ConfigurationError) as caught:
        load_settings("p", path)
    assert str(path) in str(caught.value) and "setting 'schedule'" in str(caught.value)


def test_unknown_setting_and_unknown_pipeline_are_named(tmp_path):
    with pytest.raises(ConfigurationError, match="setting 'max_lane'"):
        load_settings("p", write(tmp_path, max_lane=3))
    with pytest.raises(ConfigurationError, match="no pipeline 'q'"):
        load_settings("q", write(tmp_path))


def test_erp_specific_settings_are_checked_by_the_erps_model(tmp_path):
    with pytest.raises(ConfigurationError, match="setting 'shipping_agent_code'"):
        load_settings("p", write(tmp_path, shipping_agent_code="UNITED-PARCEL"))


def test_pools_default_to_none_and_an_empty_name_is_refused(tmp_path):
    settings = load_settings("p", write(tmp_path))
    assert settings.carrier_pool is None and settings.erp_pool is None
    named = load_settings("p", write(tmp_path, carrier_pool="ml_connector_ups", erp_pool="bc_pool"))
    assert (named.carrier_pool, named.erp_pool) == ("ml_connector_ups", "bc_pool")
    with pytest.raises(ConfigurationError, match="setting 'erp_pool'"):
        load_settings("p", write(tmp_path, erp_pool=""))
    with pytest.raises(ConfigurationError, match="setting 'carrier_pool'"):
        load_settings("p", write(tmp_path, carrier_pool="x" * 257))  # Airflow's pool name is 256 characters
