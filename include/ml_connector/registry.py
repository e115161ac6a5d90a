"""The one list of vendors: every ERP and carrier is named here once, and everything else derives from it.

Provider info (connection types and forms), settings validation, the DAG factory, ``make run``/``make demo``
(which connections to point at which sandbox) and the sandbox server read this module. Entries hold dotted
paths, imported only when used, so reading the registry (at DAG parse time, say) imports no vendor code.

Adding an ERP is one entry in :data:`ERPS` (see ``docs/adding-an-erp.md``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from ml_connector.errors import ConfigurationError


@dataclass(frozen=True)
class Vendor:
    """One external system.

    :param name: the registry key, also the package name (``erp/<name>`` or ``carriers/<name>``), the
        ``erp``/``carrier`` value in the pipeline settings and the sandbox module name.
    :param kind: ``erp``, ``carrier`` or ``fulfilment`` (a shipping platform that fulfils orders and sends them
        back: package ``fulfilment/<name>``, its own two-way DAG shape).
    :param display_name: what people read (DAG docs, UI).
    :param conn_type: the Airflow connection type it registers.
    :param default_conn_id: the connection id used when the settings name none.
    :param hook: dotted path of the hook class.
    :param implementation: dotted path of the :class:`~ml_connector.erp.protocol.OrderSource` or
        :class:`~ml_connector.carriers.protocol.Carrier` class.
    :param connection_form: dotted path of the connection form (``CONNECTION_FORM`` of its ``connection.py``).
    :param settings: dotted path of the pipeline settings model (ERPs only).
    :param webhook: dotted path of a FastAPI ``APIRouter`` receiving this vendor's inbound webhooks, or None.
        The webhook plugin (``plugins/``) mounts it under ``/ml-connector/webhooks/<name>``; plugin apps are
        served without Airflow's authentication, so every route authenticates each call itself.
    """

    name: str
    kind: Literal["erp", "carrier", "fulfilment"]
    display_name: str
    conn_type: str
    default_conn_id: str
    hook: str
    implementation: str
    connection_form: str
    settings: str | None = None
    webhook: str | None = None

    def load(self, attribute: str) -> Any:
        """Import what ``attribute`` (``hook``, ``implementation``, ``connection_form``, ``settings``) names."""
        return load(getattr(self, attribute))


ERPS: dict[str, Vendor] = {
    vendor.name: vendor for vendor in (
        Vendor(
            name="business_central", kind="erp", display_name="Dynamics 365 Business Central",
            conn_type="business_central", default_conn_id="business_central_default",
            hook="ml_connector.erp.business_central.hook.BusinessCentralHook",
            implementation="ml_connector.erp.business_central.source.BusinessCentralSource",
            connection_form="ml_connector.erp.business_central.connection.CONNECTION_FORM",
            settings="ml_connector.erp.business_central.source.BusinessCentralSettings",
            webhook="ml_connector.erp.business_central.webhook.router",
        ),
        Vendor(
            name="acumatica", kind="erp", display_name="Acumatica",
            conn_type="acumatica", default_conn_id="acumatica_default",
            hook="ml_connector.erp.acumatica.hook.AcumaticaHook",
            implementation="ml_connector.erp.acumatica.source.AcumaticaSource",
            connection_form="ml_connector.erp.acumatica.connection.CONNECTION_FORM",
            settings="ml_connector.erp.acumatica.source.AcumaticaSettings",
            webhook="ml_connector.erp.acumatica.webhook.router",
        ),
        Vendor(
            name="exact_online", kind="erp", display_name="Exact Online",
            conn_type="exact_online", default_conn_id="exact_online_default",
            hook="ml_connector.erp.exact_online.hook.ExactOnlineHook",
            implementation="ml_connector.erp.exact_online.source.ExactOnlineSource",
            connection_form="ml_connector.erp.exact_online.connection.CONNECTION_FORM",
            settings="ml_connector.erp.exact_online.source.ExactOnlineSettings",
            webhook="ml_connector.erp.exact_online.webhook.router",
        ),
        Vendor(
            name="syspro", kind="erp", display_name="SYSPRO",
            conn_type="syspro", default_conn_id="syspro_default",
            hook="ml_connector.erp.syspro.hook.SysproHook",
            implementation="ml_connector.erp.syspro.source.SysproSource",
            connection_form="ml_connector.erp.syspro.connection.CONNECTION_FORM",
            settings="ml_connector.erp.syspro.source.SysproSettings",
        ),
    )
}

CARRIERS: dict[str, Vendor] = {
    vendor.name: vendor for vendor in (
        Vendor(
            name="ups", kind="carrier", display_name="UPS",
            conn_type="ups", default_conn_id="ups_default",
            hook="ml_connector.carriers.ups.hook.UpsHook",
            implementation="ml_connector.carriers.ups.carrier.UpsCarrier",
            connection_form="ml_connector.carriers.ups.connection.CONNECTION_FORM",
            webhook="ml_connector.carriers.ups.webhook.router",
        ),
    )
}


#: shipping platforms that fulfil ERP orders and send them back (two-way pipelines, ``fulfilment/<name>``)
FULFILMENT: dict[str, Vendor] = {
    vendor.name: vendor for vendor in (
        Vendor(
            name="shipstation", kind="fulfilment", display_name="ShipStation",
            conn_type="shipstation", default_conn_id="shipstation_default",
            hook="ml_connector.fulfilment.shipstation.hook.ShipStationHook",
            implementation="ml_connector.fulfilment.shipstation.sync.ShipStationSync",
            connection_form="ml_connector.fulfilment.shipstation.connection.CONNECTION_FORM",
            settings="ml_connector.fulfilment.shipstation.pipeline.FulfilmentSettings",
            webhook="ml_connector.fulfilment.shipstation.webhook.router",
        ),
    )
}


def vendors() -> list[Vendor]:
    """Every registered vendor, ERPs first, then carriers, then fulfilment platforms."""
    return [*ERPS.values(), *CARRIERS.values(), *FULFILMENT.values()]


def fulfilment(name: str) -> Vendor:
    """The fulfilment platform called ``name``. :raises ConfigurationError: unknown."""
    try:
        return FULFILMENT[name]
    except KeyError:
        raise ConfigurationError(f"unknown fulfilment platform {name!r}; known: {', '.join(sorted(FULFILMENT))}"
                                 ) from None


def erp(name: str) -> Vendor:
    """The ERP called ``name``. :raises ConfigurationError: unknown (the message lists the known ones)."""
    try:
        return ERPS[name]
    except KeyError:
        raise ConfigurationError(f"unknown ERP {name!r}; known: {', '.join(sorted(ERPS))}") from None


def carrier(name: str) -> Vendor:
    """The carrier called ``name``. :raises ConfigurationError: unknown (the message lists the known ones)."""
    try:
        return CARRIERS[name]
    except KeyError:
        raise ConfigurationError(f"unknown carrier {name!r}; known: {', '.join(sorted(CARRIERS))}") from None


def load(dotted: str) -> Any:
    """Import ``package.module.attribute``."""
    module, _, attribute = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attribute)
