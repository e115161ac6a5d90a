"""Spec-faithful local fakes of the vendor APIs, for the demo and the end-to-end tests (never for production).

``python -m ml_connector_sandbox`` serves every registered vendor app on loopback, each on its own
port, in one process (see :mod:`ml_connector_sandbox.server`). Tests use
:class:`ml_connector_sandbox.testing.SandboxServer`.

One vendor, one subpackage, found by convention: ``ml_connector_sandbox.<vendor>`` exposes
``create_app(state=None) -> FastAPI`` and is built from FastAPI routers, one module per vendor concern
(``ups/``: oauth, address, shipping, tracking, control, state, errors; ``business_central/``: entra,
companies, sales_orders, writeback, odata, control, state, seed, errors). Shared machinery (state with
knobs and counters, the ``/_sandbox`` control endpoints, the fault middleware) is in
:mod:`ml_connector_sandbox.common`; the vendored OpenAPI specs and their validator in
:mod:`ml_connector_sandbox.specs`.

Credentials: each sandbox accepts only its documented sandbox app and refuses anything else with the
vendor's own answer (:mod:`ml_connector_sandbox.credentials`, the values of ``airflow_settings.yaml``):

=================  ============================  ================================
vendor             client id (connection login)  client secret (connection password)
=================  ============================  ================================
ups                ``sandbox-client-id``         ``sandbox-client-secret``
business_central   ``sandbox-entra-client-id``   ``sandbox-entra-client-secret``
=================  ============================  ================================
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def vendor_names() -> list[str]:
    """The vendors of ``ml_connector.registry`` (the one list of vendors); a vendor listed there without a
    subpackage here is skipped by :func:`available_vendors`."""
    from ml_connector import registry

    return [vendor.name for vendor in registry.vendors()]


def app_target(vendor: str) -> str:
    """``"ml_connector_sandbox.<vendor>:create_app"``: where a vendor's app factory lives, by convention."""
    return f"{__name__}.{vendor}:create_app"


#: vendor name -> "module:factory". Factories take an optional state and return a FastAPI app.
#: Modules are imported lazily, so a vendor whose module is missing does not break the others.
VENDOR_APPS: dict[str, str] = {vendor: app_target(vendor) for vendor in vendor_names()}


def load_app_factory(vendor: str) -> Callable[..., Any]:
    """Import and return the ``create_app`` of a registered vendor.

    :raises KeyError: the vendor is not registered (the message lists the registered ones).
    :raises ImportError: its module cannot be imported.
    """
    if vendor not in VENDOR_APPS:
        raise KeyError(f"unknown sandbox vendor {vendor!r}; registered: {', '.join(sorted(VENDOR_APPS))}")
    module_name, _, attribute = VENDOR_APPS[vendor].partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def available_vendors() -> list[str]:
    """Registered vendors whose module imports (the default of ``--vendors``)."""
    vendors = []
    for vendor, target in VENDOR_APPS.items():
        module_name = target.partition(":")[0]
        try:
            load_app_factory(vendor)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # the module exists but is broken: say so, then skip it
                log.warning("sandbox vendor %s skipped: %s", vendor, exc)
            continue
        except ImportError as exc:
            log.warning("sandbox vendor %s skipped: %s", vendor, exc)
            continue
        vendors.append(vendor)
    return vendors
