"""ERP adapters: what the shared operators need from an ERP, behind one small interface.

An adapter reads released orders for a time window, gives the ship-from address, and writes tracking back.
Adding an ERP = a hook, a pure mapping module in ``ml_connector.erp`` and an adapter here.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ml_connector.errors import ConfigurationError, RecordError
from ml_connector.models import Address, Order, TrackingResult
from ml_connector.settings import PipelineSettings


@dataclass(frozen=True)
class ExtractFailure:
    """An ERP document that could not be mapped to an :class:`Order` (it is quarantined with ``error``)."""

    erp: str
    erp_id: str
    number: str
    modified_at: datetime | None
    error: RecordError


class ErpAdapter(abc.ABC):
    """The ERP side of an ERP -> carrier pipeline."""

    erp: str

    def __init__(self, settings: PipelineSettings) -> None:
        self.settings = settings

    @abc.abstractmethod
    def extract(self, start: datetime, end: datetime) -> Iterator[Order | ExtractFailure]:
        """Released orders modified in ``[start, end)``; a document that cannot be mapped comes back as an
        :class:`ExtractFailure` instead of stopping the others."""

    @abc.abstractmethod
    def ship_from(self) -> Address:
        """The shipper address printed on labels (pipeline setting, else the ERP's company address)."""

    @abc.abstractmethod
    def write_tracking(self, order: Order, tracking_numbers: list[str], service_code: str | None) -> None:
        """Put the tracking number(s) on the ERP document (idempotent: a replay writes the same values)."""

    @abc.abstractmethod
    def write_status(self, order: Order, tracking: TrackingResult) -> None:
        """Reflect the package's live status (in transit, exception, delivered) on the ERP document."""


class BusinessCentralAdapter(ErpAdapter):
    """Business Central API v2.0 through :class:`~ml_connector.erp.business_central.hook.BusinessCentralHook`."""

    erp = "business_central"

    def __init__(self, settings: PipelineSettings, hook: Any | None = None) -> None:
        super().__init__(settings)
        if hook is None:
            from ml_connector.erp.business_central.hook import BusinessCentralHook

            hook = BusinessCentralHook(settings.erp_connection_id)
        self.hook = hook
        self._company_information: dict[str, Any] | None = None

    def extract(self, start: datetime, end: datetime) -> Iterator[Order | ExtractFailure]:
        from ml_connector.erp.business_central import mapping as bc

        # BC US companies often leave the country blank on domestic addresses: it means the company's own
        default_country = (self.company_information().get("country") or None) if self.settings.ship_from is None \
            else self.settings.ship_from.country
        for doc in self.hook.iter_released_orders(start, end):
            try:
                yield bc.order_from_sales_order(
                    doc, default_weight_per_unit=self.settings.default_weight_per_unit,
                    item_weights=self.settings.item_weights, weight_unit=self.settings.weight_unit,
                    default_country=default_country)
            except RecordError as exc:
                modified = doc.get("lastModifiedDateTime")
                yield ExtractFailure(
                    erp=self.erp, erp_id=str(doc.get("id")), number=str(doc.get("number") or doc.get("id")),
                    modified_at=datetime.fromisoformat(modified.replace("Z", "+00:00")) if modified else None,
                    error=exc)

    def company_information(self) -> dict[str, Any]:
        if self._company_information is None:
            self._company_information = self.hook.get_company_information() or {}
        return self._company_information

    def ship_from(self) -> Address:
        from ml_connector.erp.business_central import mapping as bc

        if self.settings.ship_from is not None:
            return self.settings.ship_from
        try:
            return bc.address_from_company_information(self.company_information())
        except RecordError as exc:  # the company address is configuration, not an order's data
            raise ConfigurationError(str(exc)) from None

    def write_tracking(self, order: Order, tracking_numbers: list[str], service_code: str | None) -> None:
        from ml_connector.erp.business_central import mapping as bc

        # The Shipping Agent Service code is a BC table key the customer defines; leave it to them.
        patch = bc.tracking_patch(tracking_numbers[0], shipping_agent_code=self.settings.shipping_agent_code,
                                  service_code=None, status="label_created")
        self.hook.update_shipping_record(order.erp_id, patch)

    def write_status(self, order: Order, tracking: TrackingResult) -> None:
        from ml_connector.erp.business_central import mapping as bc

        last = tracking.events[0].description if tracking.events else None
        patch = bc.tracking_patch(tracking.tracking_number, shipping_agent_code=None, service_code=None,
                                  status=tracking.status, last_event=last, delivered_at=tracking.delivered_at)
        self.hook.update_shipping_record(order.erp_id, patch)


ADAPTERS: dict[str, type[ErpAdapter]] = {"business_central": BusinessCentralAdapter}


def make_adapter(settings: PipelineSettings) -> ErpAdapter:
    return ADAPTERS[settings.erp](settings)
