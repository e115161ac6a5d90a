"""Spec-faithful local fakes of the vendor APIs, for the demo and the end-to-end tests.

``python -m ml_connector_sandbox`` serves every registered vendor app on loopback, each on its own
port, in one process (see :mod:`ml_connector_sandbox.server`). Tests use
:class:`ml_connector_sandbox.testing.SandboxServer`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: vendor name -> "module:factory". Factories take an optional state and return a FastAPI app.
#: Modules are imported lazily, so a vendor whose module is missing does not break the others.
VENDOR_APPS: dict[str, str] = {
    "ups": "ml_connector_sandbox.ups:create_app",
    "business_central": "ml_connector_sandbox.business_central:create_app",
}


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
