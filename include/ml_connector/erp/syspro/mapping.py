"""Pure mapping between SYSPRO records and canonical records: OData rows -> :class:`Order`, write-back values
-> the ``COMSFM`` (Setup Custom Form) XML, ``COMSFM``'s answer -> per-item outcomes. No I/O.

Which SYSPRO tables hold "ready to ship" documents, and which columns hold the ship-to address, are unverified
facts ([U] in ``docs/vendors/erp-and-shipstation.md`` section 3): they are the :class:`SysproTable` settings,
with the documented defaults. Whether a carrier can deliver to the address (postal code, PO box, reference
length, service) is the carrier's rule, never decided here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ml_connector.erp.syspro import xml
from ml_connector.errors import MissingWeight, PermanentApiError, RecordError, shown
from ml_connector.models import Address, Money, Order, Package, TrackingResult, TrackingStatus, iso_country

ERP_NAME = "syspro"
#: erp_id = "<entity set>:<document key>": unique across the tables one pipeline reads
ID_SEPARATOR = ":"


class SysproTable(BaseModel):
    """Where one kind of ready-to-ship document lives in SYSPRO's OData service, and how it maps.

    Every name is a setting because none is verified ([U]); the defaults are SYSPRO's ``SorMaster`` column
    names (``ShipAddress1..5``, ``ShipPostalCode``, ``ShippingInstrs``, ``CustomerPoNumber``), which the
    product description's tables are assumed to share.

    :param entity_set: the OData entity set (the SQL table name).
    :param date_field: the timestamp column the run's window filters on (``ge start and lt end``).
    :param ready_filter: more OData ``$filter`` that makes a row "ready to ship" (e.g. ``OrderStatus eq '4'``).
    :param key_field: the document's unique key; also the custom form's key value.
    :param number_field: the number people know (printed on the label); default ``key_field``.
    :param street_fields: ship-to street lines, in order (empty ones skipped).
    :param form_type: the custom form type ``COMSFM`` writes to for this table.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    entity_set: str = Field(min_length=1)
    date_field: str = Field(min_length=1)
    ready_filter: str | None = None
    key_field: str = Field(min_length=1)
    number_field: str | None = None
    name_field: str = "CustomerName"
    street_fields: list[str] = Field(default_factory=lambda: ["ShipAddress1", "ShipAddress2"], min_length=1)
    city_field: str = "ShipAddress3"
    state_field: str | None = "ShipAddress4"
    country_field: str | None = "ShipAddress5"
    postal_code_field: str = "ShipPostalCode"
    ship_method_field: str = "ShippingInstrs"
    customer_reference_field: str | None = "CustomerPoNumber"
    phone_field: str | None = None
    email_field: str | None = None
    weight_field: str | None = None
    form_type: str = Field("ORD", min_length=1)

    @property
    def number_column(self) -> str:
        return self.number_field or self.key_field


class CustomFormFields(BaseModel):
    """The custom form fields the connector writes (``COMSFM``): field names a SYSPRO admin creates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tracking: str = Field("TRACKNO", min_length=1)
    status: str | None = "SHIPSTAT"
    cost: str | None = "SHIPCOST"
    currency: str | None = "SHIPCURR"
    #: the value element of every item ([U]: ``COMSFM`` is documented by code with ``AlphaValue`` only)
    value_element: Literal["AlphaValue"] = "AlphaValue"
    max_length: int = Field(30, ge=1, le=500)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_datetime(value: Any) -> datetime | None:
    """An OData ``DateTimeOffset`` (or a naive SQL ``datetime``, read as UTC)."""
    text = _text(value)
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def format_datetime(value: datetime, date_format: str) -> str:
    """``value`` in UTC as an OData literal in ``date_format``."""
    return value.astimezone(UTC).strftime(date_format)


def window_filter(table: SysproTable, start: datetime, end: datetime, date_format: str) -> str:
    """``$filter`` of one table: its ready rule and ``date_field`` in ``[start, end)``."""
    clause = (f"{table.date_field} ge {format_datetime(start, date_format)} and "
              f"{table.date_field} lt {format_datetime(end, date_format)}")
    return f"({table.ready_filter}) and {clause}" if table.ready_filter else clause


def erp_id(table: SysproTable, row: Mapping[str, Any]) -> str:
    key = _text(row.get(table.key_field))
    if key is None:
        raise RecordError(f"{table.entity_set} row has no {table.key_field}", record=None, field=table.key_field)
    return f"{table.entity_set}{ID_SEPARATOR}{key}"


def split_erp_id(value: str) -> tuple[str, str]:
    """``(entity set, document key)`` of an erp_id."""
    entity_set, _, key = value.partition(ID_SEPARATOR)
    return entity_set, key


def document_number(table: SysproTable, row: Mapping[str, Any]) -> str:
    return _text(row.get(table.number_column)) or _text(row.get(table.key_field)) or "<no number>"


def _country(table: SysproTable, row: Mapping[str, Any], number: str, default_country: str | None) -> str:
    raw = _text(row.get(table.country_field)) if table.country_field else None
    if raw is None:
        if default_country:
            return default_country.upper()
        raise RecordError(f"ship-to address has no country ({table.country_field} is empty and the pipeline has "
                          "no default_country)", record=number, field=table.country_field)
    code = iso_country(raw)
    if code is None:
        import pycountry

        try:
            code = pycountry.countries.lookup(raw).alpha_2
        except LookupError:
            raise RecordError(f"ship-to country {shown(raw)} in {table.country_field} is neither an ISO 3166 "
                              "code nor a country name", record=number, field=table.country_field) from None
    return code


def row_details(row: Mapping[str, Any], table: SysproTable) -> str:
    """The mapped columns of a row as compact JSON (what a person needs to investigate an unreadable row)."""
    import json

    columns = [table.key_field, table.number_column, table.date_field, table.name_field, *table.street_fields,
               table.city_field, table.state_field, table.country_field, table.postal_code_field,
               table.ship_method_field, table.customer_reference_field, table.weight_field]
    picked = {c: row.get(c) for c in dict.fromkeys(c for c in columns if c) if c in row}
    return json.dumps(picked, ensure_ascii=False, default=str)


def order_from_row(row: Mapping[str, Any], table: SysproTable, *, default_country: str | None,
                   package_weight: Decimal | None, weight_unit: Literal["LBS", "KGS"] = "LBS") -> Order:
    """Map one OData row of ``table`` to an Order.

    :param default_country: country of a ship-to address whose country column is empty (SYSPRO sites often
        leave it blank for domestic addresses).
    :param package_weight: weight of the document's one package when ``table.weight_field`` gives none.
    :raises RecordError: the ship-to address is incomplete (the message names the SYSPRO column).
    :raises MissingWeight: no weight from the row or the settings.
    """
    number = document_number(table, row)
    street = [line for line in (_text(row.get(f)) for f in table.street_fields) if line]
    if not street:
        raise RecordError(f"ship-to address has no street ({', '.join(table.street_fields)} are empty)",
                          record=number, field=table.street_fields[0])
    city = _text(row.get(table.city_field))
    if not city:
        raise RecordError(f"ship-to address has no city ({table.city_field} is empty)", record=number,
                          field=table.city_field)
    name = _text(row.get(table.name_field))
    if not name:
        raise RecordError(f"ship-to address has no name ({table.name_field} is empty)", record=number,
                          field=table.name_field)
    country = _country(table, row, number, default_country)
    address = Address(
        name=name, lines=street, city=city,
        state=_text(row.get(table.state_field)) if table.state_field else None,
        postal_code=_text(row.get(table.postal_code_field)), country=country,
        phone=_text(row.get(table.phone_field)) if table.phone_field else None,
        email=_text(row.get(table.email_field)) if table.email_field else None,
    )
    weight = None
    if table.weight_field:
        raw = _text(row.get(table.weight_field))
        try:
            weight = Decimal(raw) if raw is not None else None
        except InvalidOperation:
            raise RecordError(f"{table.weight_field} {shown(raw)} is not a number", record=number,
                              field=table.weight_field) from None
    if weight is None or weight <= 0:
        weight = package_weight
    if weight is None or weight <= 0:
        raise MissingWeight(f"no weight: {table.weight_field or 'the table has no weight column'} gives none and the "
                            "pipeline has no package_weight", record=number,
                            field=table.weight_field or "package_weight")
    return Order(
        erp=ERP_NAME, erp_id=erp_id(table, row), number=number,
        ship_method=_text(row.get(table.ship_method_field)),
        ship_to=address, packages=[Package(weight=weight, weight_unit=weight_unit)],
        modified_at=parse_datetime(row.get(table.date_field)),
        customer_reference=_text(row.get(table.customer_reference_field)) if table.customer_reference_field
        else None,
    )


# -- write-back -------------------------------------------------------------------------------------------

STATUS_TEXT = {
    TrackingStatus.LABEL_CREATED: "LABEL CREATED",
    TrackingStatus.IN_TRANSIT: "IN TRANSIT",
    TrackingStatus.OUT_FOR_DELIVERY: "OUT FOR DELIVERY",
    TrackingStatus.DELIVERED: "DELIVERED",
    TrackingStatus.EXCEPTION: "EXCEPTION",
    TrackingStatus.VOIDED: "VOIDED",
}


def status_text(tracking: TrackingResult | None) -> str:
    """What the status field shows: ``LABEL CREATED`` before any scan, ``DELIVERED 2026-11-29 14:03`` ..."""
    if tracking is None:
        return STATUS_TEXT[TrackingStatus.LABEL_CREATED]
    text = STATUS_TEXT.get(tracking.status, tracking.status.value.upper())
    if tracking.status is TrackingStatus.DELIVERED and tracking.delivered_at is not None:
        text += " " + tracking.delivered_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    return text


def tracking_values(fields: CustomFormFields, tracking_number: str, status: str) -> dict[str, str]:
    values = {fields.tracking: tracking_number}
    if fields.status:
        values[fields.status] = status
    return values


def cost_values(fields: CustomFormFields, charges: Money) -> dict[str, str]:
    values = {}
    if fields.cost:
        values[fields.cost] = f"{charges.amount:.2f}"
    if fields.currency:
        values[fields.currency] = charges.currency
    return values


def custom_form_document(form_type: str, key: str, values: Mapping[str, str], *, number: str,
                         max_length: int) -> str:
    """``COMSFM``'s XmlIn: one ``Item`` per field (``<SetupCustomForm><Item><Key><FormType/><KeyField/>
    <FieldName/></Key><AlphaValue/></Item>...``); values are escaped by the serializer.

    :raises RecordError: a value is longer than the custom form field holds.
    """
    for field, value in values.items():
        if len(value) > max_length:
            raise RecordError(f"value {shown(value)} for custom form field {field} is {len(value)} characters; the "
                              f"field holds {max_length}", record=number, field=field)
    items = [{"Key": {"FormType": form_type, "KeyField": key, "FieldName": field}, "AlphaValue": value}
             for field, value in values.items()]
    return xml.to_xml(xml.element("SetupCustomForm", {"Item": items}))


def custom_form_parameters() -> str:
    """``COMSFM``'s XmlParameters (``ValidateOnly`` N)."""
    return xml.to_xml(xml.element("SetupCustomForm", {"Parameters": {"ValidateOnly": "N"}}))


def check_custom_form_answer(text: str, *, number: str) -> int:
    """Read ``COMSFM``'s XmlOut (node names in any case); return how many items it reports.

    :raises PermanentApiError: the answer carries error messages (SYSPRO's text).
    """
    root = xml.parse(text, what=f"SYSPRO's COMSFM answer for {number}")
    errors = xml.error_texts(root)
    if errors:
        raise PermanentApiError(f"SYSPRO refused the custom form update of {number}: {'; '.join(errors)}",
                                vendor=ERP_NAME)
    return len(list(xml.find_all(root, "Item")))
