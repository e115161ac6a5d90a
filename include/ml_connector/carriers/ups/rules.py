"""UPS business rules that decide, before any call, whether an order can be shipped: the one place for them.

ERP mappings produce canonical records and know nothing of UPS; every UPS rule lives in ``carriers/ups``:
this module holds the rules on the order as a whole (ship-to address, references, shipper number, packaging),
:mod:`.codes` the code tables, :mod:`.shipping` the request limits of each field. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ml_connector.errors import ConfigurationError, RecordError, ReferenceTooLong, shown
from ml_connector.models import Address, Order, iso_subdivision

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
