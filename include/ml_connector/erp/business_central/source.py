"""Business Central as an :class:`~ml_connector.erp.protocol.OrderSource`: released sales orders in, the 1Z
and the delivery status out through the ml-connector AL extension page."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ml_connector.erp.business_central import mapping as bc
from ml_connector.erp.protocol import ExtractFailure, OrderSource
from ml_connector.errors import AuthenticationError, ConfigurationError, ConnectorError, RecordError
from ml_connector.models import Address, Order, TrackingResult
from ml_connector.settings import PipelineSettings

log = logging.getLogger(__name__)


class BusinessCentralSettings(PipelineSettings):
    """Pipeline settings of a Business Central pipeline.

    :param shipping_agent_code: the BC Shipping Agent code (Code[10]) written with the tracking number; its
        Internet Address builds the "Track package" link in BC.
    """

    erp: Literal["business_central"] = "business_central"
    shipping_agent_code: str = Field("UPS", min_length=1, max_length=bc.CODE10_MAX)


class BusinessCentralSource(OrderSource):
    """Business Central API v2.0 through :class:`~ml_connector.erp.business_central.hook.BusinessCentralHook`."""

    erp = "business_central"
    settings: BusinessCentralSettings

    def __init__(self, settings: PipelineSettings, hook: Any | None = None) -> None:
        super().__init__(settings, hook)
        self._company_information: dict[str, Any] | None = None

    @classmethod
    def make_hook(cls, settings: PipelineSettings) -> Any:
        from ml_connector.erp.business_central.hook import BusinessCentralHook

        return BusinessCentralHook(settings.erp_connection_id)

    def extract(self, start: datetime, end: datetime) -> Iterator[Order | ExtractFailure]:
        # BC US companies often leave the country blank on domestic addresses: it means the company's own
        default_country = (self.company_information().get("country") or None) if self.settings.ship_from is None \
            else self.settings.ship_from.country
        page_etags = self._page_etags(start, end)
        for doc in self.hook.iter_released_orders(start, end):
            try:
                order = bc.order_from_sales_order(
                    doc, default_weight_per_unit=self.settings.default_weight_per_unit,
                    item_weights=self.settings.item_weights, weight_unit=self.settings.weight_unit,
                    default_country=default_country)
            except RecordError as exc:
                yield ExtractFailure(
                    erp=self.erp, erp_id=str(doc.get("id")), number=str(doc.get("number") or doc.get("id")),
                    modified_at=bc.parse_datetime(doc.get("lastModifiedDateTime")), error=exc)
                continue
            # the write-back page's etag (the one its PATCH needs; the salesOrders etag gives 412 there)
            yield order.model_copy(update={"etag": page_etags.get(order.erp_id.lower())})

    def _page_etags(self, start: datetime, end: datetime) -> dict[str, str]:
        """The write-back page's etags of the orders modified in the window (one paged read), so that each
        write-back PATCHes without a GET first. Best effort: without them a write-back reads the record first."""
        if not self.settings.writeback:
            return {}
        try:
            return {str(r.get("id", "")).lower(): r["@odata.etag"]
                    for r in self.hook.iter_shipping_records(start, end) if r.get("@odata.etag")}
        except (ConfigurationError, AuthenticationError):
            raise
        except ConnectorError as exc:
            log.warning("could not read the write-back page's etags (%s); each write-back reads its record first",
                        exc)
            return {}

    def company_information(self) -> dict[str, Any]:
        if self._company_information is None:
            self._company_information = self.hook.get_company_information() or {}
        return self._company_information

    def ship_from(self) -> Address:
        if self.settings.ship_from is not None:
            return self.settings.ship_from
        try:
            return bc.address_from_company_information(self.company_information())
        except RecordError as exc:  # the company address is configuration, not an order's data
            raise ConfigurationError(str(exc)) from None

    def write_tracking(self, order: Order, tracking_numbers: list[str], service_code: str | None) -> None:
        # The Shipping Agent Service code is a BC table key the customer defines; leave it to them.
        patch = bc.tracking_patch(tracking_numbers[0], shipping_agent_code=self.settings.shipping_agent_code,
                                  service_code=None, status="label_created")
        self.hook.update_shipping_record(order.erp_id, patch, etag=order.etag or None)

    def write_status(self, order: Order, tracking: TrackingResult) -> None:
        last = tracking.events[0].description if tracking.events else None
        if tracking.received_by:  # the signature: who received the parcel
            last = f"{last or tracking.status.value}, received by {tracking.received_by}"
        patch = bc.tracking_patch(tracking.tracking_number, shipping_agent_code=None, service_code=None,
                                  status=tracking.status, last_event=last, delivered_at=tracking.delivered_at)
        self.hook.update_shipping_record(order.erp_id, patch)
