"""The registry of sandbox vendors: names in one place, apps found by convention, each built the same way."""

from __future__ import annotations

import importlib

import pytest
from fastapi import FastAPI

import ml_connector_sandbox
from ml_connector_sandbox.common import SandboxState


def test_vendor_apps_follow_the_naming_convention():
    names = ml_connector_sandbox.vendor_names()
    assert names == ["business_central", "acumatica", "exact_online", "syspro", "ups", "shipstation"]
    assert ml_connector_sandbox.VENDOR_APPS == {name: f"ml_connector_sandbox.{name}:create_app" for name in names}
    assert ml_connector_sandbox.available_vendors() == names


@pytest.mark.parametrize("vendor", ml_connector_sandbox.vendor_names())
def test_every_vendor_is_a_subpackage_whose_app_has_the_control_endpoints(vendor):
    package = importlib.import_module(f"ml_connector_sandbox.{vendor}")
    assert package.__file__.endswith("__init__.py"), "one subpackage per vendor, one module per concern"
    app = ml_connector_sandbox.load_app_factory(vendor)()
    assert isinstance(app, FastAPI) and isinstance(app.state.sandbox, SandboxState)
    paths = {getattr(route, "path", "") for route in app.routes}
    assert {"/_sandbox/counters", "/_sandbox/knobs", "/_sandbox/reset", "/_sandbox/validation_errors"} <= paths
    assert any(path.startswith(f"/_sandbox/{vendor}/") for path in paths)


def test_unknown_vendor_names_the_registered_ones():
    with pytest.raises(KeyError, match="registered: acumatica, business_central, exact_online, shipstation, syspro, ups"):
        ml_connector_sandbox.load_app_factory("fedex")
