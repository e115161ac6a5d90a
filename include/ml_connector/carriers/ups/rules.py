"""UPS business rules that decide, before any call, whether an order can be shipped: the one place for them.

ERP mappings produce canonical records and know nothing of UPS; every UPS rule lives in ``carriers/ups``:
this module holds the rules on the order as a whole (ship-to address, references, shipper number, packaging),
:mod:`.codes` the code tables, :mod:`.shipping` the request limits of each field. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ml_connector.errors import ConfigurationError, RecordError, ReferenceTooLong, shown
from ml_connector.models import Address, Order, iso_country, iso_subdivision

#: ReferenceNumber.Value maxLength (Shipping.yaml ``#/components/schemas/Package_ReferenceNumber`` and
#: ``Shipment_ReferenceNumber``). A longer reference is refused, never cut: the reference is how the label of
#: an attempt that got no answer is found again (track by reference), so it must equal the ERP document's.
REFERENCE_MAX = 35

#: Countries whose addresses UPS cannot rate or ship without a postal code.
POSTAL_CODE_REQUIRED = frozenset({
    "US", "PR", "VI", "GU", "CA", "MX", "GB", "DE", "FR", "IT", "ES", "PT", "NL", "BE", "LU", "AT", "CH",
    "DK", "SE", "NO", "FI", "PL", "CZ", "AU", "NZ", "JP", "CN", "IN", "BR",
})
#: Countries whose addresses UPS cannot ship without a state/province code
#: (Shipping.yaml ``#/components/schemas/ShipTo_Address/properties/StateProvinceCode``).
STATE_REQUIRED = frozenset({"US", "CA", "VN"})
#: UPS delivers no small packages to post-office boxes in these countries.
PO_BOX_BLOCKED = frozenset({"US"})
#: Street-level Address Validation (XAV) covers only these countries.
ADDRESS_VALIDATION_COUNTRIES = frozenset({"US", "PR"})
#: Packaging.Code sent for every package: "02" = Customer Supplied Package.
DEFAULT_PACKAGING_CODE = "02"

SHIPPER_NUMBER_PATTERN = "^[A-Za-z0-9]{6}$"
_SHIPPER_NUMBER = re.compile(SHIPPER_NUMBER_PATTERN)
# "PO Box 12", "P.O. Box", "P O BOX", "POBox", "Post Office Box"; not "Boxwood Lane" or "Po River Rd".
_PO_BOX = re.compile(r"\b(?:p\.?\s*o\.?\s*box|post\s+office\s+box)\b", re.IGNORECASE)

#: The reference sources a pipeline may print on the label (``reference_fields`` setting), in order.
REFERENCE_SOURCES = {"number": "order number", "customer_reference": "customer reference (external document number)"}


def check_shipper_number(value: str | None, *, where: str = "UPS account_number") -> str:
    """The 6-character alphanumeric UPS shipper (account) number, stripped.

    :param where: names the setting or connection extra in the error message.
    :raises ConfigurationError: it is not 6 letters or digits.
    """
    text = (value or "").strip()
    if not _SHIPPER_NUMBER.match(text):
        raise ConfigurationError(f"{where} must be the 6-character alphanumeric UPS shipper number "
                                 f"(got {len(text)} characters)")
    return text


def is_po_box(line: str) -> bool:
    """Whether an address line is a post-office box."""
    return bool(_PO_BOX.search(line or ""))


def check_ship_to(address: Address, *, record: str) -> None:
    """Refuse a ship-to address UPS cannot deliver to, naming the field.

    :raises RecordError: no postal code or state where UPS needs one, or a US PO box.
    """
    country = address.country
    if not (address.postal_code or "").strip() and country in POSTAL_CODE_REQUIRED:
        raise RecordError(f"ship-to address has no postal code, which UPS needs for country {country}; enter "
                          "the ship-to post code on the order", record=record, field="ship_to.postal_code")
    if country in STATE_REQUIRED:
        if not (address.state or "").strip():
            raise RecordError(f"ship-to address has no state, which UPS needs for country {country}; enter "
                              "the ship-to state/province on the order", record=record, field="ship_to.state")
        if iso_subdivision(country, address.state) is None:
            raise RecordError(f"ship-to state {shown(address.state)} is not an ISO 3166-2 state/province code "
                              f"of {country}; use the two-letter code (NY, ON...)", record=record,
                              field="ship_to.state")
    if country in PO_BOX_BLOCKED and any(is_po_box(line) for line in address.lines):
        raise RecordError("UPS does not deliver to PO boxes; use a street address", record=record,
                          field="ship_to.lines")


def check_reference(value: str, *, record: str, source: str = "reference") -> str:
    """One label reference, stripped; refused (never cut) when longer than :data:`REFERENCE_MAX`.

    :param source: what the value is, for the message (``order number``, ...).
    :raises ReferenceTooLong: over 35 characters.
    :raises RecordError: empty.
    """
    text = (value or "").strip()
    if not text:
        raise RecordError(f"has no {source} to print on the label", record=record, field="reference")
    if len(text) > REFERENCE_MAX:
        raise ReferenceTooLong(
            f"the {source} {shown(text)} is {len(text)} characters; UPS reference numbers hold at most "
            f"{REFERENCE_MAX}. Shorten it in the ERP or leave it out of the pipeline's reference_fields",
            record=record, field="reference")
    return text


def references(order: Order, fields: Iterable[str]) -> list[str]:
    """The values printed in the label's reference numbers, in ``fields`` order (empty ones are skipped).

    The first one is also what an unanswered purchase is looked up by (track by reference).

    :param fields: ``number`` (the ERP document number) and/or ``customer_reference``.
    :raises ReferenceTooLong: a value is over 35 characters (the message names it and the setting).
    :raises RecordError: no value at all.
    """
    values = []
    for name in fields:
        if name not in REFERENCE_SOURCES:
            raise ConfigurationError(f"reference_fields setting: {name!r} is not one of "
                                     f"{', '.join(REFERENCE_SOURCES)}")
        value = order.number if name == "number" else order.customer_reference
        if value:
            values.append(check_reference(value, record=order.number, source=REFERENCE_SOURCES[name]))
    if not values:
        raise RecordError("has no reference to print on the label (reference_fields are all empty)",
                          record=order.number, field="reference")
    return values


# -- international shipments (customs) ---------------------------------------------------------------------

#: The EU customs union's member states: goods move between them without customs formalities.
EU_CUSTOMS_UNION = frozenset({
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU",
    "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
})
#: Customs territory of the United States as far as UPS forms go (US <-> PR ships without an invoice form).
US_CUSTOMS_TERRITORY = frozenset({"US", "PR"})
#: ReasonForExport values Shipping.yaml lists (``#/c/s/ShipmentServiceOptions_InternationalForms``); "Any other
#: reason" is allowed too, up to 20 characters.
REASONS_FOR_EXPORT = ("SALE", "GIFT", "SAMPLE", "RETURN", "REPAIR", "INTERCOMPANYDATA")
REASON_FOR_EXPORT_MAX = 20
#: Product.CommodityCode: "6-to-15-alphanumeric commodity code" (Shipping.yaml ``#/c/s/InternationalForms_Product``).
_HS_CODE = re.compile(r"^[A-Za-z0-9]{6,15}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def customs_area(country: str) -> str:
    """The customs area a country belongs to: ``EU``, ``US`` (US and PR), or the country itself."""
    country = (country or "").upper()
    if country in EU_CUSTOMS_UNION:
        return "EU"
    if country in US_CUSTOMS_TERRITORY:
        return "US"
    return country


def needs_commercial_invoice(order: Order, origin_country: str | None) -> bool:
    """Whether UPS needs a commercial invoice (``InternationalForms`` FormType 01) for ``order`` shipped from
    ``origin_country``: goods (not ``documents_only``) leaving the origin's customs area (EU -> outside the
    EU, US -> outside the US). ``False`` while the origin is unknown."""
    if not origin_country or order.documents_only:
        return False
    return customs_area(origin_country) != customs_area(order.ship_to.country)


def check_reason_for_export(value: str) -> str:
    """The ``reason_for_export`` setting, upper-cased. :raises ConfigurationError: empty or over 20 characters."""
    text = (value or "").strip().upper()
    if not text or len(text) > REASON_FOR_EXPORT_MAX:
        raise ConfigurationError(f"reason_for_export setting {value!r} must be 1 to {REASON_FOR_EXPORT_MAX} "
                                 f"characters (UPS lists {', '.join(REASONS_FOR_EXPORT)})")
    return text


def with_origin_countries(order: Order, item_origins: dict[str, str] | None = None,
                          default: str | None = None) -> Order:
    """``order`` with the pipeline's configured country of origin on lines whose ERP record has none (by item
    code, then the default): a value a person set, not a guess. Lines that have one keep it."""
    origins = {str(k).strip().upper(): v for k, v in (item_origins or {}).items()}
    if not (origins or default) or all(line.origin_country for line in order.lines):
        return order
    lines = [line if line.origin_country else line.model_copy(update={
        "origin_country": origins.get(line.sku.strip().upper()) or default}) for line in order.lines]
    return order.model_copy(update={"lines": lines})


def check_customs_lines(order: Order) -> str:
    """Refuse an order whose lines lack what a commercial invoice needs, naming the line and the field; never
    guess a value. Returns the invoice's currency (every line must use one).

    Needed per line: a description, a quantity above zero, a unit value above zero with its currency and the
    country of origin; the HS code is optional but must be 6 to 15 letters or digits when given.

    :raises RecordError: ``field`` is ``lines[<i>].<name>`` (``lines[1].origin_country``...).
    """
    record = order.number
    if not order.lines:
        raise RecordError("goods leaving the customs area need a commercial invoice, but the order has no lines",
                          record=record, field="lines")
    currencies: set[str] = set()
    for index, line in enumerate(order.lines):
        where = f"lines[{index}]"
        item = f"line {index + 1} (item {shown(line.sku)})"

        def missing(name: str, what: str, *, where: str = where, item: str = item) -> RecordError:
            return RecordError(f"{item} has no {what}, which the commercial invoice of a shipment leaving the "
                               f"customs area needs; enter it in the ERP", record=record, field=f"{where}.{name}")

        if not (line.description or "").strip():
            raise missing("description", "description")
        if line.quantity is None or line.quantity <= 0:
            raise missing("quantity", "quantity above zero")
        if line.unit_value is None or line.unit_value <= 0:
            raise missing("unit_value", "unit value above zero")
        currency = (line.currency or "").strip().upper()
        if not _CURRENCY.match(currency):
            raise missing("currency", "ISO 4217 currency of its value")
        currencies.add(currency)
        origin = (line.origin_country or "").strip().upper()
        if not origin:
            raise missing("origin_country", "country of origin")
        if iso_country(origin) is None:
            raise RecordError(f"{item}: country of origin {shown(origin)} is not an ISO 3166 two-letter code",
                              record=record, field=f"{where}.origin_country")
        if line.hs_code is not None and line.hs_code.strip() and not _HS_CODE.match(line.hs_code.strip()):
            raise RecordError(f"{item}: HS code {shown(line.hs_code)} must be 6 to 15 letters or digits",
                              record=record, field=f"{where}.hs_code")
    if len(currencies) > 1:
        raise RecordError(f"lines are in several currencies ({', '.join(sorted(currencies))}); a commercial "
                          "invoice has one", record=record, field="lines.currency")
    return currencies.pop()
