"""SYSPRO as an :class:`~ml_connector.erp.protocol.OrderSource`: ready-to-ship documents polled from OData
(SYSPRO has no webhooks), tracking number, status and shipment cost written into custom form fields through
the ``COMSFM`` business object on the task's e.net session."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, model_validator

from ml_connector.erp.protocol import ExtractFailure, OrderSource
from ml_connector.erp.syspro import mapping as sy
from ml_connector.errors import ConfigurationError, RecordError
from ml_connector.models import Address, Money, Order, TrackingResult
from ml_connector.settings import PipelineSettings

#: The product description's tables ([U]: names, date columns and the ready rule are settings).
DEFAULT_TABLES = [
    sy.SysproTable(entity_set="ArInvoice", date_field="InvoiceDate", key_field="Invoice", form_type="INV"),
    sy.SysproTable(entity_set="PorMasterHdr", date_field="PostDate", key_field="PurchaseOrder", form_type="POR"),
]


class SysproSettings(PipelineSettings):
    """Pipeline settings of a SYSPRO pipeline (every SYSPRO name is a setting: see ``docs/vendors``).

    :param tables: where ready-to-ship documents are read (OData entity sets), in order.
    :param custom_form: the custom form fields written back through ``COMSFM``.
    :param business_object: the setup business object that writes them.
    :param date_format: ``strftime`` format of the window's OData literals.
    :param default_country: country of a ship-to address whose country column is empty.
    :param package_weight: weight of a document's one package when its table has no weight column.
    """

    erp: Literal["syspro"] = "syspro"
    tables: list[sy.SysproTable] = Field(default_factory=lambda: list(DEFAULT_TABLES), min_length=1)
    custom_form: sy.CustomFormFields = Field(default_factory=sy.CustomFormFields)
    business_object: str = Field("COMSFM", min_length=1)
    date_format: str = "%Y-%m-%dT%H:%M:%SZ"
    default_country: str | None = Field("US", min_length=2, max_length=2)
    package_weight: Decimal | None = Field(None, gt=0)
    write_cost: bool = True

    @model_validator(mode="after")
    def _unique_tables(self) -> SysproSettings:
        names = [t.entity_set for t in self.tables]
        if len(set(names)) != len(names):
            raise ValueError(f"tables: each entity_set once (got {', '.join(names)})")
        return self


class SysproSource(OrderSource):
    """SYSPRO 8 through :class:`~ml_connector.erp.syspro.hook.SysproHook`."""

    erp = "syspro"
    settings: SysproSettings

    @classmethod
    def make_hook(cls, settings: PipelineSettings) -> Any:
        from ml_connector.erp.syspro.hook import SysproHook

        return SysproHook(settings.erp_connection_id)

    def extract(self, start: datetime, end: datetime) -> Iterator[Order | ExtractFailure]:
        for table in self.settings.tables:
            odata_filter = sy.window_filter(table, start, end, self.settings.date_format)
            for row in self.hook.iter_rows(table.entity_set, odata_filter, order_by=table.date_field):
                try:
                    yield sy.order_from_row(row, table, default_country=self.settings.default_country,
                                            package_weight=self.settings.package_weight,
                                            weight_unit=self.settings.weight_unit)
                except RecordError as exc:
                    try:
                        erp_id = sy.erp_id(table, row)
                    except RecordError:
                        erp_id = f"{table.entity_set}{sy.ID_SEPARATOR}?{sy.document_number(table, row)}"
                    # the row cannot become an Order: keep what SYSPRO sent in the ledger's error, for people
                    error = type(exc)(f"{exc}; SYSPRO {table.entity_set} row: {sy.row_details(row, table)}",
                                      field=exc.field)
                    yield ExtractFailure(erp=self.erp, erp_id=erp_id, number=sy.document_number(table, row),
                                         modified_at=sy.parse_datetime(row.get(table.date_field)), error=error)

    def ship_from(self) -> Address:
        if self.settings.ship_from is None:
            raise ConfigurationError("SYSPRO pipelines need the ship_from setting (the warehouse address printed "
                                     "on labels) in include/pipelines.yaml")
        return self.settings.ship_from

    def _table(self, order: Order) -> tuple[sy.SysproTable, str]:
        entity_set, key = sy.split_erp_id(order.erp_id)
        for table in self.settings.tables:
            if table.entity_set == entity_set:
                return table, key
        raise ConfigurationError(f"order {order.number} was read from {entity_set}, which is no longer in the "
                                 "pipeline's tables setting")

    def _write(self, order: Order, values: dict[str, str]) -> None:
        table, key = self._table(order)
        fields = self.settings.custom_form
        document = sy.custom_form_document(table.form_type, key, values, number=order.number,
                                           max_length=fields.max_length)
        answer = self.hook.setup_update(self.settings.business_object, sy.custom_form_parameters(), document,
                                        what=f"custom form of {order.number}")
        sy.check_custom_form_answer(answer, number=order.number)

    def write_tracking(self, order: Order, tracking_numbers: list[str], service_code: str | None) -> None:
        fields = self.settings.custom_form
        self._write(order, sy.tracking_values(fields, tracking_numbers[0], sy.status_text(None)))

    def write_status(self, order: Order, tracking: TrackingResult) -> None:
        fields = self.settings.custom_form
        if fields.status:
            self._write(order, {fields.status: sy.status_text(tracking)})

    def write_charges(self, order: Order, charges: Money) -> bool:
        if not self.settings.write_cost:
            return False
        values = sy.cost_values(self.settings.custom_form, charges)
        if not values:
            return False
        self._write(order, values)
        return True
